"""Bundles' trust stores, rotation and revocation, checked with real signed tasks through accept_task."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.common import tomlio
from agent.protocol import (
    AuthenticationError,
    MemoryReplayCache,
    TrustStore,
    accept_task,
    load_signer,
    make_task,
)
from agent.protocol.keys import Ed25519Signer, HmacSigner
from provisioning import operations as ops
from provisioning.errors import RevokedIdentity
from provisioning.fleet import Fleet


def add(fleet: Fleet, kind: str, *names: str, **options: object) -> None:
    ops.add_identities(fleet, ops.AddRequest(kind=kind, names=names, **options), time.time())  # type: ignore[arg-type]


def bundle(fleet: Fleet, name: str, tmp: Path) -> Path:
    out = tmp / f"bundle-{name}-{time.monotonic_ns()}"
    ops.make_bundle(fleet, name, out=out, archive=None, force=False)
    return out


def kids(trust: TrustStore) -> set[str]:
    entries = trust.keys()
    return {k.kid for k in entries}


@pytest.fixture
def populated(fleet: Fleet) -> Fleet:
    add(fleet, "agent", "node-1")
    add(fleet, "agent", "node-2", pools=["cams"])
    add(fleet, "device", "dev-any")
    add(fleet, "device", "dev-n1", targets=["node-1"])
    add(fleet, "device", "dev-all", targets=["all"])
    add(fleet, "device", "dev-cams", alg="hmac-sha256", targets=["pool:cams"])
    add(fleet, "device", "dev-n9", targets=["node-9", "pool:gpu"])
    add(fleet, "operator", "alice")
    add(fleet, "dashboard", "grafana")
    add(fleet, "gateway", "gw")
    return fleet


def test_agent_trusts_only_who_may_task_it(populated: Fleet, tmp_path: Path) -> None:
    one = TrustStore.load(bundle(populated, "node-1", tmp_path) / "trust.toml")
    assert kids(one) == {"dev-any", "dev-n1", "dev-all", "alice", "gw"}
    two_path = bundle(populated, "node-2", tmp_path) / "trust.toml"
    two = TrustStore.load(two_path)
    assert kids(two) == {"dev-any", "dev-all", "dev-cams", "alice", "gw"}
    assert two_path.stat().st_mode & 0o777 == 0o600, "it holds an HMAC secret"
    roles = {k.kid: k.roles for k in TrustStore.keys(two)}
    assert roles["alice"] == roles["gw"] == frozenset({"task", "control"})
    assert roles["dev-cams"] == frozenset({"task"})


def test_operators_dashboards_and_gateways_trust_every_agent(populated: Fleet, tmp_path: Path) -> None:
    for name in ("alice", "grafana", "gw"):
        path = bundle(populated, name, tmp_path) / "trust.toml"
        trust = TrustStore.load(path)
        assert kids(trust) == {"node-1", "node-2"}
        assert all(k.roles == frozenset({"agent"}) for k in TrustStore.keys(trust))
        assert path.stat().st_mode & 0o777 == 0o644


def test_a_device_trusts_the_agents_it_may_task_to_verify_its_replies(
    populated: Fleet, tmp_path: Path
) -> None:
    """PROTOCOL 1 and 4: a device verifies its replies with the keys of its targets' agents only."""
    expected = {
        "dev-any": {"node-1", "node-2"},
        "dev-all": {"node-1", "node-2"},
        "dev-n1": {"node-1"},
        "dev-cams": {"node-2"},
        "dev-n9": set(),
    }
    for name, agents in expected.items():
        out = bundle(populated, name, tmp_path)
        trust = TrustStore.load(out / "trust.toml")
        assert kids(trust) == agents, name
        assert all(k.roles == frozenset({"agent"}) for k in TrustStore.keys(trust))
        env = (out / "device.env").read_text()
        assert sorted(
            line.split('"')[1].split()[0] for line in env.splitlines() if line.startswith("EDGE_AGENT_KEY_")
        ) == sorted(agents)
    out = bundle(populated, "dev-cams", tmp_path)
    assert sorted(p.name for p in out.iterdir()) == [
        "broker.password",
        "ca.crt",
        "config.py",
        "device.env",
        "device.toml",
        "signing.key",
        "tls.crt",
        "tls.key",
        "trust.toml",
    ]
    assert (out / "config.py").stat().st_mode & 0o777 == 0o600, "it holds the HMAC secret"
    signer = load_signer(out / "signing.key", "dev-cams")
    assert isinstance(signer, HmacSigner)
    namespace: dict[str, object] = {}
    exec((out / "config.py").read_text(), namespace)  # what MicroPython imports
    assert namespace["SECRET"] == signer.secret and namespace["TARGET"] == "pool:cams"
    assert namespace["USE_TLS"] is True and namespace["EVERY_S"] is None  # firmware_examples/micropython


def signed(signer: Ed25519Signer | HmacSigner, target: str, now: float) -> tuple[str, bytes]:
    topic, payload, _ = make_task(signer, target, "stats", {"signal": [1.0, 2.0]}, now=now, ttl_s=60)
    return topic, payload


def accept(payload_topic: tuple[str, bytes], trust: TrustStore, now: float) -> str:
    """'accepted', or the error code of PROTOCOL 5."""
    topic, payload = payload_topic
    try:
        accept_task(payload, topic, now, trust, MemoryReplayCache())
    except AuthenticationError as exc:
        return exc.code
    return "accepted"


