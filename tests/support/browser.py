"""Debian's headless Chromium, driven by Selenium through Debian's chromedriver, for the dashboard's
tests and benchmark. Selenium Manager is never asked (the driver and the browser are both named),
so nothing is downloaded; a missing browser skips a test locally and fails it in CI (.ci/run
installs `chromium` and `chromium-driver`).

    driver = chrome(1280, 800)     # headless, --no-sandbox (CI runs as root), console log kept
"""

from __future__ import annotations

from typing import Any

from tests.support.services import require_tool

HINT = "apt-get install chromium chromium-driver, or run .ci/run"


def chrome(width: int = 1280, height: int = 800) -> Any:
    """A new headless Chromium whose browser log (console, CSP refusals, failed requests) is kept
    for `driver.get_log("browser")`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = require_tool("chromium", hint=HINT)
    driver_path = require_tool("chromedriver", hint=HINT)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
