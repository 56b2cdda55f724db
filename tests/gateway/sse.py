"""A Server-Sent Events reader for tests: `GET /api/v1/events` over a plain socket, parsed as a
browser's EventSource would (`event:` / `data:` lines, a blank line ends a message, `:` comments).

    with EventReader(gw.port, token=token) as events:
        snapshot = events.next("snapshot")
        result = events.next("result", lambda r: r["id"] == task_id)
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 30.0


class EventReader:
    def __init__(
        self,
        port: int,
        *,
        token: str | None = None,
        cookie: str | None = None,
        receive_buffer: int | None = None,
    ) -> None:
        """`receive_buffer`: SO_RCVBUF set before connecting (a small one makes a slow reader)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        self.connection.sock = sock
        headers = {"Accept": "text/event-stream"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if cookie is not None:
            headers["Cookie"] = f"edge_session={cookie}"
        self.connection.request("GET", "/api/v1/events", headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.comments: list[str] = []
        self.retry: int | None = None
        self.seen: list[tuple[str, Any]] = []

    def body(self) -> Any:
        """The refusal's JSON body (when `status` is not 200)."""
        return json.loads(self.response.read())

    def message(self, timeout: float = TIMEOUT) -> tuple[str, Any]:
        """The next event (kind, data), or a comment as (":", its text); `retry:` is noted."""
        assert self.connection.sock is not None
        self.connection.sock.settimeout(timeout)
        kind, data = "message", []
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError("the event stream ended")
            text = line.decode().rstrip("\n")
            if text == "":
                if data:
                    event = (kind, json.loads("\n".join(data)))
                    self.seen.append(event)
                    return event
                continue
            field, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "":
                self.comments.append(value)
                return ":", value
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)
            elif field == "retry":
                self.retry = int(value)

    def next(self, kind: str, match: Callable[[Any], bool] = lambda _: True, timeout: float = TIMEOUT) -> Any:
        """The data of the next event of `kind` that `match`es (others are skipped, kept in `seen`;
        `kind` ":" waits for a comment)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} event came in {timeout} s; seen: {[k for k, _ in self.seen][-20:]}"
            got, data = self.message(left)
            if got == kind and match(data):
                return data

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
