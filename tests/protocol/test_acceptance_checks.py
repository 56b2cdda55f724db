"""Acceptance checks 1-7 of PROTOCOL 4, each against the text of the protocol.

Every test states the clock (NOW) and uses real keys and real signed bytes.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import msgpack
import pytest

from agent.protocol import (
    AcceptancePolicy,
    AuthenticationError,
    BodyError,
    Limits,
    MemoryReplayCache,
    Task,
    TaskRejected,
    Topics,
    TrustStore,
    accept_task,
    generate_signer,
    packb,
)
from agent.protocol.crontab import cron_trigger, never_fires

from .keyring import NODE, NOW, POOL, Keyring, key_entry, sign, task_body

TOPICS = Topics()
TASKS = TOPICS.tasks(NODE)


@pytest.fixture(scope="module")
def keys() -> Keyring:
    return Keyring()


@pytest.fixture
def trust(keys: Keyring) -> TrustStore:
    return keys.trust()


@pytest.fixture
def replay() -> MemoryReplayCache:
    return MemoryReplayCache()


def accept(
    payload: bytes,
    trust: TrustStore,
    replay: MemoryReplayCache,
    topic: str = TASKS,
    now: float = NOW,
    policy: AcceptancePolicy | None = None,
) -> Any:
    return accept_task(payload, topic, now, trust, replay, policy or AcceptancePolicy())


def auth_code(payload: bytes, trust: TrustStore, replay: MemoryReplayCache, **kw: Any) -> str:
    with pytest.raises(AuthenticationError) as info:
        accept(payload, trust, replay, **kw)
    return info.value.code


def reject_code(payload: bytes, trust: TrustStore, replay: MemoryReplayCache, **kw: Any) -> str:
    with pytest.raises(TaskRejected) as info:
        accept(payload, trust, replay, **kw)
    return info.value.code


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["device", "mcu"])
def test_a_valid_task_is_accepted_with_both_algorithms(keys: Keyring, trust, replay, who: str) -> None:
    body = task_body(priority=9, trace="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    accepted = accept(sign(body, getattr(keys, who)), trust, replay)
    assert accepted.task.id == body["id"]
    assert accepted.task.priority == 9
    assert accepted.kid == getattr(keys, who).kid
    assert accepted.redelivery is False
    assert accepted.body == packb(body)


@pytest.mark.parametrize(
    ("target", "topic"),
    [("all", TOPICS.tasks_all()), (f"pool:{POOL}", TOPICS.tasks_pool(POOL)), (NODE, TOPICS.tasks(NODE))],
)
def test_target_must_match_the_topic_it_arrived_on(
    keys: Keyring, trust, replay, target: str, topic: str
) -> None:
    assert (
        accept(sign(task_body(target=target), keys.device), trust, replay, topic=topic).task.target == target
    )
    # the same signed task re-routed to any other task topic is refused
    for other in {TOPICS.tasks_all(), TOPICS.tasks_pool(POOL), TOPICS.tasks("node-2"), TOPICS.tasks(NODE)} - {
        topic
    }:
        payload = sign(task_body(target=target), keys.device)
        assert reject_code(payload, trust, replay, topic=other) == "target_mismatch"


def test_control_needs_a_control_key_and_the_node_as_target(keys: Keyring, trust, replay) -> None:
    control = TOPICS.control(NODE)
    ok = accept(
        sign(task_body(kernel="sys.status", params={"task": "x"}), keys.operator),
        trust,
        replay,
        topic=control,
    )
    assert ok.task.kernel == "sys.status"
    assert (
        auth_code(sign(task_body(kernel="sys.drain", params={}), keys.device), trust, replay, topic=control)
        == "wrong_role"
    )
    assert (
        reject_code(
            sign(task_body(kernel="sys.drain", params={}, target="node-2"), keys.operator),
            trust,
            replay,
            topic=control,
        )
        == "target_mismatch"
    )


def test_no_task_is_accepted_on_a_topic_that_is_not_a_task_topic(keys: Keyring, trust, replay) -> None:
    payload = sign(task_body(), keys.device)
    for topic in (
        TOPICS.results(NODE, "x"),
        TOPICS.heartbeat(NODE),
        "other/tasks/node-1",
        "edge/tasks/a/b/c",
    ):
        assert auth_code(payload, trust, replay, topic=topic) == "malformed"


# --- check 1: form and size -------------------------------------------------------------------


def test_size_limit_is_checked_first(keys: Keyring, trust, replay) -> None:
    policy = AcceptancePolicy(limits=Limits(max_payload=512))
    small = sign(task_body(), keys.device)
    assert accept(small, trust, replay, policy=policy)
    big = sign(task_body(params={"signal": [0.5] * 100}), keys.device)
    assert len(big) > 512
    assert auth_code(big, trust, replay, policy=policy) == "too_large"
    # too large wins over every later failure, e.g. an unknown key
    assert (
        auth_code(
            sign(task_body(params={"signal": [0.5] * 100}), generate_signer("nobody")),
            trust,
            replay,
            policy=policy,
        )
        == "too_large"
    )


def test_default_size_limit_is_one_mebibyte(keys: Keyring, trust, replay) -> None:
    payload = sign(task_body(params={"blob": b"\0" * (1 << 20)}), keys.mcu)
    assert auth_code(payload, trust, replay) == "too_large"


def envelope(**fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        b"not msgpack at all",
        msgpack.packb([1, "ed25519", "dev-ed", b"b", b"s"]),
        envelope(v=2, alg="ed25519", kid="dev-ed", body=b"x", sig=b"s" * 64),
        envelope(v="1", alg="ed25519", kid="dev-ed", body=b"x", sig=b"s" * 64),
        envelope(v=1, alg="rsa", kid="dev-ed", body=b"x", sig=b"s" * 64),
        envelope(v=1, alg="ed25519", kid="dev-ed", body="text body", sig=b"s" * 64),
        envelope(v=1, alg="ed25519", kid="dev-ed", body=b"x"),
        envelope(v=1, alg="ed25519", kid=7, body=b"x", sig=b"s" * 64),
    ],
    ids=["empty", "reserved-byte", "text", "array", "v2", "v-str", "alg", "body-str", "no-sig", "kid-int"],
)
def test_payloads_that_are_not_an_envelope_are_malformed(payload: bytes, trust, replay) -> None:
    assert auth_code(payload, trust, replay) == "malformed"


# --- checks 2 and 3: key and signature ----------------------------------------------------------


def test_unknown_revoked_and_wrong_role_keys(keys: Keyring, trust, replay) -> None:
    assert auth_code(sign(task_body(), generate_signer("nobody")), trust, replay) == "unknown_key"
    assert auth_code(sign(task_body(), keys.revoked), trust, replay) == "revoked_key"
    assert auth_code(sign(task_body(), keys.agent), trust, replay) == "wrong_role"


def test_a_key_outside_its_validity_window_is_refused(keys: Keyring, replay) -> None:
    signer = generate_signer("dev-window")
    trust = TrustStore([key_entry(signer, {"task"}, not_before=NOW - 10, not_after=NOW + 10)])
    assert accept(sign(task_body(), signer), trust, replay)
    assert (
        auth_code(sign(task_body(issued_at=NOW - 30), signer), trust, replay, now=NOW - 20) == "revoked_key"
    )
    assert auth_code(sign(task_body(), signer), trust, replay, now=NOW + 20) == "revoked_key"


def test_bad_signatures(keys: Keyring, trust, replay) -> None:
    # a key with the same kid that the trust store does not hold
    assert auth_code(sign(task_body(), keys.stranger), trust, replay) == "bad_signature"
    raw = msgpack.unpackb(sign(task_body(), keys.device), raw=False)
    tampered = dict(raw, body=raw["body"][:-1] + bytes([raw["body"][-1] ^ 1]))
    assert auth_code(envelope(**tampered), trust, replay) == "bad_signature"
    # the envelope claims HMAC for an Ed25519 key
    hmac_claim = dict(raw, alg="hmac-sha256", sig=raw["sig"][:32])
    assert auth_code(envelope(**hmac_claim), trust, replay) == "bad_signature"


def test_an_over_long_kid_is_unknown_and_not_echoed(trust, replay) -> None:
    with pytest.raises(AuthenticationError) as info:
        accept(sign(task_body(), generate_signer("k" * 5000)), trust, replay)
    assert info.value.code == "unknown_key"
    assert info.value.kid is None


def test_a_signature_by_an_entry_for_another_role_says_wrong_role(replay: MemoryReplayCache) -> None:
    device, operator = generate_signer("shared"), generate_signer("shared")
    trust = TrustStore([key_entry(device, {"task"}), key_entry(operator, {"control"})])
    assert accept(sign(task_body(), device), trust, replay)
    assert auth_code(sign(task_body(), operator), trust, replay) == "wrong_role"


def test_rotation_with_the_old_key_revoked_at_once(replay: MemoryReplayCache) -> None:
    old, new = generate_signer("dev-rot"), generate_signer("dev-rot", "hmac-sha256")
    trust = TrustStore([key_entry(old, {"task"}, revoked=True), key_entry(new, {"task"})])
    assert auth_code(sign(task_body(), old), trust, replay) == "revoked_key"
    assert accept(sign(task_body(), new), trust, replay).kid == "dev-rot"


def test_rotation_old_key_until_its_not_after_then_only_the_new(replay: MemoryReplayCache) -> None:
    old, new = generate_signer("dev-rot"), generate_signer("dev-rot")
    trust = TrustStore(
        [
            key_entry(old, {"task"}, not_after=NOW + 60),
            key_entry(new, {"task"}, not_before=NOW - 1),
        ]
    )
    assert accept(sign(task_body(), old), trust, replay).kid == "dev-rot"
    assert accept(sign(task_body(), new), trust, replay).kid == "dev-rot"
    later = NOW + 120
    body = task_body(issued_at=later, expires_at=later + 60)
    assert auth_code(sign(body, old), trust, replay, now=later) == "revoked_key"
    assert accept(sign(task_body(issued_at=later, expires_at=later + 60), new), trust, replay, now=later)


# --- check 4: fields and types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kernel", None),
        ("kernel", 3),
        ("params", None),
        ("params", [1, 2]),
        ("target", None),
        ("target", b"node-1"),
        ("issued_at", None),
        ("issued_at", "now"),
        ("issued_at", float("nan")),
        ("expires_at", None),
        ("expires_at", float("inf")),
        ("nonce", None),
        ("nonce", b"short"),
        ("nonce", b"x" * 33),
        ("nonce", "text-nonce-16-by"),
        ("priority", 10),
        ("priority", -1),
        ("priority", 5.0),
        ("priority", True),
        ("timeout_s", 0),
        ("timeout_s", "30"),
        ("max_retries", 11),
        ("max_retries", -1),
        ("run_at", "soon"),
        ("every_s", 0.5),
        ("cron", "* * *"),
        ("cron", "61 * * * *"),
        ("cron", "*/0 * * * *"),
        ("cron", "99999999999999999999 * * * *"),
        ("cron", "* * * * " + "1," * 200 + "1"),
        ("cron", "0 9 * * 8"),  # day of week 0-7 (0 and 7 are Sunday)
        ("cron", "0 9 * * 5-2"),
        ("cron", 5),
        ("cron", "0 0 31 4,6,9,11 *"),  # no fire time at all (the 31st of a 30-day month)
        ("cron", "0 0 30 2 *"),
        ("tz", "Mars/Olympus"),
        ("tz", "../../etc/passwd"),
        ("tz", "zone.tab"),
        ("tz", "/etc/localtime"),
        ("tz", "x" * 5000),
        ("tz", "Europe/Paris\x00"),
        ("until", [1]),
        ("trace", "not-a-traceparent"),
    ],
)
def test_each_field_error_is_malformed_and_names_the_field(
    keys: Keyring, trust, replay, field: str, value: Any
) -> None:
    body = task_body(cron="*/5 * * * *") if field == "tz" else task_body()
    if value is None:
        del body[field]
    else:
        body[field] = value
    for signer in (keys.device, keys.mcu):
        with pytest.raises(TaskRejected) as info:
            accept(sign(body, signer), trust, replay)
        assert info.value.code == "malformed"
        assert info.value.task_id == body["id"]
        assert info.value.field == field
        assert field in info.value.message
        with pytest.raises(BodyError) as direct:
            Task.from_body(body)
        assert direct.value.field == field


def test_the_first_bad_field_in_the_tables_order_is_named(keys: Keyring, trust, replay) -> None:
    body = task_body(kernel=3, nonce=b"short", priority=99, trace="x")
    with pytest.raises(TaskRejected) as info:
        accept(sign(body, keys.device), trust, replay)
    assert info.value.field == "kernel"
    del body["kernel"]
    body["kernel"] = "stats"
    with pytest.raises(TaskRejected) as info:
        accept(sign(body, keys.device), trust, replay)
    assert info.value.field == "nonce"
    body["nonce"] = b"n" * 16
    with pytest.raises(TaskRejected) as info:
        accept(sign(body, keys.device), trust, replay)
    assert info.value.field == "priority"


def test_optional_fields_are_read_and_defaulted(keys: Keyring, trust, replay) -> None:
    plain = accept(sign(task_body(), keys.device), trust, replay).task
    assert (plain.priority, plain.timeout_s, plain.max_retries, plain.cron, plain.recurring) == (
        5,
        30.0,
        2,
        None,
        False,
    )
    body = task_body(
        priority=0, timeout_s=2, max_retries=0, every_s=1, until=NOW + 60, run_at=NOW + 5, tz="UTC"
    )
    task = accept(sign(body, keys.mcu), trust, replay).task
    assert (task.priority, task.timeout_s, task.max_retries, task.every_s, task.run_at) == (
        0,
        2.0,
        0,
        1.0,
        NOW + 5,
    )
    assert task.recurring and type(task.timeout_s) is float
    cron = accept(sign(task_body(cron="0 3 * * mon-fri", tz="Europe/Paris"), keys.device), trust, replay).task
    assert (cron.cron, cron.tz) == ("0 3 * * mon-fri", "Europe/Paris")
    # crontab's day-of-week numbers, as cron(8) reads them and as the agent runs them
    for expr in ("0 9 * * 7", "0 9 * * 0", "0 9 * * 5-7", "30 8 1 * 1", "*/15 * * * sun,sat"):
        assert accept(sign(task_body(cron=expr), keys.device), trust, replay).task.cron == expr
    # nil counts as absent; ints are accepted for times
    nil = accept(
        sign(task_body(priority=None, issued_at=int(NOW), trace=None), keys.device), trust, replay
    ).task
    assert nil.priority == 5 and nil.issued_at == float(int(NOW))


IMPOSSIBLE_CRON = ["0 0 31 4,6,9,11 *", "0 0 30 2 *", "*/1 * 31 2,4,6,9,11 *", "0-59 0-23 30,31 2 *"]


def test_a_cron_expression_without_a_fire_time_is_refused_fast(keys: Keyring, trust, replay) -> None:
    """APScheduler searched up to the year 9999 for these (0.1-0.5 s each, on the intake thread):
    the search is now bounded by a 5-year horizon."""
    accept(sign(task_body(cron="0 0 * * *"), keys.device), trust, replay)  # imports, time zones
    started = time.perf_counter()
    for expr in IMPOSSIBLE_CRON:
        with pytest.raises(TaskRejected) as info:
            accept(sign(task_body(cron=expr), keys.device), trust, replay)
        assert (info.value.code, info.value.field) == ("malformed", "cron")
        assert "no fire time within the next 5 years" in info.value.message
    assert time.perf_counter() - started < 0.2  # was 0.4 s and more
    # Feb 29 (leap years only), and a pair whose day-of-month half never fires: accepted
    for expr in ("0 0 29 2 *", "0 0 31 2 mon"):
        assert accept(sign(task_body(cron=expr), keys.device), trust, replay).task.cron == expr


def test_a_half_of_a_cron_pair_that_never_fires_costs_nothing_at_each_run() -> None:
    """`0 0 31 2 mon` runs on Mondays of February (cron: day of month OR day of week); its
    day-of-month half never fires and made every next-run search take 0.1 s or more."""
    trigger = cron_trigger("0 0 31 2 mon", "UTC")
    started = time.perf_counter()
    fire, runs = None, []
    now = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    for _ in range(20):
        fire = trigger.get_next_fire_time(fire, now)
        runs.append(fire)
    assert time.perf_counter() - started < 0.2
    assert all(r is not None and r.month == 2 and r.weekday() == 0 for r in runs)
    assert never_fires(cron_trigger("0 0 31 4,6,9,11 *", "Europe/Paris"))


def test_codec_refusals_inside_the_body_are_answered_when_the_id_is_readable(
    keys: Keyring, trust, replay
) -> None:
    bad_array = msgpack.ExtType(1, b"\x93\xa3>f8\x91\x01\xc4\x08" + bytes(8))
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    for params in ({"signal": bad_array}, {"signal": deep}, {"at": msgpack.Timestamp(1, 0)}):
        body = msgpack.packb(task_body(params=params), use_bin_type=True)
        with pytest.raises(TaskRejected) as info:
            accept(sign(body, keys.device), trust, replay)
        assert info.value.code == "malformed"
    # the same in an unknown extra field, and a timestamp where a time is expected
    with pytest.raises(TaskRejected):
        accept(sign(msgpack.packb(task_body(note=deep), use_bin_type=True), keys.device), trust, replay)
    with pytest.raises(TaskRejected) as info:
        stamp = msgpack.Timestamp.from_unix(NOW)
        accept(sign(msgpack.packb(task_body(issued_at=stamp), use_bin_type=True), keys.device), trust, replay)
    assert info.value.field == "issued_at"


def test_acceptance_leaves_kernels_to_the_agent(keys: Keyring, trust, replay) -> None:
    # checks 8 and 9 are the agent's: an unknown kernel passes 1-7
    assert accept(sign(task_body(kernel="no_such_kernel"), keys.device), trust, replay)


def test_a_kernel_on_the_wrong_topic_is_refused_before_its_nonce_is_claimed(
    keys: Keyring, trust, replay
) -> None:
    """PROTOCOL 8: sys.* only on the control topic, and only sys.* there (`unknown_kernel`). A copy
    of an operator's command republished on a tasks topic must not burn the command's nonce: the
    real command, arriving later on the control topic, is then accepted, not taken for a redelivery."""
    control = TOPICS.control(NODE)
    command = sign(task_body(kernel="sys.drain", params={}), keys.operator)  # operator: task + control
    task = sign(task_body(kernel="stats"), keys.operator)
    for payload, wrong, right in ((command, TASKS, control), (task, control, TASKS)):
        claimed = len(replay)
        for _ in range(2):  # refused each time, and nothing is claimed
            with pytest.raises(TaskRejected) as info:
                accept(payload, trust, replay, topic=wrong)
            assert (info.value.code, info.value.field) == ("unknown_kernel", "kernel")
            assert ("control topic" if wrong == TASKS else "tasks topic") in info.value.message
        assert len(replay) == claimed
        accepted = accept(payload, trust, replay, topic=right)
        assert not accepted.redelivery
        with pytest.raises(TaskRejected) as info:  # after it: still unknown_kernel on the wrong topic
            accept(payload, trust, replay, topic=wrong)
        assert info.value.code == "unknown_kernel"


@pytest.mark.parametrize("body_id", [None, 42, "", "x" * 65, "has space", "a/b"])
def test_a_body_without_a_readable_id_goes_to_the_rejects_topic(
    keys: Keyring, trust, replay, body_id
) -> None:
    body = task_body()
    if body_id is None:
        del body["id"]
    else:
        body["id"] = body_id
    assert auth_code(sign(body, keys.device), trust, replay) == "malformed"


@pytest.mark.parametrize("body", [b"\xc1", packb([1, 2, 3]), packb("a task"), b"\x81\xa2id"])
def test_a_body_that_is_not_a_map_is_malformed_without_an_id(
    keys: Keyring, trust, replay, body: bytes
) -> None:
    assert auth_code(sign(body, keys.device), trust, replay) == "malformed"


def test_unknown_extra_fields_are_ignored(keys: Keyring, trust, replay) -> None:
    assert accept(sign(task_body(colour="blue"), keys.device), trust, replay).task.kernel == "stats"


# --- check 5: target and times -----------------------------------------------------------------


def test_clock_skew_boundary(keys: Keyring, trust, replay) -> None:
    skew = AcceptancePolicy().clock_skew_s
    assert skew == 60
    assert accept(sign(task_body(issued_at=NOW + skew), keys.device), trust, replay)
    assert (
        reject_code(sign(task_body(issued_at=NOW + skew + 0.01), keys.device), trust, replay)
        == "not_yet_valid"
    )


def test_expiry_boundary(keys: Keyring, trust, replay) -> None:
    assert reject_code(sign(task_body(expires_at=NOW), keys.device), trust, replay) == "expired"
    assert accept(sign(task_body(expires_at=NOW + 0.01), keys.device), trust, replay)


def test_maximum_lifetime(keys: Keyring, trust, replay) -> None:
    day = AcceptancePolicy().max_lifetime_s
    assert day == 24 * 3600
    assert accept(sign(task_body(issued_at=NOW - 1, expires_at=NOW - 1 + day), keys.device), trust, replay)
    over = task_body(issued_at=NOW - 1, expires_at=NOW - 1 + day + 1)
    assert reject_code(sign(over, keys.device), trust, replay) == "ttl_too_long"


def test_the_first_failing_check_decides(keys: Keyring, trust, replay) -> None:
    # wrong target AND expired AND too long: target comes first in check 5
    body = task_body(target="node-9", expires_at=NOW - 1, issued_at=NOW - 10 * 86400)
    assert reject_code(sign(body, keys.device), trust, replay) == "target_mismatch"
    # malformed field (check 4) before the target (check 5)
    assert (
        reject_code(sign(task_body(target="node-9", priority=99), keys.device), trust, replay) == "malformed"
    )
    # a bad signature (check 3) before a malformed body (check 4)
    raw = msgpack.unpackb(sign(task_body(priority=99), keys.device), raw=False)
    assert auth_code(envelope(**dict(raw, sig=bytes(64))), trust, replay) == "bad_signature"
    # expired (check 5) before replayed (check 6)
    body = task_body()
    accept(sign(body, keys.device), trust, replay)
    assert reject_code(sign(body, keys.device), trust, replay, now=NOW + 1000) == "expired"


# --- checks 6 and 7: replay and ids ------------------------------------------------------------


def test_redelivery_of_an_accepted_task_is_acknowledged_again(keys: Keyring, trust, replay) -> None:
    payload = sign(task_body(), keys.device)
    assert accept(payload, trust, replay).redelivery is False
    again = accept(payload, trust, replay, now=NOW + 5)
    assert again.redelivery is True


def test_a_nonce_is_never_accepted_twice(keys: Keyring, trust, replay) -> None:
    first = task_body()
    accept(sign(first, keys.device), trust, replay)
    copy = task_body(nonce=first["nonce"])  # a new id, the same nonce
    assert reject_code(sign(copy, keys.device), trust, replay) == "replayed"
    # the same nonce from another issuer is a different pair (kid, nonce)
    assert accept(sign(task_body(nonce=first["nonce"]), keys.mcu), trust, replay)


def test_an_id_is_not_reused_for_another_body(keys: Keyring, trust, replay) -> None:
    first = task_body()
    accept(sign(first, keys.device), trust, replay)
    assert reject_code(sign(task_body(id=first["id"]), keys.device), trust, replay) == "duplicate_id"
    # ids are unique per issuer: another issuer may use the same id
    assert accept(sign(task_body(id=first["id"]), keys.mcu), trust, replay)


def test_replay_records_are_forgotten_only_after_the_task_expired(keys: Keyring, trust, replay) -> None:
    body = task_body(expires_at=NOW + 100)
    accept(sign(body, keys.device), trust, replay)
    replay.expire(NOW + 50)
    assert reject_code(sign(task_body(nonce=body["nonce"]), keys.device), trust, replay) == "replayed"
    replay.expire(NOW + 100 + AcceptancePolicy().clock_skew_s + 1)
    assert accept(sign(task_body(nonce=body["nonce"]), keys.device), trust, replay).redelivery is False


def test_two_threads_racing_the_same_task_accept_it_once(keys: Keyring, trust) -> None:
    for _ in range(20):
        replay = MemoryReplayCache()
        payload = sign(task_body(), keys.device)
        outcomes: list[bool] = []
        barrier = threading.Barrier(4)

        def run(
            payload: bytes = payload,
            replay: MemoryReplayCache = replay,
            barrier: threading.Barrier = barrier,
            outcomes: list[bool] = outcomes,
        ) -> None:
            barrier.wait()
            outcomes.append(accept(payload, trust, replay).redelivery)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == [False, True, True, True]


def test_reply_is_a_boolean_and_false_is_the_default_left_off_the_wire(keys: Keyring, trust, replay) -> None:
    """PROTOCOL 4's `reply`: true asks for the issuer's copy on {p}/replies/{kid}/{id}."""
    assert accept(sign(task_body(reply=True), keys.device), trust, replay).task.reply is True
    assert accept(sign(task_body(reply=False), keys.device), trust, replay).task.reply is False
    assert accept(sign(task_body(reply=None), keys.device), trust, replay).task.reply is False
    for bad in (1, "yes", [True]):
        with pytest.raises(TaskRejected) as info:
            accept(sign(task_body(reply=bad), keys.device), trust, replay)
        assert (info.value.code, info.value.field) == ("malformed", "reply")
        assert "'reply' must be true or false" in info.value.message
    assert "reply" not in Task.from_body(task_body(reply=False)).to_body()
    assert Task.from_body(task_body(reply=True)).to_body()["reply"] is True
