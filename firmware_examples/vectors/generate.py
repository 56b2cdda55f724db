"""Cross-language test vectors of the edge task protocol, made by the project's protocol library.

    python firmware_examples/vectors/generate.py           # (re)write the JSON files beside this script
    python firmware_examples/vectors/generate.py --check   # exit 1 if they differ from what the library makes

(`make vectors` runs the first.) Everything is deterministic: fixed test keys (never use them for
anything else), fixed ids, nonces and times; Ed25519 (RFC 8032) and HMAC-SHA256 signatures are
deterministic too. See README.md in this folder for the files and the notation of values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.protocol import Result, TrustStore, open_agent_message, packb, seal
from agent.protocol.keys import Ed25519Signer, HmacSigner
from agent.protocol.truststore import TrustedKey

HERE = Path(__file__).resolve().parent
FORMAT = 1
PREFIX = "edge"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DTYPES = ("<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1")


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"mqtt-edge-agent test vector " + label.encode()).digest()


DEVICE = Ed25519Signer("vec-device", Ed25519PrivateKey.from_private_bytes(_seed("device")))
MCU = HmacSigner("vec-mcu", _seed("mcu"))
AGENT = Ed25519Signer("vec-node", Ed25519PrivateKey.from_private_bytes(_seed("agent")))
OTHER_AGENT = Ed25519Signer("vec-node", Ed25519PrivateKey.from_private_bytes(_seed("not the agent")))


# --- the notation of values in the JSON files ---------------------------------------------------------


def notation(value: Any) -> Any:
    """A MessagePack value as JSON: maps as lists of [key, value] pairs (their order is the order of
    the bytes), bytes as {"bin": hex}, arrays as {"ndarray": {...}}, floats as {"float": x} (always
    float 64 on the wire), ints as JSON numbers."""
    if isinstance(value, dict):
        return {"map": [[k, notation(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [notation(v) for v in value]
    if isinstance(value, bytes):
        return {"bin": value.hex()}
    if isinstance(value, np.ndarray):
        return {"ndarray": {"dtype": value.dtype.str, "shape": list(value.shape), "values": value.tolist()}}
    if isinstance(value, float):
        return {"float": value}
    return value  # None, bool, int, str


def hexed(data: bytes) -> str:
    return data.hex()


# --- the vectors -----------------------------------------------------------------------------------------


def keys() -> dict[str, Any]:
    def ed(signer: Ed25519Signer, role: str) -> dict[str, Any]:
        seed = _seed({"vec-device": "device", "vec-node": "agent"}[signer.kid])
        return {
            "kid": signer.kid,
            "alg": "ed25519",
            "role": role,
            "seed_hex": seed.hex(),
            "public_hex": signer.public_raw().hex(),
            "pem": signer.private_pem().decode(),
        }

    return {
        "device_ed25519": ed(DEVICE, "task"),
        "device_hmac": {
            "kid": MCU.kid,
            "alg": "hmac-sha256",
            "role": "task",
            "secret_hex": MCU.secret.hex(),
            "key_file": MCU.private_pem().decode(),
        },
        "agent": ed(AGENT, "agent"),
        "not_the_agent": {"kid": OTHER_AGENT.kid, "public_hex": OTHER_AGENT.public_raw().hex()},
    }


def ndarrays() -> list[dict[str, Any]]:
    out = []
    for dtype in DTYPES:
        kind = np.dtype(dtype).kind
        values = [[1.5, -2.25, 0.0], [3.0, 4.5, -8.0]] if kind == "f" else [[1, -2, 3], [4, 5, -6]]
        if kind == "u":
            values = [[1, 2, 3], [250, 5, 6]]
        arr = np.asarray(values, dtype=dtype)
        packed = packb(arr)
        ext = msgpack.unpackb(packed, raw=False, ext_hook=lambda code, data: (code, data))
        out.append(
            {
                "dtype": dtype,
                "shape": list(arr.shape),
                "values": arr.tolist(),
                "data_hex": arr.tobytes().hex(),
                "ext_data_hex": ext[1].hex(),  # the MessagePack of [dtype, shape, data]
                "msgpack_hex": packed.hex(),  # the whole ext 1 value, header included
            }
        )
    return out


def _task(task_id: str, kernel: str, params: dict[str, Any], target: str, **optional: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": task_id,
        "kernel": kernel,
        "params": params,
        "target": target,
        "issued_at": NOW,
        "expires_at": NOW + 3600.0,
        "nonce": hashlib.sha256(task_id.encode()).digest()[:16],
    }
    body.update(optional)
    return body


def tasks() -> list[dict[str, Any]]:
    bodies = [
        ("plain list", _task("vec-1", "stats", {"signal": [1.0, 2.0, 3.0, 4.0]}, "node-1")),
        (
            "ndarray ext 1 params, reply",
            _task(
                "vec-2",
                "matrix_multiply",
                {"matrix_a": np.arange(6, dtype="<f8").reshape(2, 3), "matrix_b": [[1.0], [0.5], [-1.0]]},
                "node-1",
                reply=True,
            ),
        ),
        (
            "every optional field",
            _task(
                "vec-3",
                "fir_filter",
                {"signal": [1, 2, 3, 4, 5], "taps": [0.25, 0.5, 0.25]},
                "pool:cams",
                priority=9,
                timeout_s=5.0,
                max_retries=0,
                trace="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                reply=True,
            ),
        ),
    ]
    out = []
    for name, body in bodies:
        packed = packb(body)
        signed = {}
        for signer in (DEVICE, MCU):
            envelope = seal(packed, signer)
            signed[signer.alg] = {
                "kid": signer.kid,
                "sig_hex": signer.sign(packed).hex(),
                "envelope_hex": hexed(envelope),
            }
        target = body["target"]
        topic = f"{PREFIX}/tasks/" + (f"pool/{target[5:]}" if target.startswith("pool:") else target)
        out.append(
            {"name": name, "topic": topic, "body": notation(body), "body_hex": packed.hex(), "signed": signed}
        )
    return out


def _result(
    task_id: str, kernel: str, status: str, result: Any, error: dict[str, str] | None
) -> dict[str, Any]:
    """A result body in the agent's field order (agent/node/publish/signing.py)."""
    return {
        "id": task_id,
        "node": AGENT.kid,
        "kernel": kernel,
        "status": status,
        "run": 1,
        "attempt": 1 if status == "completed" else 0,
        "received_at": NOW + 0.5,
        "started_at": NOW + 0.5 if status == "completed" else None,
        "finished_at": NOW + 0.75 if status == "completed" else None,
        "duration_ms": 250.0 if status == "completed" else None,
        "error": error,
        "trace": None,
        "result": result,
    }


