"""Topic filters and the subscription index, without a network (properties against brute force)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.subscriptions import SubscriptionIndex
from broker.topicfilter import (
    covers,
    grants_subscription,
    matches,
    parse_shared,
    valid_filter,
    valid_topic,
)

LEVELS = st.sampled_from(["a", "b", "c", "", "$x"])
TOPICS = st.lists(LEVELS, min_size=1, max_size=4).map("/".join).filter(valid_topic)
FILTER_LEVELS = st.sampled_from(["a", "b", "c", "", "+", "$x"])
FILTERS = st.builds(
    lambda levels, tail: "/".join(levels + (["#"] if tail else [])),
    st.lists(FILTER_LEVELS, min_size=0, max_size=3),
    st.booleans(),
).filter(lambda f: f != "" and valid_filter(f))


def test_matching_follows_the_standard() -> None:
    assert matches("sport/#", "sport")  # [MQTT-4.7.1-2]: # also matches the parent level
    assert matches("sport/#", "sport/tennis/player1")
    assert matches("sport/+/player1", "sport/tennis/player1")
    assert not matches("sport/+", "sport/tennis/player1")
    assert matches("+/+", "/finance")
    assert not matches("+", "/finance")
    assert not matches("#", "$SYS/x") and not matches("+/x", "$SYS/x")  # [MQTT-4.7.2-1]
    assert matches("$SYS/#", "$SYS/x")


def test_validation() -> None:
    assert valid_filter("a/+/#") and valid_filter("#") and valid_filter("+")
    assert (
        not valid_filter("a/#/b")
        and not valid_filter("a/b#")
        and not valid_filter("a+/b")
        and not valid_filter("")
    )
    assert valid_topic("a/b") and not valid_topic("a/+") and not valid_topic("") and not valid_topic("a\0b")


def test_covers() -> None:
    assert covers("edge/results/#", "edge/results/+/x")
    assert covers("edge/results/#", "edge/results")
    assert not covers("edge/results/#", "edge/#")
    assert covers("edge/+/x", "edge/a/x") and not covers("edge/a/x", "edge/+/x")
    assert not covers("#", "$SYS/#") and covers("$SYS/#", "$SYS/a")


@given(pattern=FILTERS, topic_filter=FILTERS, topic=TOPICS)
@settings(max_examples=500, deadline=None)
def test_a_covered_filter_only_matches_what_the_pattern_matches(
    pattern: str, topic_filter: str, topic: str
) -> None:
    if covers(pattern, topic_filter) and matches(topic_filter, topic):
        assert matches(pattern, topic)


@given(
    subs=st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), FILTERS, st.integers(0, 2)), max_size=12),
    removals=st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), FILTERS), max_size=4),
    topic=TOPICS,
)
@settings(max_examples=300, deadline=None)
def test_index_agrees_with_a_full_scan(
    subs: list[tuple[str, str, int]], removals: list[tuple[str, str]], topic: str
) -> None:
    index = SubscriptionIndex()
    table: dict[tuple[str, str], int] = {}
    for client, topic_filter, qos in subs:
        index.add(client, topic_filter, qos)
        table[(client, topic_filter)] = qos
    for client, topic_filter in removals:
        assert index.remove(client, topic_filter) == ((client, topic_filter) in table)
        table.pop((client, topic_filter), None)
    expected: dict[str, int] = {}
    for (client, topic_filter), qos in table.items():
        if matches(topic_filter, topic):
            expected[client] = max(qos, expected.get(client, -1))
    assert index.match(topic) == expected
    assert len(index) == len(table)


def test_removing_a_client_prunes_the_tree() -> None:
    index = SubscriptionIndex()
    index.add("c", "a/b/c", 1)
    index.add("c", "a/+", 0)
    assert sorted(index.remove_client("c")) == ["a/+", "a/b/c"]
    assert index.match("a/b/c") == {} and len(index) == 0
    assert index._root.children == {}  # nothing left behind


def test_shared_subscriptions() -> None:
    assert parse_shared("a/b") is None
    assert parse_shared("$share/g/a/+") == ("g", "a/+")
    for bad in ("$share/g", "$share//a", "$share/g+/a", "$share/g/a/#/b"):
        with pytest.raises(ValueError):
            parse_shared(bad)
    index = SubscriptionIndex()
    index.add("c1", "$share/g/a/+", 1)
    index.add("c2", "$share/g/a/+", 2)
    index.add("c3", "a/b", 0)
    assert index.match("a/b") == {"c3": 0}  # shared groups are not ordinary matches
    assert index.match_shared("a/b") == [(("g", "a/+"), {"c1": 1, "c2": 2})]
    assert index.remove("c1", "$share/g/a/+") and index.remove("c2", "$share/g/a/+")
    assert index.match_shared("a/b") == []


def test_a_shared_subscription_needs_a_grant_naming_its_group() -> None:
    """PROTOCOL 1: read access to the filter alone does not let a client join a group."""
    pool = "$share/cams/edge/tasks/pool/cams"
    assert grants_subscription(pool, pool)
    assert grants_subscription("$share/cams/edge/tasks/pool/#", pool)
    assert not grants_subscription("edge/tasks/pool/cams", pool)  # the filter alone
    assert not grants_subscription("edge/#", pool) and not grants_subscription("#", pool)
    assert not grants_subscription(pool, "$share/other/edge/tasks/pool/cams")  # another group
    assert not grants_subscription("$share/+/edge/tasks/pool/cams", pool)  # no wildcard group
    assert not grants_subscription(pool, "$share/cams/edge/tasks/pool/#")  # wider than the grant
    assert not grants_subscription(pool, "edge/tasks/pool/cams")  # a shared grant is not a plain one
    assert not grants_subscription("#", "$share//x")  # malformed
    assert grants_subscription("edge/#", "edge/results/+/x")  # ordinary filters: `covers`
