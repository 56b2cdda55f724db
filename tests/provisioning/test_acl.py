"""Grants per role, against a table written by hand from PROTOCOL 1 (not from the code)."""

from __future__ import annotations

import time

import pytest

from agent.protocol.topics import Topics
from broker.topicfilter import matches
from provisioning.acl import grants_for, subtree
from provisioning.records import CertRecord, Identity, KeyRecord

# PROTOCOL 1, for prefix "edge": (reads, writes) per identity below.
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "node-1": (  # agent, no pool
        {"edge/tasks/node-1", "edge/tasks/all", "edge/control/node-1"},
        {
            "edge/results/node-1/#",
            "edge/events/node-1/#",
            "edge/heartbeat/node-1",
            "edge/presence/node-1",
            "edge/rejects/node-1",
            "edge/replies/#",
        },
    ),
    "node-2": (  # agent of pools cams and gpu
        {
            "edge/tasks/node-2",
            "edge/tasks/all",
            "edge/control/node-2",
            "edge/tasks/pool/cams",
            "$share/cams/edge/tasks/pool/cams",
            "edge/tasks/pool/gpu",
            "$share/gpu/edge/tasks/pool/gpu",
        },
        {
            "edge/results/node-2/#",
            "edge/events/node-2/#",
            "edge/heartbeat/node-2",
            "edge/presence/node-2",
            "edge/rejects/node-2",
            "edge/replies/#",
        },
    ),
    "dev-any": ({"edge/replies/dev-any/#"}, {"edge/tasks/#"}),
    "dev-some": (
        {"edge/replies/dev-some/#"},
        {"edge/tasks/node-1", "edge/tasks/all", "edge/tasks/pool/cams"},
    ),
    "alice": (
        {"edge/results/#", "edge/rejects/#", "edge/replies/alice/#"},
        {"edge/tasks/#", "edge/control/#"},
    ),
    # Least privilege: what agents publish, never a tasks or control topic.
    "grafana": (
        {"edge/results/#", "edge/events/#", "edge/heartbeat/#", "edge/presence/#", "edge/rejects/#"},
        set(),
    ),
}


def identity(name: str, kind: str, **extra: object) -> Identity:
    now = time.time()
    key = KeyRecord(
        gen=1, alg="ed25519", roles=(), created_at=now, fingerprint="sha256:0", public_key=b"\0" * 32
    )
    cert = CertRecord(gen=1, serial="1", not_before=now, not_after=now, fingerprint="x", alg="ecdsa-p256")
    return Identity(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        gen=1,
        created_at=now,
        updated_at=now,
        keys=(key,),
        cert=cert,
        password_hash="$7$101$AAAA$AAAA",
        **extra,  # type: ignore[arg-type]
    )


IDENTITIES = {
    "node-1": identity("node-1", "agent"),
    "node-2": identity("node-2", "agent", pools=("cams", "gpu")),
    "dev-any": identity("dev-any", "device"),
    "dev-some": identity("dev-some", "device", targets=("node-1", "all", "pool:cams")),
    "alice": identity("alice", "operator"),
    "grafana": identity("grafana", "dashboard"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_grants_match_protocol_table(name: str) -> None:
    grants = grants_for(IDENTITIES[name], Topics("edge"))
    reads = {g.topic for g in grants if g.access == "read"}
    writes = {g.topic for g in grants if g.access == "write"}
    assert (reads, writes) == EXPECTED[name]
    assert len(grants) == len(reads) + len(writes), "no grant twice"


def test_revoked_identity_has_no_grants() -> None:
    revoked = IDENTITIES["node-1"].with_changes(revoked_at=time.time())
    assert grants_for(revoked, Topics("edge")) == []


def test_other_prefix_moves_every_grant() -> None:
    prefix = "acme/site-3"
    for name, (reads, writes) in EXPECTED.items():
        grants = grants_for(IDENTITIES[name], Topics(prefix))
        expected = {
            t.replace("edge/", prefix + "/", 1).replace("/edge/", f"/{prefix}/") for t in reads | writes
        }
        assert {g.topic for g in grants} == expected, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_only_pool_agents_hold_a_shared_subscription_grant(name: str) -> None:
    """PROTOCOL 1: a `$share/{group}/...` grant is what joining a group takes; only members have one."""
    grants = grants_for(IDENTITIES[name], Topics("edge"))
    shared = {g.topic for g in grants if g.shared}
    pools = IDENTITIES[name].pools
    assert shared == {f"$share/{p}/edge/tasks/pool/{p}" for p in pools}
    assert all(g.access == "read" for g in grants if g.shared)


@pytest.mark.parametrize("name", ["dev-any", "dev-some", "alice", "grafana"])
def test_nobody_but_agents_reads_tasks_or_control(name: str) -> None:
    t = Topics("edge")
    never = [t.tasks("node-1"), t.tasks_all(), t.tasks_pool("cams"), t.control("node-1")]
    reads = [g.topic for g in grants_for(IDENTITIES[name], t) if g.access == "read"]
    assert [(r, topic) for r in reads for topic in never if matches(r, topic)] == []


def test_subtree() -> None:
    assert subtree("edge/results/n1/x") == "edge/results/n1/#"
    assert subtree("edge/results/n1/x", levels=2) == "edge/results/#"
