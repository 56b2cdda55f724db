"""The cross-language vectors from MicroPython's side: the example's own MessagePack encoder gives
every task body's bytes, its HMAC every `sig_hex` of `vec-mcu`, and its decoder reads every
result and every ndarray to the values the files hold (tests/firmware/mp_vectors.py prints what
the firmware computes; this file compares, exactly: floats by their 64 bits)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.firmware.micropython import FIRMWARE, VECTORS, run


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


def tagged(notation: Any, floats: bool = False) -> Any:
    """The files' notation in the form mp_vectors.py prints (`floats`: inside a float ndarray)."""
    if isinstance(notation, float) or (floats and isinstance(notation, int)):
        return {"f64": struct.pack(">d", notation).hex()}
    if isinstance(notation, list):
        return [tagged(v, floats) for v in notation]
    if not isinstance(notation, dict):
        return notation
    [(kind, inner)] = notation.items()
    if kind == "map":
        return {"dict": sorted([k, tagged(v)] for k, v in inner)}
    if kind == "float":
        return {"f64": struct.pack(">d", inner).hex()}
    if kind == "bin":
        return {"bin": inner}
    assert kind == "ndarray", kind
    return ndarray(inner["dtype"], inner["shape"], inner["values"])


def ndarray(dtype: str, shape: list[int], values: list[Any]) -> dict[str, Any]:
    return {"ndarray": [dtype, shape, tagged(values, floats=dtype.endswith(("f8", "f4")))]}


@pytest.fixture(scope="module")
def printed() -> list[dict[str, Any]]:
    out = run(Path(__file__).with_name("mp_vectors.py"), FIRMWARE, VECTORS)
    assert out.returncode == 0, out.stdout
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_encoder_and_hmac_give_every_task_body_signature_and_envelope(
    printed: list[dict[str, Any]],
) -> None:
    got = {p["task"]: p for p in printed if "task" in p}
    tasks = load("tasks.json")["tasks"]
    assert sorted(got) == sorted(t["name"] for t in tasks)
    for case in tasks:
        signed = case["signed"]["hmac-sha256"]
        assert signed["kid"] == "vec-mcu"
        assert got[case["name"]]["body_hex"] == case["body_hex"], case["name"]
        assert got[case["name"]]["sig_hex"] == signed["sig_hex"], case["name"]
        assert got[case["name"]]["envelope_hex"] == signed["envelope_hex"], case["name"]


def test_the_decoder_reads_every_result_envelope_and_body(printed: list[dict[str, Any]]) -> None:
    got = {p["result"]: p for p in printed if "result" in p}
    results = load("results.json")["results"]
    assert sorted(got) == sorted(r["name"] for r in results)
    for case in results:
        assert got[case["name"]]["body"] == tagged(case["body"]), case["name"]
        envelope = dict(got[case["name"]]["envelope"]["dict"])
        assert envelope["body"] == {"bin": case["body_hex"]} and envelope["v"] == 1
        assert (envelope["alg"], envelope["kid"]) == ("ed25519", "vec-node")


def test_the_decoder_reads_and_the_encoder_writes_every_ndarray(printed: list[dict[str, Any]]) -> None:
    got = {p["ndarray"]: p for p in printed if "ndarray" in p}
    cases = load("ndarrays.json")["ndarrays"]
    assert sorted(got) == sorted(c["dtype"] for c in cases) and len(got) == 8
    for case in cases:
        shape = [len(case["values"]), len(case["values"][0])]
        assert got[case["dtype"]]["decoded"] == ndarray(case["dtype"], shape, case["values"]), case["dtype"]
        assert got[case["dtype"]]["encoded_hex"] == case["msgpack_hex"], case["dtype"]
