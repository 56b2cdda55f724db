"""Signed bodies of results and lifecycle events (PROTOCOL 6, 7), built once and never again.

A task's result body is made when the attempt ends and stored in the outbox; its signature is made
while that commit is synced (`SignOnce`), off the path from the worker to the broker. Ed25519
(RFC 8032) and HMAC-SHA256 are deterministic: whichever thread signs, and a restart that signs the
stored body again with the same key, the bytes published are the same. The kernel's output arrives
from the worker already as MessagePack, so the result map is assembled around it instead of being
decoded and encoded again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from .protocol import Signer, Topics, packb, seal


@dataclass(frozen=True)
class Publication:
    """One message to publish: what the outbox stores and sends."""

    topic: str
    payload: bytes


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + n.to_bytes(2, "big")


_HEADER_LENGTH = {0xDE: 3, 0xDF: 5}  # map16, map32; a fixmap's header is its first byte


def pack_with_raw(fields: dict[str, Any], raw: dict[str, bytes]) -> bytes:
    """MessagePack of `fields` plus the entries of `raw`, whose values are MessagePack already:
    `fields` packed in one call, its map header replaced by one counting the raw entries too."""
    packed = packb(fields)
    skip = _HEADER_LENGTH.get(packed[0], 1)
    parts = [_map_header(len(fields) + len(raw)), packed[skip:]]
    for key, encoded in raw.items():
        parts.append(packb(key))
        parts.append(encoded)
    return b"".join(parts)


class SignOnce:
    """A message whose body exists before its signature: signed on first use, by whichever thread
    gets there first (the committing thread while the writer syncs, or the writer after). Two
    threads racing both make the same bytes, so no lock is needed."""

    __slots__ = ("_publication", "_signer", "body", "topic")

    def __init__(self, topic: str, body: bytes, signer: Signer) -> None:
        self.topic = topic
        self.body = body
        self._signer = signer
        self._publication: Publication | None = None

    def publication(self) -> Publication:
        made = self._publication
        if made is None:
            made = self._publication = Publication(self.topic, seal(self.body, self._signer))
        return made


class Signing:
    """The agent's signed messages: results, events, rejects reports."""

    def __init__(self, node: str, topics: Topics, signer: Signer) -> None:
        self.node = node
        self.topics = topics
        self.signer = signer

    def result(
        self,
        task_id: str,
        kernel: str,
        status: str,
        *,
        run: int,
        attempt: int,
        received_at: float,
        started_at: float | None = None,
        finished_at: float | None = None,
        duration_ms: float | None = None,
        output: bytes | None = None,
        error: dict[str, str] | None = None,
        trace: str | None = None,
    ) -> SignOnce:
        """A result (PROTOCOL 7), signed on first use; `output` is the MessagePack of the kernel's result."""
        fields: dict[str, Any] = {
            "id": task_id,
            "node": self.node,
            "kernel": kernel,
            "status": status,
            "run": run,
            "attempt": attempt,
            "received_at": received_at,
            "started_at": started_at,
            "finished_at": finished_at,
            "duration_ms": duration_ms,
            "error": error,
            "trace": trace,
        }
        body = pack_with_raw(fields, {"result": output if output is not None else b"\xc0"})
        return SignOnce(self.topics.results(self.node, task_id), body, self.signer)

    def sign(self, body: bytes) -> bytes:
        """The envelope of a stored result body (a restart re-publishing its outbox)."""
        return seal(body, self.signer)

    def event(
        self,
        task_id: str,
        status: str,
        *,
        run: int,
        attempt: int,
        code: str | None = None,
        message: str | None = None,
        trace: str | None = None,
    ) -> Publication:
        """A lifecycle event (PROTOCOL 6), with the task's `trace` when it had one."""
        body: dict[str, Any] = {
            "id": task_id,
            "node": self.node,
            "status": status,
            "attempt": attempt,
            "run": run,
            "at": time.time(),
        }
        if code is not None:
            body["code"] = code
        if message is not None:
            body["message"] = message
        if trace is not None:
            body["trace"] = trace
        return Publication(self.topics.events(self.node, task_id), seal(packb(body), self.signer))

    def reject_report(self, body: dict[str, Any]) -> Publication:
        return Publication(self.topics.rejects(self.node), seal(packb(body), self.signer))


def peek_body(body: bytes) -> dict[str, Any]:
    """Fields of an authenticated body that failed a later check (kernel, trace for the answer)."""
    try:
        value = msgpack.unpackb(body, raw=False, ext_hook=lambda code, data: None)
    except Exception:  # any failure: the answer simply carries no kernel or trace
        return {}
    return value if isinstance(value, dict) else {}
