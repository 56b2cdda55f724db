"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium through Debian's
chromedriver (never a downloaded browser: Selenium Manager is not asked), against a real gateway
process, a real broker and real agents (tests/support/gateway.py's fleet).

    def test_x(fleet_page: DashboardPage) -> None:
        page = fleet_page                      # node-1 and node-2 running, the gateway up, page open
        page.sign_in("ops")
        page.wait("node-1 online", lambda: page.nodes()["node-1"]["online"] == "true")

Every test ends by reading the browser's console: a JavaScript error, a refused CSP rule or a
failed request the test did not expect fails it (`DashboardPage.problems`). Screenshots go to
$EDGE_DASHBOARD_ARTIFACTS (CI keeps them) or to a pytest temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.support.browser import chrome
from tests.support.gateway import GatewaySite, gateway_process, gateway_site

T = TypeVar("T")
DESKTOP = (1280, 800)
PHONE = (390, 844)
#: What a signed-out page's first request answers: expected, not a problem.
SIGNED_OUT = re.compile(r"/api/v1/session - Failed to load resource: .* status of 401")


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("EDGE_DASHBOARD_ARTIFACTS")
    if named:
        path = Path(named)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("dashboard-screenshots")


class Origin(Protocol):
    """Where the page is served and the API clients' secrets: a GatewaySite, or make run's demo."""

    @property
    def base(self) -> str: ...

    @property
    def secrets(self) -> dict[str, str]: ...


@dataclass
class DashboardPage:
    """One browser on one gateway's dashboard, with the questions the tests ask of the page."""

    driver: Any
    gw: Any  # Origin; a GatewaySite (with .call and .token) in the fleet tests
    shots: Path
    log: list[dict[str, Any]] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=lambda: [SIGNED_OUT])

    # -- driving -----------------------------------------------------------------------------------

    def open(self) -> None:
        self.driver.get(self.gw.base + "/")
        self.wait("the page's script ran", lambda: self.js("return document.readyState") == "complete")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, what: str, check: Callable[[], T], timeout: float = 10.0, every: float = 0.05) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s; console: {self.read_log()}")
            time.sleep(every)

    def sign_in(self, client: str, secret: str | None = None) -> None:
        from selenium.webdriver.common.by import By

        self.wait("the sign-in form", lambda: self.visible("#sign-in"))
        self.driver.find_element(By.ID, "client-id").send_keys(client)
        self.driver.find_element(By.ID, "client-secret").send_keys(
            self.gw.secrets[client] if secret is None else secret
        )
        self.driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        element = self.driver.find_element(By.CSS_SELECTOR, css)
        self.js("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def viewport(self, width: int, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def color_scheme(self, scheme: str) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )

    def screenshot(self, name: str, scroll_to: str | None = None) -> Path:
        if scroll_to is not None:
            self.js("document.querySelector(arguments[0]).scrollIntoView({block: 'start'})", scroll_to)
            time.sleep(0.2)  # a frame or two for the scroll and the charts
        path = self.shots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path

    # -- reading -----------------------------------------------------------------------------------

    def visible(self, css: str) -> bool:
        return bool(
            self.js(
                "const e = document.querySelector(arguments[0]);"
                "return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;",
                css,
            )
        )

    def text(self, css: str) -> str:
        return str(
            self.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css)
        )

    def nodes(self) -> dict[str, dict[str, str]]:
        """node -> the card's field texts, and its data attributes (online, state, beat: ok, late,
        dead or none) over them."""
        return dict(
            self.js(
                """const out = {};
                for (const card of document.querySelectorAll('#nodes .node')) {
                  const fields = {};
                  for (const f of card.querySelectorAll('[data-field]')) {
                    fields[f.dataset.field] = f.textContent;
                  }
                  out[card.dataset.node] = {...fields, ...card.dataset};
                }
                return out;"""
            )
        )

    def rows(self) -> list[dict[str, str]]:
        """The results stream's rows, newest first: task, node, status and the cells' texts."""
        return list(
            self.js(
                """return [...document.querySelectorAll('#stream-rows [role=row]')].map(r => ({
                  ...r.dataset, cells: [...r.children].map(c => c.textContent)}));"""
            )
        )

    def detail(self) -> dict[str, str]:
        """The open task detail's fields (data-field -> text)."""
        return dict(
            self.js(
                """const out = {};
                for (const f of document.querySelectorAll('#detail-body [data-field]')) {
                  out[f.dataset.field] = f.textContent;
                }
                out.text = document.getElementById('detail-body').innerText;
                return out;"""
            )
        )

    def read_log(self) -> list[dict[str, Any]]:
        self.log.extend(self.driver.get_log("browser"))
        return self.log

    def problems(self) -> list[dict[str, Any]]:
        """Console entries at warning level or above that no test expected: script errors, CSP
        refusals ("Refused to ..."), failed requests."""
        return [
            entry
            for entry in self.read_log()
            if entry["level"] in ("SEVERE", "WARNING")
            and not any(p.search(entry["message"]) for p in self.expected)
        ]


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_dir(tmp_path_factory)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chrome()
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def dashboard(gw: GatewaySite, driver: Any, shots: Path, **env: str) -> Iterator[DashboardPage]:
    """The gateway started, the page opened in `driver`; at the end, the console checked."""
    with gateway_process(gw, **env):
        page = DashboardPage(driver, gw, shots)
        page.open()
        yield page
        problems = page.problems()
        assert not problems, f"the browser's console reported problems: {problems}"


@pytest.fixture
def gw_site(tmp_path: Path) -> Iterator[GatewaySite]:
    """The embedded broker, the fleet's identities and API clients; the gateway not started yet."""
    with gateway_site("embedded", tmp_path) as gw:
        yield gw


@pytest.fixture
def fleet_page(gw_site: GatewaySite, browser: Any, shots: Path) -> Iterator[DashboardPage]:
    """node-1 and node-2 (heartbeats every second), the gateway, the page open and signed out."""
    with (
        gw_site.site.agent("node-1", heartbeat_interval_s=1),
        gw_site.site.agent("node-2", heartbeat_interval_s=1),
        dashboard(gw_site, browser, shots) as page,
    ):
        yield page
