"""The retained message of each topic, within `limits.max_retained_messages` and `_bytes`.

Without a bound, every client that may publish with the retain flag could make the broker keep
messages without end (in memory and in the journal), and every wildcard subscription scans all
of them (`matching`): the count bound is also the bound of that scan. Past either bound a new
retained message is still delivered to the subscribers of the moment but not kept; the refusal
is counted and logged (broker/limits.py). A replacement that does not fit removes the old
message as well: a later subscriber gets no retained message rather than a stale one. Sizes are
topic plus payload bytes.

Thread rule: the broker's event loop only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .config import LimitSettings
from .limits import LimitEvents
from .store import MemoryStore
from .topicfilter import has_wildcard, matches

Entry = tuple[bytes, int]  # payload, QoS


def size_of(topic: str, payload: bytes) -> int:
    return len(topic.encode("utf-8", "surrogatepass")) + len(payload)


class RetainedMessages:
    """See the module docstring; changes go to the store (journal) as well."""

    def __init__(self, limits: LimitSettings, store: MemoryStore, events: LimitEvents) -> None:
        self.limits = limits
        self.store = store
        self.events = events
        self.messages: dict[str, Entry] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.messages)

    def items(self) -> Iterator[tuple[str, Entry]]:
        return iter(list(self.messages.items()))

    def restore(self, messages: Mapping[str, Entry]) -> None:
        """What the store kept (bounds aside: they may have been larger when it was kept)."""
        self.messages = dict(messages)
        self.bytes = sum(size_of(topic, payload) for topic, (payload, _) in self.messages.items())

    def set(self, topic: str, payload: bytes, qos: int) -> None:
        """Keep (or, with an empty payload, clear) the retained message of a topic [MQTT-3.3.1-5, -10]."""
        if not payload:
            self._remove(topic)
            return
        bound = self._bound_passed(topic, payload)
        if bound is not None:
            self._remove(topic)
            self.events.retained_refused(topic, bound, getattr(self.limits, bound), len(self.messages))
            return
        self._remove(topic, journal=False)
        self.messages[topic] = (payload, qos)
        self.bytes += size_of(topic, payload)
        self.store.retain(topic, payload, qos)

    def matching(self, topic_filter: str) -> Iterator[tuple[str, Entry]]:
        """The retained messages a new subscription with `topic_filter` gets."""
        if not has_wildcard(topic_filter):
            found = self.messages.get(topic_filter)
            if found is not None:
                yield topic_filter, found
            return
        for topic, entry in self.items():
            if matches(topic_filter, topic):
                yield topic, entry

    def _bound_passed(self, topic: str, payload: bytes) -> str | None:
        limits = self.limits
        old = self.messages.get(topic)
        count = len(self.messages) + (old is None)
        if limits.max_retained_messages and count > limits.max_retained_messages:
            return "max_retained_messages"
        freed = size_of(topic, old[0]) if old is not None else 0
        total = self.bytes - freed + size_of(topic, payload)
        if limits.max_retained_bytes and total > limits.max_retained_bytes:
            return "max_retained_bytes"
        return None

    def _remove(self, topic: str, *, journal: bool = True) -> None:
        old = self.messages.pop(topic, None)
        if old is not None:
            self.bytes -= size_of(topic, old[0])
            if journal:
                self.store.clear_retained(topic)
