"""Fixtures of the firmware tests: the compiled C device (once per session and variant) and the
agent suite's real fleet, broker and agent (`site`, `any_site`, see tests/agent/conftest.py), which
the C and MicroPython device programs are driven against."""

from __future__ import annotations

import pytest

from tests.agent.conftest import any_site, site
from tests.firmware.c_device import Device, build

__all__ = ["any_site", "site"]  # fixtures re-exported for this folder


@pytest.fixture(scope="session")
def c_builds() -> dict[str, Device]:
    """Built once per session and variant (make is incremental across sessions too)."""
    return {}


def _built(c_builds: dict[str, Device], variant: str) -> Device:
    if variant not in c_builds:
        c_builds[variant] = build(variant)
    return c_builds[variant]


@pytest.fixture(params=["native", "asan"])
def c_device(request: pytest.FixtureRequest, c_builds: dict[str, Device]) -> Device:
    """edge-device built natively, then with ASan+UBSan: each test runs against both."""
    return _built(c_builds, request.param)


@pytest.fixture
def c_asan(c_builds: dict[str, Device]) -> Device:
    """The ASan+UBSan build only (the long-running tests)."""
    return _built(c_builds, "asan")


@pytest.fixture(params=["aarch64", "armhf"])
def c_cross(request: pytest.FixtureRequest, c_builds: dict[str, Device]) -> Device:
    """A cross build, run under qemu-user."""
    return _built(c_builds, request.param)
