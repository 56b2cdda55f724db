"""The agent suite's fixtures (a real fleet, broker and agent: tests/agent/conftest.py) for the
firmware tests, which drive device programs against them."""

from tests.agent.conftest import any_site, site

__all__ = ["any_site", "site"]
