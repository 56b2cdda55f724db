"""The C device against the cross-language vectors (firmware_examples/vectors).

No JSON parser in C: the test turns each vector's body into the command line a user would type
(`--id`, `--kernel`, `--list`, `--array`, `--issued-at`, `--nonce`, ...) and compares the hex
`edge-device encode` prints with the file's; `encode-array` must give every ndarray's `msgpack_hex`;
`verify` must accept every result envelope (printing exactly its body) and refuse every forgery.
Run natively and under ASan+UBSan.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.firmware.c_device import Device

VECTORS = Path(__file__).resolve().parents[2] / "firmware_examples" / "vectors"


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


def number(notation: Any) -> str:
    """A number as the C program reads it: `3` an int, `3.0` a float (as the files' notation)."""
    if isinstance(notation, dict):
        return repr(float(notation["float"]))
    return repr(notation)


def flatten(values: Any) -> tuple[list[str], list[int]]:
    """Nested lists to (numbers, shape)."""
    if not isinstance(values, list):
        return [number(values)], []
    parts = [flatten(v) for v in values]
    shapes = {tuple(shape) for _, shape in parts}
    assert len(shapes) <= 1, "ragged list"
    inner = list(shapes.pop()) if shapes else []
    return [n for numbers, _ in parts for n in numbers], [len(values), *inner]


def param_option(name: str, value: Any) -> list[str]:
    if isinstance(value, dict) and "ndarray" in value:
        array = value["ndarray"]
        numbers, _ = flatten(array["values"])
        shape = "x".join(map(str, array["shape"]))
        return ["--array", f"{name}={array['dtype']}:{shape}:{','.join(numbers)}"]
    if isinstance(value, list):
        numbers, shape = flatten(value)
        return ["--list", f"{name}={'x'.join(map(str, shape))}:{','.join(numbers)}"]
    if isinstance(value, dict) and "float" in value:
        return ["--float", f"{name}={number(value)}"]
    assert isinstance(value, int), f"no option for param {name}={value!r}"
    return ["--int", f"{name}={value}"]


def task_options(body: dict[str, Any]) -> list[str]:
    """The command line that makes this body (the fields in the program's fixed order)."""
    fields = dict(body["map"])
    options = ["--id", fields.pop("id"), "--kernel", fields.pop("kernel"), "--target", fields.pop("target")]
    for name, value in fields.pop("params")["map"]:
        options += param_option(name, value)
    issued, expires = fields.pop("issued_at")["float"], fields.pop("expires_at")["float"]
    options += ["--issued-at", repr(issued), "--ttl", repr(expires - issued)]
    options += ["--nonce", fields.pop("nonce")["bin"]]
    flags = {
        "priority": "--priority",
        "timeout_s": "--timeout",
        "max_retries": "--max-retries",
        "trace": "--trace",
    }
    for key, flag in flags.items():
        if key in fields:
            options += [flag, number(fields.pop(key)) if key == "timeout_s" else str(fields.pop(key))]
    if not fields.pop("reply", False):
        options.append("--no-reply")
    assert not fields, f"fields the test cannot express: {sorted(fields)}"
    return options


def key_files(tmp_path: Path) -> dict[str, Path]:
    keys = load("keys.json")["keys"]
    ed, hmac = tmp_path / "ed25519.key", tmp_path / "hmac.key"
    ed.write_text(keys["device_ed25519"]["pem"])
    hmac.write_text(keys["device_hmac"]["key_file"])
    return {"ed25519": ed, "hmac-sha256": hmac}


def printed(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.splitlines())


def test_each_task_body_signature_and_envelope_is_the_vectors(c_device: Device, tmp_path: Path) -> None:
    files = key_files(tmp_path)
    tasks = load("tasks.json")["tasks"]
    assert len(tasks) == 3
    for task in tasks:
        for alg, signed in task["signed"].items():
            done = c_device.run(
                "encode", "--env", "/dev/null", "--kid", signed["kid"], "--signing-key", files[alg],
                *task_options(task["body"]),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            out = printed(done.stdout)
            assert out["topic"] == task["topic"], task["name"]
            assert out["body"] == task["body_hex"], (task["name"], alg)
            assert out["sig"] == signed["sig_hex"], (task["name"], alg)
            assert out["envelope"] == signed["envelope_hex"], (task["name"], alg)


def test_each_ndarray_encodes_to_its_ext_1(c_device: Device) -> None:
    cases = load("ndarrays.json")["ndarrays"]
    for case in cases:
        numbers, _ = flatten(case["values"])
        spec = f"{case['dtype']}:{'x'.join(map(str, case['shape']))}:{','.join(numbers)}"
        done = c_device.run("encode-array", spec)
        assert done.returncode == 0, done.stderr
        assert printed(done.stdout)["msgpack"] == case["msgpack_hex"], case["dtype"]
    assert len(cases) == 8


def plain(notation: Any) -> Any:
    """The JSON the C program prints for a value of the files' notation."""
    if isinstance(notation, list):
        return [plain(v) for v in notation]
    if isinstance(notation, dict):
        [(kind, inner)] = notation.items()
        if kind == "map":
            return {k: plain(v) for k, v in inner}
        if kind == "float":
            return float(inner)
        if kind == "ndarray":
            return inner["values"]
        raise AssertionError(f"no JSON for {kind}")
    return notation


def agent_key(public_hex: str, window: str = "- -") -> str:
    return f"vec-node ed25519 {base64.b64encode(bytes.fromhex(public_hex)).decode()} {window}"


def test_each_result_verifies_and_each_forgery_is_refused(c_device: Device) -> None:
    agent = load("keys.json")["keys"]["agent"]
    trust = ["--env", "/dev/null", "--agent-key", agent_key(agent["public_hex"])]
    results = load("results.json")["results"]
    for case in results:
        body = plain(case["body"])
        done = c_device.run("verify", *trust, "--json", "--expect-id", body["id"], case["envelope_hex"])
        completed = body["status"] == "completed"
        assert done.returncode == (0 if completed else 1), done.stderr  # exit statuses as edge-submit's
        assert json.loads(done.stdout) == body, case["name"]
        for forged in case["refused"]:
            refused = c_device.run("verify", *trust, forged["envelope_hex"])
            assert refused.returncode == 1, forged["why"]
            assert refused.stdout == ""
            assert f"refused: {forged['code']}" in refused.stderr, refused.stderr
    assert sum(len(case["refused"]) for case in results) >= 2


def test_a_reply_is_refused_out_of_its_key_window_for_another_node_or_task(c_device: Device) -> None:
    """PROTOCOL 3 and 7 beyond the vectors: the key's validity window, the body's node and id."""
    agent = load("keys.json")["keys"]["agent"]
    [case, *_] = load("results.json")["results"]
    expired = ["--env", "/dev/null", "--agent-key", agent_key(agent["public_hex"], "- 1000")]
    done = c_device.run("verify", *expired, case["envelope_hex"])
    assert (done.returncode, done.stdout) == (1, "")
    assert "refused: revoked_key" in done.stderr
    trust = ["--env", "/dev/null", "--agent-key", agent_key(agent["public_hex"])]
    done = c_device.run("verify", *trust, "--expect-id", "another-task", case["envelope_hex"])
    assert (done.returncode, done.stdout) == (1, "")
    assert "refused: wrong_task" in done.stderr
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(agent["seed_hex"]))
    body = msgpack.packb({"id": "x", "node": "node-9", "status": "completed", "result": 1})
    envelope = msgpack.packb(
        {"v": 1, "alg": "ed25519", "kid": "vec-node", "body": body, "sig": key.sign(body)}
    )
    done = c_device.run("verify", *trust, envelope.hex())
    assert (done.returncode, done.stdout) == (1, "")
    assert "refused: wrong_node" in done.stderr
