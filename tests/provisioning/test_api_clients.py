"""API clients of edge-gateway: `add api-client`, its secret shown once and stored hashed, roles,
names shared with identities, revocation, and the `api-clients.json` of gateway bundles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.common.passwords import PasswordHash
from provisioning.fleet import Fleet

from .conftest import run_main

SECRET = re.compile(r"secret \(shown once, stored only hashed\): (\S+)")


def main(capsys: pytest.CaptureFixture[str], fleet: Fleet, *args: str | Path) -> tuple[int, str, str]:
    run = run_main("--fleet", fleet.root, *args, capsys=capsys)
    return run.code, run.out, run.err


def gateway_clients(
    capsys: pytest.CaptureFixture[str], fleet: Fleet, tmp: Path
) -> dict[str, dict[str, object]]:
    out = tmp / f"gw-{len(list(tmp.iterdir()))}"
    assert main(capsys, fleet, "bundle", "gw-1", "--out", out)[0] == 0
    assert (out / "api-clients.json").stat().st_mode & 0o777 == 0o600
    doc = json.loads((out / "api-clients.json").read_text())
    assert doc["format"] == 1
    return {c["name"]: c for c in doc["clients"]}


def test_the_secret_is_shown_once_and_only_its_hash_reaches_the_gateway(
    capsys: pytest.CaptureFixture[str], fleet: Fleet, tmp_path: Path
) -> None:
    assert main(capsys, fleet, "add", "gateway", "gw-1")[0] == 0
    code, out, _ = main(capsys, fleet, "add", "api-client", "webapp", "--roles", "submit,read")
    assert code == 0 and "added api-client webapp (roles read,submit)" in out
    [secret] = SECRET.findall(out)
    assert len(secret) >= 43  # 32 random bytes
    registry = (fleet.root / "registry.json").read_text()
    assert secret not in registry
    clients = gateway_clients(capsys, fleet, tmp_path)
    assert clients["webapp"]["roles"] == ["read", "submit"] and clients["webapp"]["revoked"] is False
    stored = PasswordHash.parse(str(clients["webapp"]["secret_hash"]))
    assert stored.verify(secret) and not stored.verify(secret + "x")


def test_secret_file_force_and_revoke(
    capsys: pytest.CaptureFixture[str], fleet: Fleet, tmp_path: Path
) -> None:
    assert main(capsys, fleet, "add", "gateway", "gw-1")[0] == 0
    secret_file = tmp_path / "ops.secret"
    code, out, _ = main(
        capsys, fleet, "add", "api-client", "ops", "--roles", "admin", "--secret-file", secret_file
    )
    assert code == 0 and "shown once" not in out
    first = secret_file.read_text().strip()
    assert first not in out and secret_file.stat().st_mode & 0o777 == 0o600
    code, _, err = main(capsys, fleet, "add", "api-client", "ops", "--roles", "admin")
    assert code == 2 and "already exists; use --force" in err
    code, out, _ = main(capsys, fleet, "add", "api-client", "ops", "--roles", "read", "--force")
    [second] = SECRET.findall(out)
    clients = gateway_clients(capsys, fleet, tmp_path)
    stored = PasswordHash.parse(str(clients["ops"]["secret_hash"]))
    assert stored.verify(second) and not stored.verify(first), "--force gives a new secret"
    assert clients["ops"]["roles"] == ["read"]
    code, out, _ = main(capsys, fleet, "revoke", "ops")
    assert code == 0 and "revoked API client ops" in out
    assert gateway_clients(capsys, fleet, tmp_path)["ops"]["revoked"] is True
    assert "already revoked" in main(capsys, fleet, "revoke", "ops")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["add", "api-client", "web", "--roles", "read,root"],
            "unknown API role(s) root; roles are read, submit, admin",
        ),
        (["add", "api-client", "web app", "--roles", "read"], "must match"),
        (
            ["add", "api-client", "node-1", "--roles", "read"],
            "agent 'node-1' exists: an API client needs a name",
        ),
        (["add", "operator", "webapp"], "'webapp' is an API client: an identity needs a name of its own"),
        (["revoke", "nobody"], "no identity called 'nobody' in this fleet, nor an API client"),
    ],
)
def test_bad_input_is_refused_by_name_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], fleet: Fleet, args: list[str], message: str
) -> None:
    assert main(capsys, fleet, "add", "agent", "node-1")[0] == 0
    assert main(capsys, fleet, "add", "api-client", "webapp", "--roles", "read")[0] == 0
    before = (fleet.root / "registry.json").read_bytes()
    code, _, err = main(capsys, fleet, *args)
    assert code == 2 and message in err, err
    assert (fleet.root / "registry.json").read_bytes() == before


def test_list_shows_api_clients_beside_identities(capsys: pytest.CaptureFixture[str], fleet: Fleet) -> None:
    assert main(capsys, fleet, "add", "agent", "node-1")[0] == 0
    assert main(capsys, fleet, "add", "api-client", "webapp", "--roles", "read")[0] == 0
    code, out, _ = main(capsys, fleet, "list", "--json")
    assert code == 0
    kinds = {doc["name"]: doc["kind"] for doc in json.loads(out)}
    assert kinds == {"node-1": "agent", "webapp": "api-client"}
    code, out, _ = main(capsys, fleet, "list", "--kind", "api-client")
    assert code == 0 and "webapp" in out and "node-1" not in out and "API CLIENT" in out
