"""dynamic-security.json, the file of Mosquitto's dynamic security plugin, checked without a broker.

The password fields are checked against PBKDF2-HMAC-SHA512 computed here (as dynsec 2.0.11's
`dynsec_auth__pw_hash` does), the roles against a table written by hand from PROTOCOL 1; a real
Mosquitto loads the file in test_mosquitto.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from provisioning import dynsec, mosquitto
from provisioning import operations as ops
from provisioning.acl import Grant
from provisioning.brokerfiles import BrokerOptions
from provisioning.errors import FleetCorrupt
from provisioning.fleet import Fleet
from provisioning.passwords import hash_password

SEND, RECEIVE = "publishClientSend", "publishClientReceive"
LITERAL, PATTERN = "subscribeLiteral", "subscribePattern"
NO_OTHER_SHARE = (PATTERN, "$share/#", False)

# (acltype, topic, allow) of each role, for prefix "edge".
ROLES: dict[str, set[tuple[str, str, bool]]] = {
    "node-1": {
        (LITERAL, "edge/tasks/node-1", True),
        (RECEIVE, "edge/tasks/node-1", True),
        (LITERAL, "edge/tasks/all", True),
        (RECEIVE, "edge/tasks/all", True),
        (LITERAL, "edge/control/node-1", True),
        (RECEIVE, "edge/control/node-1", True),
        (LITERAL, "edge/tasks/pool/cams", True),
        (RECEIVE, "edge/tasks/pool/cams", True),
        (LITERAL, "$share/cams/edge/tasks/pool/cams", True),  # exactly the pool's group, no receive
        (SEND, "edge/results/node-1/#", True),
        (SEND, "edge/events/node-1/#", True),
        (SEND, "edge/heartbeat/node-1", True),
        (SEND, "edge/presence/node-1", True),
        (SEND, "edge/rejects/node-1", True),
        (SEND, "edge/replies/#", True),
        NO_OTHER_SHARE,
    },
    "dev-t": {
        (PATTERN, "edge/replies/dev-t/#", True),
        (RECEIVE, "edge/replies/dev-t/#", True),
        (SEND, "edge/tasks/node-1", True),
        (SEND, "edge/tasks/pool/cams", True),
        NO_OTHER_SHARE,
    },
    "op": {
        (PATTERN, "edge/results/#", True),
        (RECEIVE, "edge/results/#", True),
        (PATTERN, "edge/rejects/#", True),
        (RECEIVE, "edge/rejects/#", True),
        (PATTERN, "edge/replies/op/#", True),
        (RECEIVE, "edge/replies/op/#", True),
        (SEND, "edge/tasks/#", True),
        (SEND, "edge/control/#", True),
        NO_OTHER_SHARE,
    },
    "dash": {
        *((kind, f"edge/{what}/#", True) for kind in (PATTERN, RECEIVE) for what in ("results", "events")),
        *(
            (kind, f"edge/{what}/#", True)
            for kind in (PATTERN, RECEIVE)
            for what in ("heartbeat", "presence")
        ),
        (PATTERN, "edge/rejects/#", True),
        (RECEIVE, "edge/rejects/#", True),
        NO_OTHER_SHARE,
    },
}


def _add(fleet: Fleet, kind: str, name: str, **extra: Any) -> None:
    ops.add_identities(fleet, ops.AddRequest(kind=kind, names=[name], **extra), time.time())  # type: ignore[arg-type]


@pytest.fixture
def written(fleet: Fleet, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """(dynamic-security.json, mosquitto.conf) of a fleet: an identity of each kind, a revoked one."""
    _add(fleet, "agent", "node-1", pools=["cams"])
    _add(fleet, "device", "dev-t", targets=["node-1", "pool:cams"])
    _add(fleet, "operator", "op")
    _add(fleet, "dashboard", "dash")
    _add(fleet, "device", "gone")
    ops.revoke(fleet, "gone", time.time())
    options = BrokerOptions(out=tmp_path / "out", tls_port=8883, tcp_port=1883)
    ops.broker_files(fleet, "mosquitto", options)
    out = tmp_path / "out"
    return json.loads((out / dynsec.CONFIG_FILE).read_text()), (out / "mosquitto.conf").read_text()


def test_each_login_is_its_password_hashed_as_dynsec_does(
    fleet: Fleet, written: tuple[dict[str, Any], str]
) -> None:
    doc, _ = written
    assert sorted(c["username"] for c in doc["clients"]) == ["dash", "dev-t", "node-1", "op"], "not `gone`"
    for client in doc["clients"]:
        [password_file] = (fleet.root / "identities" / client["username"]).glob("broker-*.password")
        salt = base64.b64decode(client["salt"], validate=True)
        expected = hashlib.pbkdf2_hmac("sha512", password_file.read_text().strip().encode(), salt, 101, 64)
        assert len(salt) == 12 and client["iterations"] == 101
        assert base64.b64decode(client["password"], validate=True) == expected
        assert client["roles"] == [{"rolename": client["username"], "priority": 0}]


def test_each_role_is_its_grants(written: tuple[dict[str, Any], str]) -> None:
    doc, _ = written
    roles = {r["rolename"]: {(a["acltype"], a["topic"], a["allow"]) for a in r["acls"]} for r in doc["roles"]}
    assert roles == ROLES


def test_a_share_grant_is_checked_before_the_denial_of_other_joins(
    written: tuple[dict[str, Any], str],
) -> None:
    """dynsec checks a role's patterns by priority, highest first: a `$share/G/...` pattern grant,
    then the `$share/#` denial, then the other reads (which, like `#`, might cover a `$share` filter)."""
    acls = dynsec.role_acls([Grant("read", "#"), Grant("read", "$share/g/a/#"), Grant("write", "a/#")])
    priority = {(a["acltype"], a["topic"]): a["priority"] for a in acls}
    assert priority[(PATTERN, "$share/g/a/#")] > priority[(PATTERN, "$share/#")] > priority[(PATTERN, "#")]
    assert dynsec.role_acls([]) == [], "no grants: no role entries at all (the defaults deny)"


def test_defaults_deny_everything_but_unsubscribing(written: tuple[dict[str, Any], str]) -> None:
    doc, _ = written
    assert doc["defaultACLAccess"] == {SEND: False, RECEIVE: False, "subscribe": False, "unsubscribe": True}
    assert doc["groups"] == []


def test_the_configuration_loads_the_plugin_and_no_password_or_acl_file(
    written: tuple[dict[str, Any], str],
) -> None:
    _, conf = written
    lines = conf.splitlines()
    assert f"plugin {dynsec.find_plugin() or dynsec.DEBIAN_PLUGIN}" in lines
    assert any(
        line.startswith("plugin_opt_config_file /") and line.endswith("/dynamic-security.json")
        for line in lines
    )
    assert not [line for line in lines if line.startswith(("password_file", "acl_file"))]


def test_a_hash_dynsec_would_skip_is_refused() -> None:
    """dynsec 2.0.11 silently skips a client whose salt is not 12 bytes or hash not 64: refuse to write it."""
    bad = hash_password("pw", salt=b"s" * 16)
    with pytest.raises(FleetCorrupt, match="16-byte salt"):
        dynsec.document([dynsec.Login("u", bad, ())])


def test_the_plugin_path_given_found_or_debians_with_a_note(tmp_path: Path) -> None:
    options = BrokerOptions(out=tmp_path, tls_port=8883, tcp_port=1883)
    given = BrokerOptions(out=tmp_path, tls_port=8883, tcp_port=1883, plugin_path=Path("/opt/m/dynsec.so"))
    assert mosquitto.plugin_path(given, find=lambda: None) == (Path("/opt/m/dynsec.so"), None)
    assert mosquitto.plugin_path(options, find=lambda: Path("/x/p.so")) == (Path("/x/p.so"), None)
    path, note = mosquitto.plugin_path(options, find=lambda: None)
    assert path == dynsec.DEBIAN_PLUGIN and note is not None and "--plugin-path" in note
