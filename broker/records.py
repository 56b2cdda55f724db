"""The durable state of the broker and its on-disk encodings (used by `broker/store.py`).

`StoreState` is kept current by applying the same records that go to the journal, so the
snapshot written at compaction is exactly what replaying the journal would give.

Records (msgpack lists): R retain, r clear retained, S session (with its username),
s session deleted, B subscribe, b unsubscribe, M message body, Q message queued for a session,
A done (acknowledged or dropped). A message body is stored once however many sessions hold it
and forgotten when the last one is done with it.

The journal holds one frame per group commit whose payload is the msgpack list of the batch's
records (one encoding and one CRC per batch, and a torn batch is cut off whole); the framing is
the journal engine's (`agent.common.journal`). A payload that is a single record is read too:
journals written before batches were framed record by record (`broker.store._records`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

FORMAT = 1
Record = list[Any]


@dataclass
class SessionRecord:
    username: str | None
    subscriptions: dict[str, int] = field(default_factory=dict)
    pending: dict[int, tuple[int, bool]] = field(default_factory=dict)  # seq -> (qos, retain), in order


@dataclass
class StoreState:
    """The durable state, kept current by applying the same records that go to the journal."""

    retained: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    messages: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    refs: dict[int, int] = field(default_factory=dict)
    next_seq: int = 1

    def apply(self, rec: Record) -> None:
        kind = rec[0]
        if kind == "R":
            self.retained[rec[1]] = (bytes(rec[2]), int(rec[3]))
        elif kind == "r":
            self.retained.pop(rec[1], None)
        elif kind == "S":
            existing = self.sessions.get(rec[1])
            if existing is None:
                self.sessions[rec[1]] = SessionRecord(rec[2])
            else:
                existing.username = rec[2]
        elif kind == "s":
            gone = self.sessions.pop(rec[1], None)
            for seq in gone.pending if gone else ():
                self._unref(seq)
        elif kind == "B":
            self._session(rec[1]).subscriptions[rec[2]] = int(rec[3])
        elif kind == "b":
            self._session(rec[1]).subscriptions.pop(rec[2], None)
        elif kind == "M":
            self.add_message(rec[1], rec[2], bytes(rec[3]))
        elif kind == "Q":
            self.add_pending(rec[1], rec[2], int(rec[3]), bool(rec[4]))
        elif kind == "A":
            self.remove_pending(rec[1], rec[2])
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    # The three records of every queued message, as methods of their own: the store calls them
    # directly on its hot path.

    def add_message(self, seq: int, topic: str, payload: bytes) -> None:
        self.messages[seq] = (topic, payload)
        self.refs.setdefault(seq, 0)
        if seq >= self.next_seq:
            self.next_seq = seq + 1

    def add_pending(self, client_id: str, seq: int, qos: int, retain: bool) -> bool:
        """Queue message `seq` for a session; False if it is unknown or already queued there."""
        session = self._session(client_id)
        if seq not in self.messages or seq in session.pending:
            return False
        session.pending[seq] = (qos, retain)
        self.refs[seq] += 1
        return True

    def remove_pending(self, client_id: str, seq: int) -> bool:
        """A session is done with `seq`; False if it did not hold it."""
        holder = self.sessions.get(client_id)
        if holder is None or holder.pending.pop(seq, None) is None:
            return False
        self._unref(seq)
        return True

    def _session(self, client_id: str) -> SessionRecord:
        return self.sessions.setdefault(client_id, SessionRecord(None))

    def _unref(self, seq: int) -> None:
        left = self.refs.get(seq, 1) - 1
        if left <= 0:
            self.refs.pop(seq, None)
            self.messages.pop(seq, None)
        else:
            self.refs[seq] = left

    def encode(self, gen: int) -> bytes:
        live = {seq: body for seq, body in self.messages.items() if self.refs.get(seq, 0) > 0}
        doc = {
            "format": FORMAT,
            "gen": gen,
            "next_seq": self.next_seq,
            "retained": [[t, p, q] for t, (p, q) in self.retained.items()],
            "messages": [[seq, t, p] for seq, (t, p) in live.items()],
            "sessions": [
                [
                    cid,
                    s.username,
                    list(s.subscriptions.items()),
                    [[q, r, seq] for seq, (q, r) in s.pending.items()],
                ]
                for cid, s in self.sessions.items()
            ],
        }
        return bytes(msgpack.packb(doc, use_bin_type=True))

    @classmethod
    def decode(cls, data: bytes) -> tuple[StoreState, int]:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a broker snapshot of format {FORMAT}")
        state = cls(next_seq=int(doc["next_seq"]))
        for topic, payload, qos in doc["retained"]:
            state.apply(["R", topic, payload, qos])
        for seq, topic, payload in doc["messages"]:
            state.apply(["M", seq, topic, payload])
        for cid, username, subs, pending in doc["sessions"]:
            state.apply(["S", cid, username])
            for topic_filter, qos in subs:
                state.apply(["B", cid, topic_filter, qos])
            for qos, retain, seq in pending:
                state.apply(["Q", cid, seq, qos, retain])
        return state, int(doc["gen"])
