"""PROTOCOL 1: every topic built and parsed back, and what is not a topic of the protocol."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.protocol import ParsedTopic, TopicError, Topics, is_valid_id

ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
nodes = ids.filter(lambda s: s != "all")
prefixes = st.sampled_from(["edge", "site-7/edge", "a"])


@given(prefixes, nodes, ids)
def test_every_topic_parses_back_to_what_built_it(prefix: str, node: str, task_id: str) -> None:
    t = Topics(prefix)
    assert t.parse(t.tasks(node)) == ParsedTopic("tasks", node=node)
    assert t.parse(t.tasks_all()) == ParsedTopic("tasks_all")
    assert t.parse(t.tasks_pool(task_id)) == ParsedTopic("tasks_pool", pool=task_id)
    assert t.parse(t.control(node)) == ParsedTopic("control", node=node)
    assert t.parse(t.results(node, task_id)) == ParsedTopic("results", node=node, task_id=task_id)
    assert t.parse(t.events(node, task_id)) == ParsedTopic("events", node=node, task_id=task_id)
    for kind in ("heartbeat", "presence", "rejects"):
        assert t.parse(getattr(t, kind)(node)) == ParsedTopic(kind, node=node)  # type: ignore[arg-type]
    assert t.parse(t.replies(task_id, node)) == ParsedTopic("replies", issuer=task_id, task_id=node)


def test_the_wire_names_are_those_of_the_table() -> None:
    t = Topics()
    assert t.tasks("n1") == "edge/tasks/n1"
    assert t.tasks_all() == "edge/tasks/all"
    assert t.tasks_pool("cams") == "edge/tasks/pool/cams"
    assert t.shared_pool_subscription("cams") == "$share/cams/edge/tasks/pool/cams"
    assert t.control("n1") == "edge/control/n1"
    assert t.results("n1", "t1") == "edge/results/n1/t1"
    assert t.events("n1", "t1") == "edge/events/n1/t1"
    assert t.heartbeat("n1") == "edge/heartbeat/n1"
    assert t.presence("n1") == "edge/presence/n1"
    assert t.rejects("n1") == "edge/rejects/n1"
    assert t.replies("sensor-1", "t1") == "edge/replies/sensor-1/t1"
    assert t.agent_subscriptions("n1", ("cams",)) == [
        "edge/tasks/n1",
        "edge/tasks/all",
        "edge/control/n1",
        "$share/cams/edge/tasks/pool/cams",
    ]
    assert t.agent_subscriptions("n1", ("cams",), shared=False)[-1] == "edge/tasks/pool/cams"


@pytest.mark.parametrize(
    ("topic", "target", "role"),
    [
        ("edge/tasks/n1", "n1", "task"),
        ("edge/tasks/all", "all", "task"),
        ("edge/tasks/pool/cams", "pool:cams", "task"),
        ("edge/control/n1", "n1", "control"),
        ("edge/results/n1/t1", None, "agent"),
        ("edge/heartbeat/n1", None, "agent"),
        ("edge/replies/sensor-1/t1", None, "agent"),
    ],
)
def test_the_target_a_task_must_carry_and_the_role_a_key_needs(topic: str, target: str, role: str) -> None:
    parsed = Topics().parse(topic)
    assert parsed.task_target == target
    assert parsed.required_role == role


@pytest.mark.parametrize("target", ["n1", "all", "pool:cams"])
def test_for_target_routes_each_kind_of_target(target: str) -> None:
    t = Topics()
    assert t.parse(t.for_target(target)).task_target == target


@pytest.mark.parametrize(
    "topic",
    [
        "other/tasks/n1",
        "edge",
        "edge/",
        "edge/tasks",
        "edge/tasks/",
        "edge/tasks/a/b",
        "edge/tasks/pool/",
        "edge/tasks/pool/a/b",
        "edge/control/all",
        "edge/control/n1/x",
        "edge/results/n1",
        "edge/results/all/t1",
        "edge/results/n1/t1/x",
        "edge/heartbeat/n1 n2",
        "edge/presence/" + "x" * 65,
        "edge/unknown/n1",
        "edge/replies/sensor-1",
        "edge/replies/sensor-1/t1/x",
        "edge/replies/+/t1",
        "edge/tasks/+",
        "edge/tasks/#",
        "edge/tasks/n\u00e9",
    ],
)
def test_what_is_not_a_protocol_topic_is_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        Topics().parse(topic)


def test_a_non_string_topic_is_refused_not_crashed_on() -> None:
    with pytest.raises(TopicError):
        Topics().parse(b"edge/tasks/n1")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "x" * 65, "+", "#", "$x", "\u00e9"])
def test_ids_are_checked_when_building(bad: str) -> None:
    t = Topics()
    assert not is_valid_id(bad)
    for build in (t.tasks, t.control, t.heartbeat, t.presence, t.rejects, t.tasks_pool):
        with pytest.raises(TopicError):
            build(bad)
    with pytest.raises(TopicError):
        t.results("n1", bad)
    for issuer, task_id in ((bad, "t1"), ("sensor-1", bad)):
        with pytest.raises(TopicError):
            t.replies(issuer, task_id)


def test_all_is_a_target_not_a_node_id() -> None:
    with pytest.raises(TopicError):
        Topics().control("all")
    with pytest.raises(TopicError):
        Topics().tasks("all")


@pytest.mark.parametrize("prefix", ["", "/edge", "edge/", "ed+ge", "ed#ge", "$SYS", "e\0"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(TopicError):
        Topics(prefix)
