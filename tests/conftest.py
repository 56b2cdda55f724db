"""Shared fixtures. Real services only: see tests/support/services.py."""

from __future__ import annotations

import pytest

from tests.support.services import free_port


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()
