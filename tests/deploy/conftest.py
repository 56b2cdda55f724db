"""The agent suite's fixtures (a real fleet, broker and agent) for the deployment tests."""

from tests.agent.conftest import site

__all__ = ["site"]
