"""The demo's one error: something a user can fix, said in a sentence."""

from __future__ import annotations

from agent.common.errors import EdgeError


class DemoError(EdgeError):
    """The demo cannot go on; the message says why and, where it can, what to do."""
