"""Who is subscribed to what: a topic tree that finds a topic's subscribers without a full scan.

amqtt keeps `filter -> [(session, qos)]` and tests every filter against every message, so the
cost of one publish grows with the number of subscriptions in the whole broker (a thousand
agents with four filters each: four thousand matches per message). This index walks one
path of a tree per topic level, and answers with one entry per client carrying the highest
QoS of its matching subscriptions [MQTT-3.3.5-1], so overlapping subscriptions deliver once.

Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 section 4.8.2, which Mosquitto also
accepts from MQTT 3.1.1 clients) are kept apart: `match_shared` lists the groups whose filter
matches a topic, and the router gives each message to one member of each group.
"""

from __future__ import annotations

from .topicfilter import matches, parse_shared

SharedKey = tuple[str, str]  # (group, filter)


class _Node:
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subscribers: dict[str, int] = {}


class SubscriptionIndex:
    """Subscriptions by client id; `match(topic)` gives `{client_id: max granted qos}`."""

    def __init__(self) -> None:
        self._root = _Node()
        self._by_client: dict[str, dict[str, int]] = {}
        self._shared: dict[SharedKey, dict[str, int]] = {}

    def __len__(self) -> int:
        return sum(len(filters) for filters in self._by_client.values())

    def filters_of(self, client_id: str) -> dict[str, int]:
        """A copy of `{filter: qos}` for one client."""
        return dict(self._by_client.get(client_id, {}))

    def clients(self) -> list[str]:
        return list(self._by_client)

    def add(self, client_id: str, topic_filter: str, qos: int) -> bool:
        """Subscribe (or replace the QoS of an existing identical subscription); True if new."""
        shared = parse_shared(topic_filter)
        if shared is not None:
            members = self._shared.setdefault(shared, {})
            is_new = client_id not in members
            members[client_id] = qos
            self._by_client.setdefault(client_id, {})[topic_filter] = qos
            return is_new
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.setdefault(level, _Node())
        is_new = client_id not in node.subscribers
        node.subscribers[client_id] = qos
        self._by_client.setdefault(client_id, {})[topic_filter] = qos
        return is_new

    def remove(self, client_id: str, topic_filter: str) -> bool:
        """Unsubscribe; False when there was no such subscription."""
        filters = self._by_client.get(client_id)
        if filters is None or topic_filter not in filters:
            return False
        del filters[topic_filter]
        if not filters:
            del self._by_client[client_id]
        shared = parse_shared(topic_filter)
        if shared is None:
            self._prune(topic_filter.split("/"), client_id)
        else:
            members = self._shared[shared]
            del members[client_id]
            if not members:
                del self._shared[shared]
        return True

    def remove_client(self, client_id: str) -> list[str]:
        """Every subscription of one client removed; returns the filters it had."""
        filters = list(self._by_client.get(client_id, {}))
        for topic_filter in filters:
            self.remove(client_id, topic_filter)
        return filters

    def _prune(self, levels: list[str], client_id: str) -> None:
        path = [self._root]
        for level in levels:
            path.append(path[-1].children[level])
        path[-1].subscribers.pop(client_id, None)
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.subscribers or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]

    def match(self, topic: str) -> dict[str, int]:
        """`{client_id: highest qos}` over every subscription whose filter matches `topic`."""
        found: dict[str, int] = {}
        levels = topic.split("/")
        dollar = topic.startswith("$")
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            wildcards_allowed = not (dollar and depth == 0)  # [MQTT-4.7.2-1]
            multi = node.children.get("#") if wildcards_allowed else None
            if multi is not None:
                _merge(found, multi.subscribers)
            if depth == len(levels):
                _merge(found, node.subscribers)
                continue
            literal = node.children.get(levels[depth])
            if literal is not None:
                stack.append((literal, depth + 1))
            single = node.children.get("+") if wildcards_allowed else None
            if single is not None:
                stack.append((single, depth + 1))
        return found

    def match_shared(self, topic: str) -> list[tuple[SharedKey, dict[str, int]]]:
        """The shared groups whose filter matches `topic`, with their members `{client_id: qos}`."""
        return [(key, members) for key, members in self._shared.items() if matches(key[1], topic)]


def _merge(found: dict[str, int], subscribers: dict[str, int]) -> None:
    for client_id, qos in subscribers.items():
        if found.get(client_id, -1) < qos:
            found[client_id] = qos
