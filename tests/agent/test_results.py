"""Results signed on first use (`SignOnce`): the outbox stores a result's body and the agent signs
it while the commit syncs, or again after a restart. That is only sound if every signing of the
same body with the same key gives the same bytes, whichever thread or process makes it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.node.errors import ResultTooLarge
from agent.node.publish.signing import Signing, SignOnce
from agent.protocol import (
    Ed25519Signer,
    Result,
    Topics,
    generate_signer,
    open_agent_message,
    packb,
    seal,
    signer_from_bytes,
)
from agent.protocol.keys import Alg
from tests.protocol.keyring import Keyring

ALGS: list[Alg] = ["ed25519", "hmac-sha256"]


def _keyring(alg: Alg) -> Keyring:
    return Keyring(agent=generate_signer("node-1", alg))


def _result(signing: Signing, task_id: str = "t-1") -> SignOnce:
    return signing.result(
        task_id,
        "stats",
        "completed",
        run=1,
        attempt=1,
        received_at=1_800_000_000.0,
        started_at=1_800_000_000.1,
        finished_at=1_800_000_000.2,
        duration_ms=100.0,
        output=packb({"mean": 2.5, "values": np.arange(4.0)}),
    )


@pytest.mark.parametrize("alg", ALGS)
def test_threads_racing_to_sign_a_result_all_make_the_bytes_a_restart_makes(alg: Alg) -> None:
    keys = _keyring(alg)
    signing = Signing("node-1", Topics("edge"), keys.agent)
    result = _result(signing)
    start = threading.Barrier(8)
    payloads: list[bytes] = []

    def sign() -> None:
        start.wait()
        payloads.append(result.publication().payload)

    threads = [threading.Thread(target=sign) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A restart: the key read again from its file, the stored body signed again.
    reloaded = signer_from_bytes("node-1", keys.agent.private_pem())
    again = Signing("node-1", Topics("edge"), reloaded).sign(result.body)
    assert set(payloads) == {again}
    opened = open_agent_message(again, "edge/results/node-1/t-1", keys.trust())
    assert isinstance(opened, Result)
    assert (opened.id, opened.status, opened.result["mean"]) == ("t-1", "completed", 2.5)
    assert np.array_equal(opened.result["values"], np.arange(4.0))


def test_the_fast_and_the_reference_ed25519_signers_agree() -> None:
    """Bodies up to `sodium.MAX_BODY` are signed with libsodium, longer ones with `cryptography`:
    a restart must not change the bytes either way."""
    signer = Ed25519Signer.generate("node-1")
    body = _result(Signing("node-1", Topics("edge"), signer)).body
    assert signer.sign(body) == signer.private_key.sign(body)
    assert seal(body, signer) == seal(body, signer_from_bytes("node-1", signer.private_pem()))


def test_a_result_is_signed_once_and_then_reused() -> None:
    """The committing thread signs while the writer syncs; the writer's send reuses its bytes."""
    signer = Ed25519Signer.generate("node-1")
    calls: list[bytes] = []

    class Counting:
        kid = "node-1"
        alg: Alg = "ed25519"

        def sign(self, data: bytes) -> bytes:
            calls.append(data)
            return signer.sign(data)

    result = _result(Signing("node-1", Topics("edge"), Counting()))
    first = result.publication()
    assert result.publication() == first
    assert calls == [result.body]


@pytest.mark.parametrize("alg", ALGS)
def test_the_largest_result_that_fits_is_made_and_one_byte_more_is_result_too_large(alg: Alg) -> None:
    """`max_body` is exact: the envelope of a body of that length is at most `max_payload` bytes."""
    signing = Signing("node-1", Topics("edge"), _keyring(alg).agent, max_payload=4096)

    def result(output: bytes) -> SignOnce:
        return signing.result("t", "stats", "completed", run=1, attempt=1, received_at=1.0, output=output)

    def output(size: int) -> bytes:
        return packb(b"x" * (size - 3))  # a bin16 (256 bytes or more): 3 bytes of header

    room = signing.max_body - len(result(b"\xc0").body) + 1  # bytes an output may take
    largest = result(output(room))
    assert len(largest.body) == signing.max_body and len(largest.publication().payload) <= 4096
    with pytest.raises(ResultTooLarge) as raised:
        result(output(room + 1))
    assert raised.value.code == "result_too_large" and raised.value.limit == 4096
    assert raised.value.size == 4097  # the body's bytes plus the envelope's, at most


def test_an_answer_without_output_leaves_out_a_trace_too_long_to_fit() -> None:
    signing = Signing("node-1", Topics("edge"), _keyring("ed25519").agent, max_payload=4096)
    error = {"code": "invalid_params", "message": "signal: is required"}
    short = signing.result(
        "t", "stats", "rejected", run=1, attempt=0, received_at=1.0, error=error, trace="t" * 55
    )
    long = signing.result(
        "t", "stats", "rejected", run=1, attempt=0, received_at=1.0, error=error, trace="t" * 5000
    )
    assert b"t" * 55 in short.body
    assert len(long.publication().payload) <= 4096 and b"ttttt" not in long.body


def test_a_stored_body_too_large_becomes_its_result_too_large_answer_the_same_bytes_each_time() -> None:
    keys = _keyring("ed25519")
    big = Signing("node-1", Topics("edge"), keys.agent, max_payload=1 << 24)
    stored = big.result(
        "t-9",
        "matrix_multiply",
        "completed",
        run=3,
        attempt=2,
        received_at=5.0,
        output=packb(np.ones((400, 400))),
    ).body
    signing = Signing("node-1", Topics("edge"), keys.agent)
    first, again = signing.too_large(stored), signing.too_large(stored)
    assert first.publication().payload == again.publication().payload
    trust = keys.trust()
    result = open_agent_message(first.publication().payload, "edge/results/node-1/t-9", trust)
    assert isinstance(result, Result)
    assert (result.id, result.kernel, result.status, result.run, result.attempt) == (
        "t-9",
        "matrix_multiply",
        "abandoned",
        3,
        2,
    )
    assert result.error is not None and result.error["code"] == "result_too_large"
