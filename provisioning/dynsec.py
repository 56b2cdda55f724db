"""Mosquitto's dynamic security plugin: `dynamic-security.json` from acl.py's grants.

Mosquitto 2.0.11's acl_file approves every SUBSCRIBE, `$share/...` joins included; the dynamic
security plugin (`mosquitto_dynamic_security.so`, shipped with Mosquitto) checks a SUBSCRIBE's
whole filter against the client's `subscribeLiteral` / `subscribePattern` ACLs
(`plugins/dynamic-security/acl.c`, `acl_check_subscribe`). So this file is both the password
file and the ACL of provisioning's Mosquitto configuration:

* one client per login: `username`, and its `$7$` hash split into `password` (base64 of the
  64-byte PBKDF2-HMAC-SHA512), `salt` (base64 of 12 bytes) and `iterations` -- the same hash
  `mosquitto_passwd` writes, which dynsec 2.0.11 checks the same way (`auth.c`,
  `dynsec_auth__pw_hash`); a salt or hash of another length makes dynsec skip the client;
* one role per login, named after it: a write grant is a `publishClientSend`; a read grant a
  `publishClientReceive` (checked on every delivery, against the plain topic) and a subscribe ACL
  -- `subscribeLiteral` for a filter without wildcards, `subscribePattern` (the subscription must
  lie inside it) otherwise. A `$share/G/F` grant is only a subscribe ACL, ahead of a
  `subscribePattern $share/#` that denies every other shared subscription: a `$share` join needs a
  grant naming its group even when a read grant such as `#` would cover the filter (PROTOCOL 1);
* `defaultACLAccess` denies publishing, receiving and subscribing outside the grants, and allows
  unsubscribing (an agent leaves its pools when it drains).

No client may use the plugin's `$CONTROL/dynamic-security/v1` API: no role grants a `$CONTROL`
topic, and dynsec never lets a default grant one. So Mosquitto never rewrites this file itself.

Pure functions; no threads.
"""

from __future__ import annotations

import base64
import json
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .acl import Grant
from .errors import FleetCorrupt
from .passwords import HASH_BYTES, SALT_BYTES, split_hash

CONFIG_FILE = "dynamic-security.json"
PLUGIN_FILE = "mosquitto_dynamic_security.so"
_MULTIARCH = str(sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
#: Where Debian's and Ubuntu's `mosquitto` package installs the plugin (for this architecture).
DEBIAN_PLUGIN = Path("/usr/lib") / _MULTIARCH / PLUGIN_FILE
_PLUGIN_DIRS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64", "/opt/homebrew/lib")
_WILDCARDS = ("+", "#")
# Shared-subscription grants are checked first, then the denial of every other `$share` join,
# then the other read grants (dynsec checks a role's patterns by priority, highest first).
_SHARED_PRIORITY, _NO_OTHER_SHARE_PRIORITY, _READ_PRIORITY = 2, 1, 0
DEFAULT_ACL_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


@dataclass(frozen=True)
class Login:
    """One broker login: a username, its `$7$` password hash and its grants."""

    username: str
    password_hash: str
    grants: tuple[Grant, ...]
    kind: str = ""  # shown as the client's `textname` (`mosquitto_ctrl dynsec getClient`)


def _acl(acltype: str, topic: str, priority: int = 0, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": priority, "allow": allow}


def _subscribe_acl(grant: Grant) -> dict[str, Any]:
    literal = not any(w in grant.topic.split("/") for w in _WILDCARDS)
    priority = _SHARED_PRIORITY if grant.shared else _READ_PRIORITY
    return _acl("subscribeLiteral" if literal else "subscribePattern", grant.topic, priority)


def _grant_acls(grant: Grant) -> Iterator[dict[str, Any]]:
    if grant.access == "write":
        yield _acl("publishClientSend", grant.topic)
        return
    yield _subscribe_acl(grant)
    if not grant.shared:  # a delivery is checked against the plain topic, never `$share/...`
        yield _acl("publishClientReceive", grant.topic)


def role_acls(grants: Iterable[Grant]) -> list[dict[str, Any]]:
    """The ACLs of one login's role (module docstring); empty grants give an empty list."""
    acls = [acl for grant in grants for acl in _grant_acls(grant)]
    if acls:
        acls.append(_acl("subscribePattern", "$share/#", _NO_OTHER_SHARE_PRIORITY, allow=False))
    return acls


def _client(login: Login) -> dict[str, Any]:
    iterations, salt, digest = split_hash(login.password_hash)
    if (len(salt), len(digest)) != (SALT_BYTES, HASH_BYTES) or iterations < 1:
        raise FleetCorrupt(
            f"the password hash of {login.username} has a {len(salt)}-byte salt, a {len(digest)}-byte"
            f" hash and {iterations} iterations; Mosquitto's dynamic security plugin needs"
            f" {SALT_BYTES}, {HASH_BYTES} and at least 1"
        )
    client: dict[str, Any] = {"username": login.username}
    if login.kind:
        client["textname"] = login.kind
    return client | {
        "password": _b64(digest),
        "salt": _b64(salt),
        "iterations": iterations,
        "roles": [{"rolename": login.username, "priority": 0}],
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def document(logins: Iterable[Login]) -> dict[str, Any]:
    """The plugin's configuration for `logins` (its `plugin_opt_config_file`)."""
    made = list(logins)
    return {
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
        "clients": [_client(login) for login in made],
        "groups": [],
        "roles": [{"rolename": login.username, "acls": role_acls(login.grants)} for login in made],
    }


def document_text(logins: Iterable[Login]) -> str:
    return json.dumps(document(logins), indent=2) + "\n"


def find_plugin() -> Path | None:
    """The plugin on this machine: Debian's multiarch directory first, then the usual library
    directories (any multiarch one included); None when Mosquitto is not installed here."""
    candidates = [DEBIAN_PLUGIN, *(Path(d) / PLUGIN_FILE for d in _PLUGIN_DIRS)]
    candidates += sorted(Path("/usr/lib").glob(f"*/{PLUGIN_FILE}"))
    return next((path for path in candidates if path.is_file()), None)


def conf_lines(plugin: Path, config_file: Path) -> str:
    """The lines of mosquitto.conf that make the plugin the broker's logins and ACL."""
    return f"plugin {plugin}\nplugin_opt_config_file {config_file}"
