"""Runs under MicroPython (not pytest): the firmware's encoder, HMAC and decoder on the vectors.

    micropython tests/firmware/mp_vectors.py FIRMWARE_DIR VECTORS_DIR

Prints one JSON object a line; test_micropython_vectors.py compares them with the files. Floats
are printed as the hex of their 64-bit form (`{"f64": hex}`), so no decimal printing can hide a
wrong bit; maps as `{"dict": [[key, value], ...]}` sorted by key.
"""

import json
import struct
import sys
from collections import OrderedDict

FIRMWARE, VECTORS = sys.argv[1], sys.argv[2]
sys.path.insert(0, FIRMWARE)
sys.path.insert(1, FIRMWARE + "/lib")

import mpack  # noqa: E402
import task  # noqa: E402


def load(name):
    with open(VECTORS + "/" + name) as f:
        return json.load(f)


def value(notation):
    """The firmware's value of the files' notation (firmware_examples/vectors/README.md)."""
    if isinstance(notation, list):
        return [value(v) for v in notation]
    if isinstance(notation, dict):
        [(kind, inner)] = notation.items()
        if kind == "map":
            return OrderedDict([(k, value(v)) for k, v in inner])
        if kind == "bin":
            return bytes.fromhex(inner)
        if kind == "float":
            return float(inner)
        if kind == "ndarray":
            return mpack.Array(inner["dtype"], inner["shape"], inner["values"])
        raise ValueError("unknown notation " + kind)
    return notation


def tagged(v):
    """A decoded value, printable exactly."""
    if isinstance(v, float):
        return {"f64": struct.pack(">d", v).hex()}
    if isinstance(v, bytes):
        return {"bin": v.hex()}
    if isinstance(v, mpack.Array):
        return {"ndarray": [v.dtype, v.shape, tagged(v.values)]}
    if isinstance(v, list):
        return [tagged(x) for x in v]
    if isinstance(v, dict):
        return {"dict": sorted([k, tagged(x)] for k, x in v.items())}
    return v


def emit(**fields):
    print(json.dumps(fields))


secret = bytes.fromhex(load("keys.json")["keys"]["device_hmac"]["secret_hex"])
for case in load("tasks.json")["tasks"]:
    body = mpack.packb(value(case["body"]))
    emit(
        task=case["name"],
        body_hex=body.hex(),
        sig_hex=task.signature(secret, body).hex(),
        envelope_hex=task.envelope("vec-mcu", secret, body).hex(),
    )
for case in load("results.json")["results"]:
    env = mpack.unpackb(bytes.fromhex(case["envelope_hex"]))
    emit(result=case["name"], envelope=tagged(env), body=tagged(mpack.unpackb(env["body"])))
for case in load("ndarrays.json")["ndarrays"]:
    array = mpack.Array(case["dtype"], [len(case["values"]), len(case["values"][0])], case["values"])
    decoded = mpack.unpackb(bytes.fromhex(case["msgpack_hex"]))
    emit(ndarray=case["dtype"], encoded_hex=mpack.packb(array).hex(), decoded=tagged(decoded))
