"""The cross-language vectors (firmware_examples/vectors) from the protocol library's side: the
files are what the library makes today, and what they hold is accepted or refused by the library
as they say. The C and MicroPython examples check the same files from their languages."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import numpy as np
import pytest

from agent.protocol import (
    AuthenticationError,
    MemoryReplayCache,
    TrustStore,
    accept_task,
    open_agent_message,
    packb,
    unpackb,
)
from agent.protocol.truststore import TrustedKey

VECTORS = Path(__file__).resolve().parents[2] / "firmware_examples" / "vectors"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


def test_the_files_are_what_the_library_makes_today() -> None:
    """A change of encoding, key handling or field order shows here: regenerate with `make vectors`."""
    gen = generator()
    for name, content in gen.build().items():
        assert (VECTORS / name).read_text() == gen.render(content), (
            f"{name} is out of date: run `make vectors`"
        )


def value(notation: Any) -> Any:
    """The Python value of the files' notation (README.md of the vectors)."""
    if isinstance(notation, list):
        return [value(v) for v in notation]
    if isinstance(notation, dict):
        [(kind, inner)] = notation.items()
        if kind == "map":
            return {k: value(v) for k, v in inner}
        if kind == "bin":
            return bytes.fromhex(inner)
        if kind == "float":
            return float(inner)
        if kind == "ndarray":
            return np.asarray(inner["values"], dtype=inner["dtype"]).reshape(inner["shape"])
        raise AssertionError(f"unknown notation {kind}")
    return notation


def test_each_task_body_encodes_to_its_bytes_and_is_accepted_with_either_signature() -> None:
    keys = load("keys.json")["keys"]
    task_role = frozenset({"task"})
    trust = TrustStore(
        [
            TrustedKey(
                "vec-device", "ed25519", bytes.fromhex(keys["device_ed25519"]["public_hex"]), task_role
            ),
            TrustedKey("vec-mcu", "hmac-sha256", bytes.fromhex(keys["device_hmac"]["secret_hex"]), task_role),
        ]
    )
    for task in load("tasks.json")["tasks"]:
        body = value(task["body"])
        assert packb(body).hex() == task["body_hex"], task["name"]
        now = body["issued_at"] + 1
        for alg, signed in task["signed"].items():
            accepted = accept_task(
                bytes.fromhex(signed["envelope_hex"]), task["topic"], now, trust, MemoryReplayCache()
            )
            assert (accepted.kid, accepted.task.id) == (signed["kid"], body["id"]), (task["name"], alg)
            assert accepted.task.reply is bool(body.get("reply"))


def test_each_ndarray_is_the_ext_1_of_its_values() -> None:
    dtypes = set()
    for case in load("ndarrays.json")["ndarrays"]:
        arr = np.asarray(case["values"], dtype=case["dtype"])
        assert packb(arr).hex() == case["msgpack_hex"]
        assert arr.tobytes().hex() == case["data_hex"]
        decoded = unpackb(bytes.fromhex(case["msgpack_hex"]))
        assert decoded.dtype == np.dtype(case["dtype"]) and decoded.tolist() == case["values"]
        ext = msgpack.unpackb(bytes.fromhex(case["msgpack_hex"]), ext_hook=lambda code, data: (code, data))
        assert ext == (1, bytes.fromhex(case["ext_data_hex"]))
        dtypes.add(case["dtype"])
    assert dtypes == {"<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"}  # every dtype of PROTOCOL 2


def test_each_result_verifies_on_both_topics_and_each_forgery_is_refused() -> None:
    agent = load("keys.json")["keys"]["agent"]
    trust = TrustStore(
        [TrustedKey(agent["kid"], "ed25519", bytes.fromhex(agent["public_hex"]), frozenset({"agent"}))]
    )
    for case in load("results.json")["results"]:
        envelope = bytes.fromhex(case["envelope_hex"])
        for topic in case["topics"]:
            result = open_agent_message(envelope, topic, trust)
            assert packb(value(case["body"])).hex() == case["body_hex"]
            assert result.id == value(case["body"])["id"]  # type: ignore[union-attr]
        for forged in case["refused"]:
            with pytest.raises(AuthenticationError) as refused:
                open_agent_message(bytes.fromhex(forged["envelope_hex"]), case["topics"][1], trust)
            assert refused.value.code == forged["code"], forged["why"]
