"""100,000 random and mutated payloads through `accept_task`, and every single-bit flip.

Every payload must end in an accepted task or a protocol error whose code PROTOCOL 4/5 lists;
any other exception is a crash of the agent's intake. The fuzzer is seeded (reproducible) and
counts how far payloads got, so it cannot pass by rejecting everything at check 1.
"""

from __future__ import annotations

import collections
import math
import random
import time
from typing import Any

import msgpack
import pytest

from agent.protocol import (
    AcceptancePolicy,
    AuthenticationError,
    MemoryReplayCache,
    TaskRejected,
    Topics,
    accept_task,
    packb,
)

from .keyring import NODE, NOW, Keyring, sign, task_body

# The code lists of PROTOCOL 5 and 4, as the protocol's text gives them (not errors.py's copies).
_SECTION_5 = "malformed too_large unknown_key revoked_key wrong_role bad_signature"
_SECTION_4 = (
    "malformed target_mismatch not_yet_valid expired ttl_too_long replayed duplicate_id unknown_kernel"
)
REJECT_CODES = set(_SECTION_5.split())
RESULT_CODES = {*_SECTION_4.split(), "invalid_params", "overloaded"}
TOPIC = Topics().tasks(NODE)
TOTAL = 100_000

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x" * 70,
    "node-1",
    "all",
    "pool:cams",
    "\u2603",
    b"",
    b"\x00" * 8,
    b"\xff" * 40,
    [],
    [1, [2, [3]]],
    {},
    {"a": {"b": {"c": {}}}},
    {1: 2},
    msgpack.ExtType(1, b"\x93\xa3<f8\x91\x02\xc4\x10" + b"\0" * 16),
    msgpack.ExtType(1, b"junk"),
    msgpack.ExtType(5, b"x"),
    msgpack.Timestamp(1, 0),
    "*/5 * * * *",
    "Europe/Paris",
    "../../etc/passwd",
    NOW,
    NOW + 1e9,
    -NOW,
]
FIELDS = [
    "id",
    "kernel",
    "params",
    "target",
    "issued_at",
    "expires_at",
    "nonce",
    "priority",
    "timeout_s",
    "max_retries",
    "run_at",
    "every_s",
    "cron",
    "tz",
    "until",
    "trace",
    "extra",
]


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, strict_types=False)


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf.insert(pos, rng.randrange(256))
        elif op == 2 and buf:
            del buf[pos]
        else:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def _mutated_body(rng: random.Random) -> dict[str, Any] | Any:
    body: dict[Any, Any] = task_body()
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(FIELDS)
        choice = rng.random()
        if choice < 0.2:
            body.pop(field, None)
        else:
            body[field] = rng.choice(ODD_VALUES)
    if rng.random() < 0.05:
        body[rng.choice([1, b"k"])] = "odd key"
    if rng.random() < 0.03:
        return rng.choice(ODD_VALUES)
    return body


class Fuzzer:
    def __init__(self, keys: Keyring, seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys = keys
        self.signers = [keys.device, keys.mcu, keys.operator, keys.agent, keys.revoked, keys.stranger]
        self.valid = [sign(task_body(), s) for s in self.signers for _ in range(20)]

    def payload(self) -> bytes:
        rng = self.rng
        kind = rng.random()
        if kind < 0.10:
            return rng.randbytes(rng.randint(0, 300))
        if kind < 0.40:
            return _mutate_bytes(rng.choice(self.valid), rng)
        if kind < 0.55:
            raw = msgpack.unpackb(rng.choice(self.valid), raw=False)
            raw[rng.choice(["v", "alg", "kid", "body", "sig", "x"])] = rng.choice(ODD_VALUES)
            return _pack(raw)
        if kind < 0.60:
            return sign(_mutate_bytes(packb(task_body()), rng), self.keys.mcu)
        # re-signed by a trusted (mostly cheap HMAC) key, so the body checks are reached
        signer = self.keys.mcu if rng.random() < 0.8 else self.keys.device
        try:
            body = _pack(_mutated_body(rng))
        except (TypeError, ValueError, OverflowError):
            body = packb(task_body())
        return sign(body, signer)


def classify(payload: bytes, replay: MemoryReplayCache, trust: Any, policy: AcceptancePolicy) -> str:
    try:
        accepted = accept_task(payload, TOPIC, NOW, trust, replay, policy)
    except AuthenticationError as exc:
        assert exc.code in REJECT_CODES, exc
        if exc.message.startswith(("task body", "task without")):  # check 4, past the signature
            return "reject:malformed-body"
        return f"reject:{exc.code}"
    except TaskRejected as exc:
        assert exc.code in RESULT_CODES, exc
        assert exc.task_id
        return f"result:{exc.code}"
    return "redelivery" if accepted.redelivery else "accepted"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_hundred_thousand_fuzzed_payloads_end_in_a_protocol_outcome() -> None:
    keys = Keyring()
    trust, replay, policy = keys.trust(), MemoryReplayCache(), AcceptancePolicy()
    fuzzer = Fuzzer(keys, seed=20261127)
    outcomes: collections.Counter[str] = collections.Counter()
    accepted: list[bytes] = []
    started = time.monotonic()
    for i in range(TOTAL):
        # now and then a copy of an accepted task: a redelivery
        payload = fuzzer.rng.choice(accepted) if accepted and i % 97 == 0 else fuzzer.payload()
        try:
            outcome = classify(payload, replay, trust, policy)
        except AssertionError:
            raise
        except Exception as exc:  # the defect this test exists to find
            pytest.fail(f"{type(exc).__name__}: {exc} for payload {payload[:200]!r}")
        outcomes[outcome] += 1
        if outcome == "accepted":
            accepted.append(payload)
    elapsed = time.monotonic() - started
    print(f"{TOTAL} payloads in {elapsed:.1f} s: {dict(outcomes.most_common())}")
    assert sum(outcomes.values()) == TOTAL
    # every check was reached, and decided some payloads: not a vacuous pass
    for reached in (
        "accepted",
        "redelivery",
        "reject:malformed",
        "reject:bad_signature",
        "reject:unknown_key",
        "reject:revoked_key",
        "reject:wrong_role",
        "reject:malformed-body",
        "result:malformed",
        "result:target_mismatch",
        "result:expired",
        "result:not_yet_valid",
        "result:ttl_too_long",
        "result:replayed",
        "result:duplicate_id",
    ):
        assert outcomes[reached] > 0, (reached, outcomes)
    past_signature = TOTAL - sum(
        n for k, n in outcomes.items() if k.startswith("reject:") and k != "reject:malformed-body"
    )
    assert past_signature > 30_000, outcomes  # a third of the payloads reach the body checks
    assert outcomes["result:malformed"] > 10_000, outcomes


@pytest.mark.parametrize("who", ["device", "mcu"])
def test_every_single_bit_flip_of_a_signed_envelope_is_rejected(who: str) -> None:
    keys = Keyring()
    trust, policy = keys.trust(), AcceptancePolicy()
    payload = sign(task_body(), getattr(keys, who))
    assert not accept_task(payload, TOPIC, NOW, trust, MemoryReplayCache(), policy).redelivery
    flips = 0
    for byte in range(len(payload)):
        for bit in range(8):
            mutated = bytearray(payload)
            mutated[byte] ^= 1 << bit
            with pytest.raises(
                AuthenticationError
            ):  # the signature covers the body: no flip gets past check 3
                accept_task(bytes(mutated), TOPIC, NOW, trust, MemoryReplayCache(), policy)
            flips += 1
    assert flips == 8 * len(payload) > 1000
