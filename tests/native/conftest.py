"""Fixtures of the native kernel tests: the registry under test and the numpy-only registry."""

from __future__ import annotations

import pytest

from native import Registry, load_registry
from tests.support.services import in_ci


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The registry as the agent gets it. In CI the native library must have loaded."""
    reg = load_registry()
    if reg.backend != "native":
        message = "native kernels did not load (pip install -e . builds them): only the numpy path is tested"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return reg


@pytest.fixture(scope="session")
def numpy_registry() -> Registry:
    return Registry(None)
