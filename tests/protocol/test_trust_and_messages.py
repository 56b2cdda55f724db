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
    load_signer,
    open_agent_message,
    packb,
    seal,
    signer_from_bytes,
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


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            store_text(
                f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]\n'
                "not_before = 2027-01-01T00:00:00Z\nnot_after = 2026-01-01T00:00:00Z"
            ),
            "not_after",
        ),
        (store_text(f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = []'), "roles"),
        (store_text(f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = "task"'), "roles"),
        (store_text(f'kid = ""\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]'), "kid"),
        ("format = true\n", "format"),
        ("formt = 1\n", "formt"),
        ("keys = 3\n", "keys"),
    ],
)
def test_more_load_errors_are_named(text: str, field: str) -> None:
    with pytest.raises(TrustStoreError) as info:
        TrustStore.loads(text, source="t.toml")
    assert info.value.field == field
    assert str(info.value).startswith("t.toml")


def test_the_second_entry_is_named_as_such(tmp_path: Path) -> None:
    good = f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]'
    path = tmp_path / "trust.toml"
    path.write_text(
        store_text(good) + '[[keys]]\nkid = "b"\nalg = "ed25519"\npublic_key = "AA=="\nroles = ["task"]\n'
    )
    with pytest.raises(TrustStoreError) as info:
        TrustStore.load(path)
    assert (info.value.entry, info.value.field) == (2, "public_key")
    assert str(path) in str(info.value)


def test_dates_as_datetimes_or_epoch_seconds_and_rotation_entries_load() -> None:
    text = store_text(
        f'kid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]\nnot_after = 1800000000'
    )
    text += f'[[keys]]\nkid = "a"\nalg = "ed25519"\npublic_key = "{PUB}"\nroles = ["task"]\n'
    text += "not_before = 2027-01-15T00:00:00Z\n"
    store = TrustStore.loads(text)
    assert len(store) == 2 and len(store.entries("a")) == 2
    assert store.entries("a")[0].not_before is not None  # newest first: the successor is tried first
    assert {k.not_after for k in store.entries("a")} == {1_800_000_000.0, None}


def test_a_missing_file_is_an_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(TrustStoreError, match=r"missing\.toml"):
        TrustStore.load(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "content",
    [
        b"hmac-sha256:***",
        b"hmac-sha256:c2hvcnQ=",
        b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
        b"not a key",
    ],
)
def test_unreadable_key_files_are_value_errors_naming_the_kid(content: bytes) -> None:
    with pytest.raises(ValueError, match="dev-1"):
        signer_from_bytes("dev-1", content)


def test_foreign_and_encrypted_private_keys_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    for pem in (ec_pem, encrypted):
        with pytest.raises(ValueError, match="dev-1"):
            signer_from_bytes("dev-1", pem)


@pytest.mark.parametrize("alg", ["ed25519", "hmac-sha256"])
def test_key_files_round_trip_and_sign_the_same(tmp_path: Path, alg: str) -> None:
    signer = generate_signer("dev-1", alg)  # type: ignore[arg-type]
    path = tmp_path / "dev-1.key"
    path.write_bytes(signer.private_pem())
    loaded = load_signer(path, "dev-1")
    assert loaded.sign(b"body") == signer.sign(b"body")
    assert loaded.verifier().verify(signer.sign(b"body"), b"body")
    assert not loaded.verifier().verify(signer.sign(b"body"), b"bodY")
