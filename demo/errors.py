"""The demo's one error: something a user can fix, said in a sentence."""

from __future__ import annotations


class DemoError(Exception):
    """The demo cannot go on; the message says why and, where it can, what to do."""
