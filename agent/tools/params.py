"""Task parameters and times from the command line and from files, with errors that name the input.

    params = build_params('{"window": 4}', ["bins=20"], ["signal=readings.csv"])
    parse_when("+10m") / parse_when("2027-01-31T12:00:00Z") / parse_when("1801224000")
    parse_duration("1h30m") / parse_duration("90")

Parameter files: `.npy` (numpy's format, no pickles), `.csv` / `.txt` (comma-separated numbers:
one row or one column gives a 1-D array, several of each a 2-D one; `#` starts a comment), `.json`
(any JSON value). Arrays go out as PROTOCOL 2 ext arrays; a dtype the protocol lacks is widened
(float16 -> float64, int8 stays, uint32 -> int64), a non-numeric one refused.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from agent.common.errors import InvalidTime
from agent.common.timespec import parse_time
from agent.protocol import ALLOWED_DTYPES

from .errors import UsageError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds: `90` (plain seconds), `45s`, `30m`, `1h30m`, `2d`."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        if not _DURATION.fullmatch(value):
            raise UsageError(f"{what} {text!r} is not like 90, 45s, 30m, 1h30m or 2d") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{what} {text!r} must be a finite, non-negative number of seconds")
    return seconds


def parse_when(text: str, what: str = "time", now: float | None = None) -> float:
    """Epoch seconds of `+DURATION` (from now), `now`, ISO 8601 with an offset, or epoch seconds."""
    value = text.strip()
    base = time.time() if now is None else now
    if value.lower() == "now":
        return base
    if value.startswith("+"):
        return base + parse_duration(value[1:], what)
    try:
        return parse_time(value)  # the same reading as edge-provision's times
    except InvalidTime as exc:
        raise UsageError(f"{what}: {exc} (or +DURATION such as +10m, or now)") from None


def _sendable(arr: np.ndarray[Any, Any], source: str) -> np.ndarray[Any, Any]:
    """`arr` in a PROTOCOL 2 dtype (widened where the protocol lacks its own)."""
    name = arr.dtype.str.replace(">", "<")
    if name in ALLOWED_DTYPES:
        return arr
    if arr.dtype.kind == "f":
        return arr.astype("<f8")
    if arr.dtype.kind in "iu":
        return arr.astype("<i8")
    if arr.dtype.kind == "b":
        return arr.astype("|u1")
    raise UsageError(f"{source}: arrays of dtype {arr.dtype} cannot be sent; use numbers")


def load_param_file(path: Path, source: str) -> Any:
    """The value in `path` by its suffix; `source` names the flag in errors."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return _sendable(np.load(path, allow_pickle=False), source)
        if suffix in (".csv", ".txt"):
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=1, comments="#")
            if arr.ndim == 2 and 1 in arr.shape:
                arr = arr.reshape(-1)
            return arr
        if suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, json.JSONDecodeError) as exc:
        raise UsageError(f"{source}: {path} is not a valid {suffix[1:]} file: {exc}") from None
    raise UsageError(f"{source}: {path} must end in .npy, .csv, .txt or .json")


def _split(item: str, flag: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    name = name.strip()
    if not sep or not NAME.fullmatch(name):
        raise UsageError(f"{flag} {item!r} must be NAME=VALUE with a parameter name such as signal")
    return name, value


def parse_value(text: str) -> Any:
    """A `--param` value: JSON when it parses (3, 2.5, [1, 2], true, "x"), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_params(
    params_json: str | None,
    items: Iterable[str] = (),
    files: Iterable[str] = (),
    *,
    base: Path | None = None,
) -> dict[str, Any]:
    """`--params JSON` (or `@file.json`), then `--param NAME=VALUE`, then `--param-file NAME=FILE`."""
    params: dict[str, Any] = {}
    if params_json is not None:
        text = params_json
        if text.startswith("@"):
            path = Path(text[1:])
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--params: cannot read {path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise UsageError('--params must be a JSON object, e.g. {"signal": [1, 2, 3]}')
        params.update(doc)
    for item in items:
        name, value = _split(item, "--param")
        params[name] = parse_value(value)
    for item in files:
        name, value = _split(item, "--param-file")
        path = Path(value).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        params[name] = load_param_file(path, f"--param-file {name}")
    return params
