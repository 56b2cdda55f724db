"""The trust store file format and what clients open from agents (PROTOCOL 3 and 7)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest

from agent.protocol import (
    AuthenticationError,
    BodyError,
    Result,
    Topics,
    TrustStore,
    TrustStoreError,
    generate_signer,
    open_agent_message,
    packb,
    seal,
    write_trust_store,
)

from .keyring import NODE, Keyring, key_entry

PUB = base64.b64encode(generate_signer("k").public_raw()).decode()  # type: ignore[union-attr]


def store_text(entry: str) -> str:
    return f"format = 1\n[[keys]]\n{entry}\n"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (f'alg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]', "kid"),
        (f'kid = "a"\nalg = "rsa"\npublic_key = "{PUB}"\nroles = ["task"]', "alg"),
        ('kid = "a"\nalg = "ed25519"\npublic_key = "***"\nroles = ["task"]', "public_key"),
        ('kid = "a"\nalg = "ed25519"\npublic_key = "AAAA"\nroles = ["task"]', "public_key"),
        (f'kid = "a"\nalg = "ed25519"\nsecret = "{PUB}"\nroles = ["task"]', "secret"),
        (f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["admin"]', "roles"),
        (f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]\ncolour = 1', "colour"),
        (
            f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]\nnot_after = "tomorrow"',
            "not_after",
        ),
        (
            f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]\n'
            "not_before = 2026-01-01T00:00:00",
            "not_before",
        ),
        (f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]\nrevoked = "no"', "revoked"),
        ('kid = "a"\nalg = "hmac-sha256"\nsecret = "c2hvcnQ="\nroles = ["task"]', "secret"),
    ],
)
def test_load_errors_name_the_entry_and_the_field(tmp_path: Path, entry: str, field: str) -> None:
    path = tmp_path / "trust.toml"
    path.write_text(store_text(entry))
    with pytest.raises(TrustStoreError) as info:
        TrustStore.load(path)
    assert info.value.entry == 1
    assert info.value.field == field
    assert "key #1" in str(info.value) and field in str(info.value)


def test_not_toml_and_wrong_format_are_named(tmp_path: Path) -> None:
    path = tmp_path / "trust.toml"
    path.write_text("[[keys]\n")
    with pytest.raises(TrustStoreError, match="not valid TOML"):
        TrustStore.load(path)
    path.write_text("format = 2\n")
    with pytest.raises(TrustStoreError, match="format"):
        TrustStore.load(path)


def test_written_stores_load_back_with_the_same_keys_and_hmac_stores_are_private(tmp_path: Path) -> None:
    keys = Keyring()
    store = keys.trust()
    path = tmp_path / "trust.toml"
    write_trust_store(path, store.keys())
    assert path.stat().st_mode & 0o777 == 0o600  # it holds an HMAC secret
    assert set(TrustStore.load(path).keys()) == set(store.keys())
    public = tmp_path / "public.toml"
    ed_keys = [k for k in store.keys() if k.alg == "ed25519"]  # noqa: SIM118 - a method, not a dict
    write_trust_store(public, ed_keys)
    assert public.stat().st_mode & 0o777 == 0o644


def test_reload_picks_up_changes_and_keeps_the_old_keys_on_a_bad_file(tmp_path: Path) -> None:
    a, b = generate_signer("dev-a"), generate_signer("dev-b")
    path = tmp_path / "trust.toml"
    write_trust_store(path, [key_entry(a, {"task"})])
    store = TrustStore.load(path)
    assert "dev-a" in store and "dev-b" not in store
    write_trust_store(path, [key_entry(a, {"task"}), key_entry(b, {"task"})])
    store.reload()
    assert "dev-b" in store
    path.write_text("this is = not [ toml")
    with pytest.raises(TrustStoreError):
        store.reload()
    assert "dev-a" in store and "dev-b" in store


# --- opening what agents publish ---------------------------------------------------------------


def result_body(node: str = NODE, task_id: str = "t1") -> dict[str, object]:
    now = time.time()
    return {
        "id": task_id,
        "node": node,
        "kernel": "stats",
        "status": "completed",
        "run": 1,
        "attempt": 1,
        "result": {"mean": 2.0, "values": np.arange(3.0)},
        "received_at": now,
        "started_at": now,
        "finished_at": now,
        "duration_ms": 0.1,
        "trace": None,
    }


def test_a_result_signed_by_its_agent_opens() -> None:
    keys = Keyring()
    topic = Topics().results(NODE, "t1")
    msg = open_agent_message(seal(result_body(), keys.agent), topic, keys.trust())
    assert isinstance(msg, Result) and msg.ok
    np.testing.assert_array_equal(msg.result["values"], np.arange(3.0))


def test_one_node_cannot_speak_for_another() -> None:
    keys = Keyring()
    other = generate_signer("node-2")
    trust = TrustStore([*keys.trust().keys(), key_entry(other, {"agent"})])
    topic = Topics().results(NODE, "t1")
    with pytest.raises(AuthenticationError) as info:
        open_agent_message(seal(result_body(), other), topic, trust)
    assert info.value.code == "wrong_role"


def test_a_key_without_the_agent_role_cannot_publish_results() -> None:
    keys = Keyring()
    impostor = generate_signer(NODE)
    trust = TrustStore([key_entry(impostor, {"task"})])
    with pytest.raises(AuthenticationError) as info:
        open_agent_message(seal(result_body(), impostor), Topics().results(NODE, "t1"), trust)
    assert info.value.code == "wrong_role"
    assert keys  # the keyring's own agent key is not in this store


def test_a_body_disagreeing_with_its_topic_is_refused() -> None:
    keys = Keyring()
    with pytest.raises(BodyError) as info:
        open_agent_message(
            seal(result_body(task_id="t2"), keys.agent), Topics().results(NODE, "t1"), keys.trust()
        )
    assert info.value.field == "id"
    with pytest.raises(BodyError) as info:
        open_agent_message(
            seal(result_body(node="node-2"), keys.agent), Topics().results(NODE, "t1"), keys.trust()
        )
    assert info.value.field == "node"


def test_a_forged_signature_is_refused() -> None:
    keys = Keyring()
    payload = bytearray(seal(packb(result_body()), keys.agent))
    payload[-1] ^= 1
    with pytest.raises(AuthenticationError) as info:
        open_agent_message(bytes(payload), Topics().results(NODE, "t1"), keys.trust())
    assert info.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "abandoned"}, "error"),
        ({"run": "1"}, "run"),
        ({"id": None}, "id"),
    ],
)
def test_result_bodies_are_validated(change: dict[str, object], field: str) -> None:
    body = {**result_body(), **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(BodyError) as info:
        Result.from_body(body)
    assert info.value.field == field
