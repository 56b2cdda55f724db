"""What `list` and `show` print: public facts only, as a table, key-value lines or JSON."""

from __future__ import annotations

import json
from typing import Any

from agent.common.timespec import format_time
from agent.protocol.topics import Topics

from .acl import grants_for
from .apiclients import ApiClient
from .records import Identity


def _scope(identity: Identity) -> str:
    if identity.kind == "agent":
        return "pools: " + ",".join(identity.pools) if identity.pools else ""
    if identity.kind == "device":
        return "targets: " + (",".join(identity.targets) if identity.targets is not None else "any")
    return ""


def table(identities: list[Identity]) -> str:
    header = ("NAME", "KIND", "STATUS", "ALG", "GEN", "CREATED", "SCOPE")
    rows = [
        (
            i.name,
            i.kind,
            "revoked" if i.revoked else "active",
            i.current_key.alg,
            str(i.gen),
            format_time(i.created_at),
            _scope(i),
        )
        for i in identities
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines) + "\n"


def details(identity: Identity, topics: Topics) -> dict[str, Any]:
    """Everything `show` tells: keys by fingerprint, the certificate, the broker grants."""
    data = identity.summary()
    data["keys"] = [
        {
            "generation": k.gen,
            "alg": k.alg,
            "roles": list(k.roles),
            "fingerprint": k.fingerprint,
            "not_before": k.not_before,
            "not_after": k.not_after,
            "current": k.gen == identity.gen,
        }
        for k in identity.keys
    ]
    data["certificate"] = {
        "serial": identity.cert.serial,
        "fingerprint": identity.cert.fingerprint,
        "alg": identity.cert.alg,
        "not_before": identity.cert.not_before,
        "not_after": identity.cert.not_after,
    }
    data["broker"] = {
        "username": identity.name,
        "may_log_in": not identity.revoked,
        "grants": [{"access": g.access, "topic": g.topic} for g in grants_for(identity, topics)],
    }
    return data


def _key_line(key: dict[str, Any]) -> str:
    window = f"valid {format_time(key['not_before'])} .. {format_time(key['not_after'])}"
    mark = " (current)" if key["current"] else ""
    roles = ",".join(key["roles"]) or "-"
    return f"  gen {key['generation']}: {key['alg']} {key['fingerprint']} roles={roles}, {window}{mark}"


def details_text(data: dict[str, Any]) -> str:
    cert, revoked = data["certificate"], data["revoked_at"]
    lines = [
        f"name:        {data['name']}",
        f"kind:        {data['kind']}",
        f"status:      {data['status']}" + (f" since {format_time(revoked)}" if revoked else ""),
        f"created:     {format_time(data['created_at'])}",
        f"updated:     {format_time(data['updated_at'])}",
    ]
    if data["kind"] == "agent":
        lines.append(f"pools:       {', '.join(data['pools']) or '-'}")
    if data["kind"] == "device":
        targets = data["targets"]
        lines.append(f"targets:     {', '.join(targets) if targets is not None else 'any agent'}")
    lines.append("signing keys:")
    lines += [_key_line(k) for k in data["keys"]]
    lines += [
        f"certificate: serial {cert['serial']}, {cert['alg']}, {cert['fingerprint']}",
        f"             valid {format_time(cert['not_before'])} .. {format_time(cert['not_after'])}",
        f"broker:      user {data['broker']['username']}"
        + ("" if data["broker"]["may_log_in"] else " (removed from the password file)"),
    ]
    lines += [f"  {g['access']:5} {g['topic']}" for g in data["broker"]["grants"]]
    return "\n".join(lines) + "\n"


def api_client_table(clients: list[ApiClient]) -> str:
    """The API clients of edge-gateway, below the identities."""
    header = ("API CLIENT", "ROLES", "STATUS", "CREATED")
    rows = [
        (c.name, ",".join(c.roles), "revoked" if c.revoked else "active", format_time(c.created_at))
        for c in clients
    ]
    widths = [max(len(r[col]) for r in [header, *rows]) for col in range(len(header))]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in [header, *rows]
    )


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
