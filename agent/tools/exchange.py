"""Publish signed tasks and wait for their verified answers: the loop under every edge-submit command.

client = connect(config, "submit")
subscribe_answers(client, collector)           # before the first publish
publish_all(client, [(topic, payload), ...], progress)
finished = wait_answers(client, collector, deadline, on_update)
status = exit_status(collector.pending.values())
"""

from __future__ import annotations

import contextlib
import queue
import sys
import time
from collections.abc import Callable, Iterable

from .collect import Collector, Pending, Update
from .connection import SUBSCRIBE_REFUSED, ToolClient
from .errors import EXIT_NOT_COMPLETED, EXIT_OK, EXIT_TIMEOUT, ConnectFailed, UsageError
from .progress import Progress
from .settings import ClientConfig

#: QoS 1 publishes in flight before waiting for PUBACKs (paho's own window is 20).
PUBLISH_WINDOW = 200


def connect(config: ClientConfig, tool: str) -> ToolClient:
    client = ToolClient.from_config(config, tool)
    client.connect()
    return client


def subscribe_answers(client: ToolClient, collector: Collector) -> None:
    """Results and rejects topics of the pending tasks; refused results filters are an error."""
    results, rejects = collector.filters()
    granted = client.subscribe(results + rejects)
    if any(code == SUBSCRIBE_REFUSED for code in granted[: len(results)]):
        hint = (
            "--reply (results on its own replies topic)"
            if collector.replies_for is None
            else "an operator bundle"
        )
        raise UsageError(
            f"the broker does not let this identity read {results[0]}: use {hint} to wait for"
            " results, or --no-wait to only publish"
        )
    if any(code == SUBSCRIBE_REFUSED for code in granted[len(results) :]):
        print(
            "edge-submit: warning: cannot read rejects reports: a task the agent cannot authenticate"
            " will show as a timeout",
            file=sys.stderr,
        )


def publish_all(
    client: ToolClient,
    messages: Iterable[tuple[str, bytes]],
    progress: Progress | None,
    timeout: float = 30.0,
) -> None:
    """Publish at QoS 1 and wait for every PUBACK (in windows, so memory stays bounded)."""
    window = []
    for topic, payload in messages:
        window.append(client.publish(topic, payload))
        if len(window) >= PUBLISH_WINDOW:
            client.wait_published(window, timeout)
            if progress is not None:
                progress.advance(len(window))
            window = []
    client.wait_published(window, timeout)
    if progress is not None:
        progress.advance(len(window))
        progress.finish()


def wait_answers(
    client: ToolClient, collector: Collector, deadline: float, on_update: Callable[[Update], None]
) -> bool:
    """Hand every relevant message to `on_update` until all tasks are answered (True) or the
    deadline (a `time.monotonic()` value) passes (False)."""
    while not collector.done:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            incoming = client.messages.get(timeout=min(left, 0.5))
        except queue.Empty:
            if not client.connected.is_set():
                print("edge-submit: warning: connection lost; paho is reconnecting", file=sys.stderr)
            continue
        update = collector.handle(incoming)
        if update is not None:
            on_update(update)
    return True


def exit_status(pendings: Iterable[Pending]) -> int:
    items = list(pendings)
    if any(item.refused is not None or any(not r.ok for r in item.results) for item in items):
        return EXIT_NOT_COMPLETED
    if not items or not all(answered(item) for item in items):
        return EXIT_TIMEOUT
    return EXIT_OK


def answered(item: Pending) -> bool:
    """Done, or a task for `all` with an unknown number of agents that got at least one result."""
    return item.done or (item.task.target == "all" and item.expect_nodes is None and bool(item.results))


def close_quietly(client: ToolClient) -> None:
    with contextlib.suppress(OSError, ConnectFailed):
        client.close()
