"""An agent in the test's own process, for the length of a `with` block.

with running_agent(Agent(config), TIMEOUT) as agent:   # connected and subscribed here
    ...
                                                       # stopped cleanly here (offline presence)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from agent.node.app import Agent


@contextlib.contextmanager
def running_agent(agent: Agent, timeout: float) -> Iterator[Agent]:
    """`agent` started and, before the block runs, connected and subscribed; stopped after it."""
    agent.start()
    try:
        assert agent.link.wait_subscribed(timeout), "the agent did not connect and subscribe"
        yield agent
    finally:
        agent.stop()