def results() -> list[dict[str, Any]]:
    trust = TrustStore([TrustedKey(AGENT.kid, "ed25519", AGENT.public_raw(), frozenset({"agent"}))])
    bodies = [
        (
            "completed, a map",
            "vec-1",
            _result("vec-1", "stats", "completed", {"mean": 2.5, "count": 4}, None),
        ),
        (
            "completed, an array",
            "vec-2",
            _result("vec-2", "matrix_multiply", "completed", np.asarray([[-1.5], [0.0]]), None),
        ),
        (
            "rejected",
            "vec-3",
            _result(
                "vec-3",
                "fir_filter",
                "rejected",
                None,
                {"code": "invalid_params", "message": "'taps': too long"},
            ),
        ),
    ]
    out = []
    for name, task_id, body in bodies:
        packed = packb(body)
        envelope = seal(packed, AGENT)
        reply_topic = f"{PREFIX}/replies/{DEVICE.kid}/{task_id}"
        decoded = open_agent_message(envelope, reply_topic, trust, now=NOW + 1)  # the library accepts it
        assert isinstance(decoded, Result) and decoded.id == task_id
        forged = seal(packed, OTHER_AGENT)
        flipped = bytearray(envelope)
        flipped[-1] ^= 0x01  # the last byte of the signature
        out.append(
            {
                "name": name,
                "topics": [f"{PREFIX}/results/{AGENT.kid}/{task_id}", reply_topic],
                "body": notation(body),
                "body_hex": packed.hex(),
                "envelope_hex": envelope.hex(),
                "refused": [
                    {"why": "signed by a key that is not the agent's", "code": "bad_signature",
                     "envelope_hex": forged.hex()},
                    {"why": "one bit of the signature flipped", "code": "bad_signature",
                     "envelope_hex": bytes(flipped).hex()},
                ],
            }
        )  # fmt: skip
    return out


def build() -> dict[str, Any]:
    """File name -> content."""
    head = {"format": FORMAT, "generator": "firmware_examples/vectors/generate.py", "prefix": PREFIX}
    return {
        "keys.json": {**head, "keys": keys()},
        "ndarrays.json": {**head, "ndarrays": ndarrays()},
        "tasks.json": {**head, "tasks": tasks()},
        "results.json": {**head, "results": results()},
    }


def render(content: Any) -> str:
    return json.dumps(content, indent=1, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder of the JSON files (default: beside this)"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, content in build().items():
        path, text = args.out / name, render(content)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}: run `make vectors`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
