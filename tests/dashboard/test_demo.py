"""`make run` prints the dashboard's address and credentials, and the page they open shows the demo
fleet live: the agent online, the device's results streaming, its forged tasks among the alerts.
Its screenshot demo-readme.png is the README's (docs/dashboard.png)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.dashboard.conftest import DESKTOP, DashboardPage
from tests.test_make_run import NODE, SHOW_S, STOP_S, make_run

LINE = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+)/\s+client id: (\S+)\s+secret: (\S+)")


@dataclass(frozen=True)
class Demo:
    base: str
    secrets: dict[str, str]


def test_make_run_prints_the_dashboard_and_the_page_shows_the_demo_fleet_live(
    tmp_path: Path, browser: Any, shots: Path
) -> None:
    with make_run(tmp_path / "demo", "--interval", "0.5") as run:
        run.wait_for("the dashboard's line", lambda lines: any(LINE.search(x) for x in lines), SHOW_S)
        [(base, client, secret)] = [m.groups() for x in run.lines if (m := LINE.search(x))]
        page = DashboardPage(browser, Demo(base, {client: secret}), shots)
        page.open()
        page.sign_in(client)
        page.wait(f"{NODE} online", lambda: page.nodes().get(NODE, {}).get("online") == "true", SHOW_S)
        assert "admin" in page.text("#who") and page.visible("#submit")
        page.wait("the device's results", lambda: len(page.rows()) >= 10, SHOW_S)
        page.wait("its forged tasks, rejected", lambda: int(page.text("#rejects-total") or 0) >= 2, SHOW_S)
        kernels = {r["cells"][3] for r in page.rows()}
        assert {"stats", "fft_magnitude"} <= kernels, kernels
        page.wait(f"{NODE}'s heartbeat", lambda: page.nodes()[NODE]["state"] == "running", SHOW_S)
        fft = page.js(
            "return [...document.querySelectorAll('#stream-rows .srow[data-status=completed]')]"
            ".find(r => r.children[3].textContent === 'fft_magnitude')?.dataset.task"
        )
        page.click(f'#stream-rows .srow[data-task="{fft}"] button')
        page.wait(
            "the detail's plot", lambda: page.js("return !!document.querySelector('#detail-body svg.plot')")
        )
        time.sleep(1.5)  # the charts are redrawn once a second
        page.viewport(*DESKTOP)
        page.screenshot("demo-desktop", scroll_to="body")
        page.viewport(1280, 1100)  # the README's: the fleet, the stream and a detail at once
        page.screenshot("demo-readme", scroll_to="body")
        problems = page.problems()  # before the stop: then the page's stream fails, as it should
        assert not problems, problems
        run.ctrl_c()
        assert run.proc.wait(STOP_S) == 0, run.output()
