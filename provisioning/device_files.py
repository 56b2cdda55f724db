"""A device bundle's files for firmware without a TOML parser: `device.env` and MicroPython's `config.py`.

`device.env` holds the settings of `device.toml` as `KEY=VALUE` lines named like the `EDGE_*`
variables the tools read, plus what a device needs to verify its replies (PROTOCOL 1 and 4):
every current key of the agents it may task, one `EDGE_AGENT_KEY_<n>` line each. The C firmware
(`firmware_examples/c`) reads it; a shell can too (`set -a; . ./device.env; set +a` in the bundle's
directory, since paths are relative to it). Values never hold a quote, a backslash or a newline:
names, paths and hosts are checked by provisioning, keys are base64.

    EDGE_AGENT_KEY_1="node-1 ed25519 <base64 public key> <not_before> <not_after>"

(times in whole epoch seconds, `-` for none; revoked keys are left out.)

`config.py` is written for an HMAC device only (MicroPython has no Ed25519, PROTOCOL 3): the same
settings as Python constants, the secret included, so the file is private like `signing.key`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable

from agent.protocol.truststore import TrustedKey

from .fleet import Fleet
from .records import Identity

ENV_FILE = "device.env"
MICROPYTHON_FILE = "config.py"


def default_target(identity: Identity) -> str | None:
    """The target a device's firmware sends to unless told otherwise: its first `--targets` entry."""
    return identity.targets[0] if identity.targets else None


def _when(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else str(int(value))


def agent_key_lines(keys: Iterable[TrustedKey]) -> list[str]:
    """One `EDGE_AGENT_KEY_<n>` value per usable Ed25519 agent key (revoked keys left out)."""
    usable = [k for k in keys if k.alg == "ed25519" and not k.revoked and "agent" in k.roles]
    return [
        f"{k.kid} ed25519 {base64.b64encode(k.material).decode()} {_when(k.not_before)} {_when(k.not_after)}"
        for k in usable
    ]


def _value(text: str) -> str:
    return f'"{text}"' if " " in text else text


def device_env(fleet: Fleet, identity: Identity, agent_keys: Iterable[TrustedKey]) -> str:
    """The text of `device.env`."""
    config = fleet.config
    target = default_target(identity)
    settings = {
        "EDGE_DEVICE_NAME": identity.name,
        "EDGE_DEVICE_TARGET": target or "",
        "EDGE_MQTT_HOST": config.broker_host,
        "EDGE_MQTT_PORT": str(config.tls_port),
        "EDGE_MQTT_TLS": "true",
        "EDGE_MQTT_CA_FILE": "ca.crt",
        "EDGE_MQTT_CERT_FILE": "tls.crt",
        "EDGE_MQTT_KEY_FILE": "tls.key",
        "EDGE_MQTT_USERNAME": identity.name,
        "EDGE_MQTT_PASSWORD_FILE": "broker.password",
        "EDGE_MQTT_PREFIX": config.prefix,
        "EDGE_SECURITY_KID": identity.name,
        "EDGE_SECURITY_ALG": identity.current_key.alg,
        "EDGE_SECURITY_SIGNING_KEY": "signing.key",
        "EDGE_SECURITY_TRUST_STORE": "trust.toml",
        "EDGE_SUBMIT_REPLY": "true",  # edge-submit waits on the replies topic: all a device may read
    }
    cluster = {f"EDGE_MQTT_{key.upper()}": v for key, v in config.cluster_mqtt().items()}
    settings.update({key: ",".join(v) if isinstance(v, list) else v for key, v in cluster.items()})
    keys = agent_key_lines(agent_keys)
    settings["EDGE_AGENT_KEYS"] = str(len(keys))
    settings.update({f"EDGE_AGENT_KEY_{i}": line for i, line in enumerate(keys, 1)})
    head = [
        f"# device {identity.name!r} of fleet {config.name!r}, written by `edge-provision bundle`.",
        "# KEY=VALUE lines (device.toml's settings, for firmware without a TOML parser); paths are",
        "# relative to this file. EDGE_AGENT_KEY_<n>: kid, alg, base64 public key, not_before, not_after",
        "# (epoch seconds, - for none) of the agents whose replies this device verifies.",
    ]
    if target is None:
        head.append(
            "# No `--targets`: this device may task every agent; EDGE_DEVICE_TARGET is empty (give one)."
        )
    return "\n".join(head + [f"{k}={_value(v)}" for k, v in settings.items()]) + "\n"


def micropython_config(fleet: Fleet, identity: Identity, secret: bytes, password: str) -> str:
    """The text of `config.py` for an HMAC device running MicroPython (firmware_examples/micropython)."""
    config = fleet.config
    target = default_target(identity)
    lines = [
        f"# device {identity.name!r} of fleet {config.name!r}, written by `edge-provision bundle`.",
        "# Copy it to the board beside main.py. It holds the HMAC secret and the broker password:",
        "# keep it private.",
        f"NAME = {identity.name!r}",
        f"KID = {identity.name!r}",
        "ALG = 'hmac-sha256'",
        f"SECRET = {secret!r}",
        f"PREFIX = {config.prefix!r}",
        f"TARGET = {target!r}  # None: this device may task every agent; give one",
        f"HOST = {config.broker_host!r}",
        f"TLS_PORT = {config.tls_port}  # mutual TLS: ca.crt, tls.crt, tls.key of the bundle",
        f"TCP_PORT = {config.tcp_port}  # plain MQTT: only on a trusted network (the loopback)",
        "USE_TLS = True  # False: plain MQTT on TCP_PORT (main.py --tcp does the same for one run)",
        f"USERNAME = {identity.name!r}",
        f"PASSWORD = {password!r}",
        "CA_FILE = 'ca.crt'",
        "CERT_FILE = 'tls.crt'",
        "KEY_FILE = 'tls.key'",
        "EVERY_S = None  # a number: the sensor loop, one task every EVERY_S seconds",
    ]
    return "\n".join(lines) + "\n"
