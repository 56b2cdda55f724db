"""Signed bodies of results and lifecycle events (PROTOCOL 6, 7), built once and never again.

A task's result body is made when the attempt ends and stored in the outbox; its signature is made
while that commit is synced (`SignOnce`), off the path from the worker to the broker. Ed25519
(RFC 8032) and HMAC-SHA256 are deterministic: whichever thread signs, and a restart that signs the
stored body again with the same key, the bytes published are the same. The kernel's output arrives
from the worker already as MessagePack, so the result map is assembled around it instead of being
decoded and encoded again.

Size: a result's envelope must fit in the maximum payload (`security.max_payload`, check 1's limit:
PROTOCOL 6). `Signing.result` raises `ResultTooLarge` for a kernel output that would not fit (the
lifecycle ends the task `abandoned`, code `result_too_large`), and leaves out a trace too long to fit
in an answer without output. Check 8 refuses most such tasks earlier: `output_budget` is the output
size the kernels' validators allow (`native.Limits.max_output_bytes`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from agent.protocol import Signer, TopicError, Topics, packb, seal

from ..errors import ResultTooLarge

#: Bytes of a result besides the kernel's output, at most: the envelope (166 with a 64-character kid
#: and an Ed25519 signature), the result's other fields (365 with a 64-character id, node and kernel
#: name, every time set and `error` nil), 531 in all, rounded up to 2 KiB, which leaves room for a
#: `trace` of about 1.5 KB (a W3C traceparent has 55 characters). See `output_budget`.
RESULT_RESERVE = 2048


def output_budget(max_payload: int) -> int:
    """The encoded output size check 8 allows a kernel (`native.Limits.max_output_bytes`): what is
    left of the maximum payload after `RESULT_RESERVE`. A conservative estimate: a result that
    still does not fit (a longer trace, an output whose size the params do not tell) ends
    `result_too_large` when it is made."""
    return max(1, max_payload - RESULT_RESERVE)


def envelope_overhead(signer: Signer) -> int:
    """Bytes `seal` adds to a body of any length: the envelope's map with `signer`'s kid and a
    signature, and the longest header of the body's bin (5 bytes, for bodies of 64 KiB or more)."""
    empty = msgpack.packb(
        {"v": 1, "alg": signer.alg, "kid": signer.kid, "body": b"", "sig": bytes(64)}, use_bin_type=True
    )
    return len(empty) - 2 + 5  # bin8 header of the empty body -> bin32 header


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

    __slots__ = ("_original", "_publication", "_signer", "body", "topic")

    def __init__(self, topic: str, body: bytes, signer: Signer, original: SignOnce | None = None) -> None:
        self.topic = topic
        self.body = body
        self._signer = signer
        self._original = original
        self._publication: Publication | None = None

    def publication(self) -> Publication:
        made = self._publication
        if made is None:
            original = self._original
            payload = seal(self.body, self._signer) if original is None else original.publication().payload
            made = self._publication = Publication(self.topic, payload)
        return made

    def copy_to(self, topic: str) -> SignOnce:
        """The same envelope on another topic (a reply to the issuer): signed once for both."""
        return SignOnce(topic, self.body, self._signer, original=self)


class Signing:
    """The agent's signed messages: results, events, rejects reports."""

    def __init__(self, node: str, topics: Topics, signer: Signer, max_payload: int = 1 << 20) -> None:
        self.node = node
        self.topics = topics
        self.signer = signer
        self.max_payload = max_payload
        #: The longest result body whose envelope fits in `max_payload`.
        self.max_body = max_payload - envelope_overhead(signer)

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
        """A result (PROTOCOL 7), signed on first use; `output` is the MessagePack of the kernel's result.

        Raises `ResultTooLarge` when `output` makes the envelope exceed the maximum payload."""
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
        if len(body) > self.max_body:
            body = self._within_limit(fields, body, output)
        return SignOnce(self.topics.results(self.node, task_id), body, self.signer)

    def _within_limit(self, fields: dict[str, Any], body: bytes, output: bytes | None) -> bytes:
        """A body too large to publish: `ResultTooLarge` for an output; without one (an error, a
        rejection), only a long trace copied from the task can make it so, and it is left out."""
        if output is not None or fields["trace"] is None:
            raise ResultTooLarge(len(body) + self.max_payload - self.max_body, self.max_payload)
        return pack_with_raw({**fields, "trace": None}, {"result": b"\xc0"})

    def reply_topic(self, kid: str | None, task_id: str, asked: object) -> str | None:
        """Where the issuer `kid` reads the results of a task that `asked` for them (`reply` true,
        PROTOCOL 1 and 4); None when it did not, or when `kid` cannot be a topic level."""
        if asked is not True or kid is None:
            return None
        try:
            return self.topics.replies(kid, task_id)
        except TopicError:
            return None

    def sign(self, body: bytes) -> bytes:
        """The envelope of a stored result body (a restart re-publishing its outbox)."""
        return seal(body, self.signer)

    def too_large(self, body: bytes) -> SignOnce:
        """A stored result body too large to publish (stored by an agent before it checked sizes,
        or under a larger `max_payload`): the same result, `abandoned` with `result_too_large`.
        Made from the stored body alone, so a restart makes the same bytes again."""
        old = peek_body(body)
        error = ResultTooLarge(len(body) + self.max_payload - self.max_body, self.max_payload)
        return self.result(
            str(old.get("id", "")),
            str(old.get("kernel", "")),
            "abandoned",
            run=_int(old.get("run"), 1),
            attempt=_int(old.get("attempt"), 1),
            received_at=_float(old.get("received_at")) or 0.0,
            started_at=_float(old.get("started_at")),
            finished_at=_float(old.get("finished_at")),
            duration_ms=_float(old.get("duration_ms")),
            error={"code": error.code, "message": str(error)},
            trace=old.get("trace") if isinstance(old.get("trace"), str) else None,
        )

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


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
