"""Broker endpoints: `host:port` strings parsed, and the order a client tries them in.

    servers = Endpoints([("n1", 8883), ("n2", 8883), ("n3", 8883)], order="random")
    host, port = servers.current          # where to connect now
    servers.advance()                     # the connection was lost or refused: the next one

A client of a broker cluster stays on an endpoint while it works and moves to the next one when
the connection is lost or cannot be made; `order = "random"` shuffles the list once per process,
so that a fleet's clients spread over the nodes instead of all starting on the first.

`follow_next` does the move for a paho client that reconnects by itself (`loop_start`).

Thread rules: an `Endpoints` belongs to one connection's network thread; `parse_endpoint` is pure.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

Order = Literal["ordered", "random"]
ORDERS: tuple[Order, ...] = ("ordered", "random")


def parse_endpoint(text: str) -> tuple[str, int]:
    """`host:port` (`[v6 address]:port`) as (host, port); ValueError saying what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [{host}]:{port}")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (a port from 1 to 65535)")
    return host, int(port)


def format_endpoint(host: str, port: int) -> str:
    """`host:port`, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Endpoints:
    """The endpoints of one client and the one it uses now (see the module docstring)."""

    def __init__(
        self, servers: Sequence[tuple[str, int]], order: Order = "ordered", rng: random.Random | None = None
    ) -> None:
        if not servers:
            raise ValueError("no broker endpoint")
        items = list(servers)
        if order == "random":
            (rng or random.Random()).shuffle(items)
        self._items = tuple(items)
        self._index = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def current(self) -> tuple[str, int]:
        return self._items[self._index]

    @property
    def all(self) -> tuple[tuple[str, int], ...]:
        """Every endpoint, in the order they are tried (from the first)."""
        return self._items

    def advance(self) -> tuple[str, int]:
        """Move to the next endpoint (after the last, the first again) and return it."""
        self._index = (self._index + 1) % len(self._items)
        return self.current

    def __str__(self) -> str:
        return format_endpoint(*self.current)


def follow_next(client: Any, endpoints: Endpoints, keepalive: int, **connect_options: Any) -> None:
    """Point paho's own reconnect loop (`loop_start`) at the next endpoint, from its network thread
    (`on_disconnect`, `on_connect_fail`): `connect_async` is paho's public way to change the address
    of a client whose connection is closed, and it keeps the session's queued QoS 1 messages.
    `connect_options` must repeat the client's (`clean_start`, `properties`). One endpoint: nothing."""
    if len(endpoints) > 1:
        host, port = endpoints.advance()
        client.connect_async(host, port, keepalive=keepalive, **connect_options)
