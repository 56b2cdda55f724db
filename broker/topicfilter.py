"""MQTT 3.1.1 topic names and filters (section 4.7): validation, matching and covering.

Pure functions without a network, shared by the ACL (which must decide whether a whole
subscription lies inside what a user may read) and the subscription index.

Shared subscriptions (`$share/{group}/{filter}`): the ACL grants one only through a pattern of
the same form naming the same group (`grants_subscription`), as PROTOCOL 1 requires: read
access to `{filter}` alone must not let a client join a pool's group and take its messages.

`$`-topics: a filter whose first level is a wildcard never matches a topic that starts with `$`
[MQTT-4.7.2-1]; the same holds for ACL patterns, as in Mosquitto (`#` does not grant `$SYS/...`).
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535
SHARE_PREFIX = "$share/"


def _length_ok(text: str) -> bool:
    return 0 < len(text.encode("utf-8", "surrogatepass")) <= MAX_TOPIC_BYTES and "\0" not in text


def valid_topic(topic: str) -> bool:
    """A topic name a client may publish to: non-empty, no wildcards, no NUL [MQTT-4.7.3-1, 3.3.2-2]."""
    return _length_ok(topic) and "+" not in topic and "#" not in topic


def valid_filter(topic_filter: str) -> bool:
    """A subscription filter: `#` alone and last, `+` alone in its level [MQTT-4.7.1-2, 4.7.1-3]."""
    if not _length_ok(topic_filter):
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def parse_shared(topic_filter: str) -> tuple[str, str] | None:
    """`$share/{group}/{filter}` -> (group, filter); None for an ordinary filter.

    Raises ValueError for a malformed shared subscription (an empty group, a wildcard in the
    group, an invalid or missing filter), as MQTT 5 section 4.8.2 defines them.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, sep, inner = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not sep or not group or "+" in group or "#" in group or not valid_filter(inner):
        raise ValueError(f"malformed shared subscription {topic_filter!r}")
    return group, inner


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    """True when `topic` (a name) is matched by `topic_filter` (which may hold wildcards)."""
    if not has_wildcard(topic_filter):
        return topic_filter == topic
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for index, level in enumerate(f_levels):
        if level == "#":
            return True
        if index >= len(t_levels) or (level != "+" and level != t_levels[index]):
            return False
    return len(f_levels) == len(t_levels)


def covers(pattern: str, topic_filter: str) -> bool:
    """True when every topic that `topic_filter` can match is also matched by `pattern`.

    This is how a subscription is checked against an ACL: `edge/results/+/x` lies inside
    `edge/results/#`; `edge/#` does not lie inside `edge/results/#`.
    """
    if topic_filter.startswith("$") and pattern[:1] in ("+", "#"):
        return False
    p_levels = pattern.split("/")
    f_levels = topic_filter.split("/")
    for index, p_level in enumerate(p_levels):
        if p_level == "#":  # also when the filter has ended: `a/b/#` matches `a/b` itself
            return True
        if index >= len(f_levels):
            return False
        f_level = f_levels[index]
        if f_level == "#":
            return False
        if p_level == "+":
            continue
        if f_level == "+" or f_level != p_level:
            return False
    return len(p_levels) == len(f_levels)


def grants_subscription(pattern: str, topic_filter: str) -> bool:
    """True when the ACL pattern `pattern` lets a client subscribe with `topic_filter`.

    An ordinary filter must lie inside the pattern (`covers`). A shared subscription needs a
    `$share/{group}/...` pattern naming exactly its group, whose filter covers its own: no
    wildcard stands for a group, and a plain pattern (even `#`) grants no group.
    """
    try:
        shared = parse_shared(topic_filter)
    except ValueError:
        return False
    if shared is None:
        return covers(pattern, topic_filter)
    try:
        granted = parse_shared(pattern)
    except ValueError:
        return False
    return granted is not None and granted[0] == shared[0] and covers(granted[1], shared[1])