@pytest.mark.parametrize("alg", ["ed25519", "hmac-sha256"])
def test_rotation_keeps_the_old_key_until_the_given_time(fleet: Fleet, tmp_path: Path, alg: str) -> None:
    add(fleet, "agent", "node-1")
    add(fleet, "device", "dev", alg=alg)
    old = load_signer(bundle(fleet, "dev", tmp_path) / "signing.key", "dev")
    now = time.time()
    until = now + 3600
    ops.rotate(fleet, "dev", until, now)
    new = load_signer(bundle(fleet, "dev", tmp_path) / "signing.key", "dev")
    assert new.sign(b"x") != old.sign(b"x")
    trust = TrustStore.load(bundle(fleet, "node-1", tmp_path) / "trust.toml")
    assert len(trust.entries("dev")) == 2

    during = now + 10
    assert accept(signed(old, "node-1", during), trust, during) == "accepted"
    assert accept(signed(new, "node-1", during), trust, during) == "accepted"
    after = until + 10
    assert accept(signed(old, "node-1", after), trust, after) == "revoked_key"
    assert accept(signed(new, "node-1", after), trust, after) == "accepted"
    # an agent whose clock is 50 s behind the rotation's (within the 60 s of skew) takes the new key
    behind = now - 50
    assert accept(signed(new, "node-1", behind), trust, behind) == "accepted"


def test_rotation_overlap_zero_ends_the_old_key_now(fleet: Fleet, tmp_path: Path) -> None:
    add(fleet, "agent", "node-1")
    add(fleet, "device", "dev")
    old = load_signer(bundle(fleet, "dev", tmp_path) / "signing.key", "dev")
    now = time.time()
    ops.rotate(fleet, "dev", now, now)
    trust = TrustStore.load(bundle(fleet, "node-1", tmp_path) / "trust.toml")
    assert accept(signed(old, "node-1", now + 1), trust, now + 1) == "revoked_key"


def test_second_rotation_caps_every_older_key(fleet: Fleet, tmp_path: Path) -> None:
    add(fleet, "device", "dev")
    now = time.time()
    ops.rotate(fleet, "dev", now + 7200, now)
    rotated = ops.rotate(fleet, "dev", now + 60, now + 1)
    assert [k.not_after for k in rotated.keys] == [now + 60, now + 60, None]
    assert [k.gen for k in rotated.keys] == [1, 2, 3]


def test_revoke_rejects_every_key(fleet: Fleet, tmp_path: Path) -> None:
    add(fleet, "agent", "node-1")
    add(fleet, "device", "dev")
    first = load_signer(bundle(fleet, "dev", tmp_path) / "signing.key", "dev")
    now = time.time()
    ops.rotate(fleet, "dev", now + 3600, now)
    second = load_signer(bundle(fleet, "dev", tmp_path) / "signing.key", "dev")
    _, changed = ops.revoke(fleet, "dev", now)
    assert changed
    trust = TrustStore.load(bundle(fleet, "node-1", tmp_path) / "trust.toml")
    assert [k.revoked for k in trust.entries("dev")] == [True, True]
    for signer in (first, second):
        assert accept(signed(signer, "node-1", now + 1), trust, now + 1) == "revoked_key"
    assert ops.revoke(fleet, "dev", now)[1] is False
    with pytest.raises(RevokedIdentity):
        ops.make_bundle(fleet, "dev", out=tmp_path / "x", archive=None, force=False)
    with pytest.raises(RevokedIdentity):
        ops.rotate(fleet, "dev", now, now)


def test_rotate_drops_retired_ed25519_private_keys_but_keeps_hmac_secrets(fleet: Fleet) -> None:
    add(fleet, "device", "ed", "mac")
    ops.add_identities(
        fleet, ops.AddRequest(kind="device", names=["mac"], alg="hmac-sha256", force=True), time.time()
    )
    now = time.time()
    ops.rotate(fleet, "ed", now + 60, now)
    ops.rotate(fleet, "mac", now + 60, now)
    assert sorted(p.name for p in fleet.identity_dir("ed").iterdir()) == [
        "broker-2.password",
        "signing-2.key",
        "tls-2.crt",
        "tls-2.key",
    ]
    assert sorted(p.name for p in fleet.identity_dir("mac").iterdir()) == [
        "broker-3.password",
        "signing-2.key",
        "signing-3.key",
        "tls-3.crt",
        "tls-3.key",
    ]


def test_a_gateway_bundle_is_an_issuers(populated: Fleet, tmp_path: Path) -> None:
    """edge-gateway's bundle: gateway.toml naming its key and trust store, an Ed25519 key that signs
    tasks and control commands (agents trust it like an operator's)."""
    out = bundle(populated, "gw", tmp_path)
    assert sorted(p.name for p in out.iterdir()) == [
        "api-clients.json",
        "broker.password",
        "ca.crt",
        "gateway.toml",
        "signing.key",
        "tls.crt",
        "tls.key",
        "trust.toml",
    ]
    doc = tomlio.loads((out / "gateway.toml").read_text())
    assert doc["gateway"] == {"name": "gw"}
    assert doc["security"] == {
        "signing_key": "signing.key",
        "kid": "gw",
        "alg": "ed25519",
        "trust_store": "trust.toml",
    }
    signer = load_signer(out / "signing.key", "gw")
    one = TrustStore.load(bundle(populated, "node-1", tmp_path) / "trust.toml")
    now = time.time()
    assert accept(signed(signer, "node-1", now), one, now) == "accepted"
    assert {k.kid: k.roles for k in TrustStore.keys(one)}["gw"] == frozenset({"task", "control"})
