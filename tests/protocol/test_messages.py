"""PROTOCOL 5-7 bodies: to_body/from_body round trips, validation naming the field, and opening
every kind of agent message from its topic with real keys."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pytest

from agent.protocol import (
    AuthenticationError,
    BodyError,
    Event,
    Heartbeat,
    Presence,
    RejectReport,
    Result,
    Topics,
    TrustStore,
    open_agent_message,
    seal,
)

from .keyring import NODE, Keyring, key_entry

NOW = time.time()
T = Topics()

RESULT = Result(
    id="t1",
    node=NODE,
    kernel="stats",
    status="completed",
    run=1,
    attempt=1,
    received_at=NOW,
    started_at=NOW + 0.1,
    finished_at=NOW + 0.2,
    duration_ms=0.05,
    result={"mean": 2.0},
    trace="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
)
REJECTED = dataclasses.replace(
    RESULT,
    **dict.fromkeys(["started_at", "finished_at", "duration_ms", "result", "trace"]),
    id="t2",
    kernel="nope",
    status="rejected",
    attempt=0,
    error={"code": "unknown_kernel", "message": "no kernel 'nope'"},
)
EVENT = Event(id="t1", node=NODE, status="failed", attempt=1, run=1, at=NOW, code="timeout", message="30 s")
HEARTBEAT = Heartbeat(
    node=NODE,
    seq=7,
    at=NOW,
    uptime_s=12.5,
    state="running",
    queued=3,
    running=2,
    completed_total=10,
    abandoned_total=1,
    rejected_total=4,
    outbox=0,
    rss_bytes=50_000_000,
    cpu_percent=12.5,
    load1=0.3,
    backend="native",
    version="0.1.0",
)
PRESENCE = Presence(
    node=NODE, state="online", session=3, at=NOW, version="0.1.0", kernels=["stats", "fir_filter"]
)
REPORT = RejectReport(
    node=NODE, topic="edge/tasks/node-1", code="bad_signature", sha256=b"\x01" * 32, at=NOW, kid="dev-ed"
)
MESSAGES = [RESULT, REJECTED, EVENT, HEARTBEAT, PRESENCE, REPORT]


@pytest.mark.parametrize(
    "msg", MESSAGES, ids=lambda m: type(m).__name__ + ":" + str(getattr(m, "status", ""))
)
def test_bodies_round_trip(msg: Any) -> None:
    assert type(msg).from_body(msg.to_body()) == msg


def test_unset_optional_fields_are_left_out_except_the_times_the_protocol_says_are_null() -> None:
    body = REJECTED.to_body()
    assert body["started_at"] is None and body["finished_at"] is None
    assert "trace" not in body and "result" not in body and "duration_ms" not in body
    assert "code" not in Event(id="t1", node=NODE, status="queued", attempt=0, run=1, at=NOW).to_body()


def test_unknown_fields_of_newer_agents_are_kept() -> None:
    msg = Heartbeat.from_body({**HEARTBEAT.to_body(), "gpu_percent": 3.0})
    assert msg.extra == {"gpu_percent": 3.0}
    assert msg.to_body()["gpu_percent"] == 3.0


@pytest.mark.parametrize(
    ("cls", "change", "field"),
    [
        (Result, {"status": "done"}, "status"),
        (Result, {"status": "abandoned"}, "error"),
        (Result, {"status": "expired", "error": {"code": "expired", "message": 3}}, "error"),
        (Result, {"run": "1"}, "run"),
        (Result, {"run": 0}, "run"),
        (Result, {"attempt": True}, "attempt"),
        (Result, {"received_at": "now"}, "received_at"),
        (Result, {"id": None}, "id"),
        (Event, {"status": "exploded"}, "status"),
        (Event, {"at": None}, "at"),
        (Heartbeat, {"state": "asleep"}, "state"),
        (Heartbeat, {"backend": "gpu"}, "backend"),
        (Heartbeat, {"seq": 1.5}, "seq"),
        (Presence, {"state": "away"}, "state"),
        (Presence, {"kernels": ["stats", 3]}, "kernels"),
        (Presence, {"session": None}, "session"),
        (RejectReport, {"code": "expired"}, "code"),
        (RejectReport, {"sha256": 5}, "sha256"),
    ],
)
def test_validation_names_the_field(cls: Any, change: dict[str, Any], field: str) -> None:
    example = next(m for m in MESSAGES if type(m) is cls)
    body = {k: v for k, v in {**example.to_body(), **change}.items() if v is not None}
    with pytest.raises(BodyError) as info:
        cls.from_body(body)
    assert info.value.field == field


@pytest.mark.parametrize("not_a_map", [[1, 2], "result", None, 3])
def test_a_body_that_is_not_a_map_is_refused(not_a_map: Any) -> None:
    with pytest.raises(BodyError) as info:
        Result.from_body(not_a_map)
    assert info.value.field == "body"


@pytest.mark.parametrize(
    ("topic", "msg"),
    [
        (T.results(NODE, "t1"), RESULT),
        (T.events(NODE, "t1"), EVENT),
        (T.heartbeat(NODE), HEARTBEAT),
        (T.presence(NODE), PRESENCE),
        (T.rejects(NODE), REPORT),
    ],
)
def test_every_kind_of_agent_message_opens_from_its_topic(topic: str, msg: Any) -> None:
    keys = Keyring()
    opened = open_agent_message(seal(msg.to_body(), keys.agent), topic, keys.trust())
    assert opened == msg


def test_a_result_carries_its_arrays_back_as_numpy() -> None:
    keys = Keyring()
    body = {**RESULT.to_body(), "result": {"magnitude": np.linspace(0.0, 1.0, 5)}}
    opened = open_agent_message(seal(body, keys.agent), T.results(NODE, "t1"), keys.trust())
    assert isinstance(opened, Result)
    np.testing.assert_array_equal(opened.result["magnitude"], np.linspace(0.0, 1.0, 5))


@pytest.mark.parametrize("topic", [T.tasks(NODE), T.control(NODE), T.tasks_all(), "edge/nothing/x", "x"])
def test_only_topics_agents_publish_on_are_opened(topic: str) -> None:
    keys = Keyring()
    with pytest.raises(AuthenticationError) as info:
        open_agent_message(seal(RESULT.to_body(), keys.agent), topic, keys.trust())
    assert info.value.code == "malformed"


def test_a_heartbeat_naming_another_node_is_refused() -> None:
    keys = Keyring()
    body = {**HEARTBEAT.to_body(), "node": "node-2"}
    with pytest.raises(BodyError) as info:
        open_agent_message(seal(body, keys.agent), T.heartbeat(NODE), keys.trust())
    assert info.value.field == "node"


def test_an_agent_key_past_its_validity_cannot_publish() -> None:
    keys = Keyring()
    trust = TrustStore([key_entry(keys.agent, {"agent"}, not_after=NOW + 60)])
    payload = seal(HEARTBEAT.to_body(), keys.agent)
    assert open_agent_message(payload, T.heartbeat(NODE), trust, now=NOW) == HEARTBEAT
    with pytest.raises(AuthenticationError) as info:
        open_agent_message(payload, T.heartbeat(NODE), trust, now=NOW + 61)
    assert info.value.code == "revoked_key"
