"""The one settings loader: typed dataclass sections from TOML documents and environment variables.

    names = EnvNames("EDGE_")                                   # EDGE_MQTT_PORT is mqtt.port
    doc = read_toml(path)                                       # ConfigError("config", ...)
    config = build(Config, [Layer(doc, base=path.parent), env_layer(Config, os.environ, names)])

The agent (`agent.node.config`), the client tools (`agent.tools.settings`) and the broker
(`broker.config`) declare their settings as frozen dataclasses and build them here; each adds
only the checks that relate several values.

A schema's fields are settings, sections (a nested dataclass, a TOML table) or `INTERNAL` fields
that `build` takes as keyword arguments (the file a configuration came from): no layer sets those.
Setting types: `str`, `int`, `float`, `bool`, `Path`, `Literal` of strings, `tuple[str, ...]`
and `X | None` of these. A range is field metadata: `field(default=1883, metadata=limit(1, 65535))`.

Layers come in order, later ones winning. Each is a mapping shaped like the TOML document. In a
`text` layer (environment variables, command-line flags) a string may also spell another type:
"8883", "true"/"off", "a, b" for a list, "" for None, a `Literal` choice in any case. A relative
path is resolved against the layer's `base` (the TOML file's directory, the working directory)
or kept as written when it has none. Every value of every layer is converted, so a wrong one is an
error even when a later layer overrides it; ranges are checked on the value that wins. A section
no layer mentions keeps the default its parent declares (a listener disabled by default stays so
when one of its keys is set). Unknown keys and sections are errors: a misspelt setting must not
silently keep its default.

Every error is a `ConfigError` whose `key` names the setting (`listeners.tls.port`). Pure
functions without state: call them from any thread.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from . import tomlio
from .errors import ConfigError

__all__ = [
    "INTERNAL",
    "ConfigError",
    "EnvNames",
    "Layer",
    "build",
    "convert",
    "env_layer",
    "env_name",
    "leaf_paths",
    "limit",
    "nest",
    "read_toml",
]

T = TypeVar("T")

#: Field metadata of a field that is not a setting: `build` takes it as a keyword argument.
INTERNAL: Mapping[str, Any] = types.MappingProxyType({"setting": False})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_KIND = {int: "an integer", float: "a number"}


def limit(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> dict[str, Any]:
    """Field metadata of a number's range: `lo <= value <= hi`, `value > above`."""
    return {"lo": lo, "hi": hi, "above": above}


@dataclass(frozen=True)
class Layer:
    """One source of values, shaped like the TOML document (see the module docstring)."""

    doc: Mapping[str, Any]
    base: Path | None = None  # relative paths are resolved against it; None: kept as written
    text: bool = False  # strings also spell numbers, booleans, lists and None


@dataclass(frozen=True)
class EnvNames:
    """How a component names its settings in the environment: `prefix` and the key's path in
    capitals, `_` for `.` (`EDGE_` + `mqtt.port` is `EDGE_MQTT_PORT`).

    With `owns_prefix` every variable under the prefix must name a setting (`EDGE_BROKER_*`);
    without, the prefix is shared by several programs, and only variables whose first word names
    one of the schema's sections are read (`EDGE_MQTT_*` yes, `EDGE_KERNELS_*` left alone).
    `ignore` holds variables of another program that shares a section."""

    prefix: str
    owns_prefix: bool = False
    ignore: frozenset[str] = frozenset()
    listed_in: str = ""  # said when a variable under an owned prefix is unknown


# --- documents --------------------------------------------------------------------------------


def read_toml(path: Path, key: str = "config") -> dict[str, Any]:
    """The TOML document at `path`; a `ConfigError(key)` when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path} is not valid TOML: not UTF-8 text") from None
    try:
        return tomlio.loads(text)
    except tomlio.TOMLDecodeError as exc:
        raise ConfigError(key, f"{path} is not valid TOML: {exc}") from None


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}`; nested mappings are merged in."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping):
            _merge(node.setdefault(last, {}), nest(value))
        else:
            node[last] = value
    return out


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


# --- the environment --------------------------------------------------------------------------


def leaf_paths(schema: type) -> list[str]:
    """The dotted path of every setting of `schema` (`listeners.tcp.port`)."""
    paths: list[str] = []
    hints = typing.get_type_hints(schema)
    for f in _settings(schema):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            paths += [f"{f.name}.{sub}" for sub in leaf_paths(typing.cast(type, hint))]
        else:
            paths.append(f.name)
    return paths


def env_name(prefix: str, path: str) -> str:
    """The variable of the setting at `path`: `env_name("EDGE_", "mqtt.port")` is EDGE_MQTT_PORT."""
    return prefix + path.replace(".", "_").upper()


def env_layer(
    schema: type, environ: Mapping[str, str], names: EnvNames, *, base: Path | None = None
) -> Layer:
    """The variables of `environ` that set keys of `schema`, as a text layer; an unknown one
    that is this component's (see `EnvNames`) is a `ConfigError`."""
    known = {env_name(names.prefix, path): path for path in leaf_paths(schema)}
    sections = {f.name.upper() for f in _settings(schema)}
    flat: dict[str, str] = {}
    for var, value in environ.items():
        if not var.startswith(names.prefix) or var in names.ignore:
            continue
        if var in known:
            flat[known[var]] = value
            continue
        if names.owns_prefix:
            raise ConfigError(var, "unknown setting" + (f" ({names.listed_in})" if names.listed_in else ""))
        section, _, rest = var[len(names.prefix) :].partition("_")
        if section in sections and rest:
            key = f"{section}.{rest}".lower()
            raise ConfigError(key, f"unknown setting (from the environment variable {var})")
    return Layer(nest(flat), base=base, text=True)


# --- building ---------------------------------------------------------------------------------


def build(schema: type[T], layers: Sequence[Layer], **internal: Any) -> T:
    """A `schema` instance from its defaults and `layers` (later ones winning); `internal` gives
    the fields marked `INTERNAL`. Raises `ConfigError` naming the first wrong key."""
    values = _values(schema, [(layer, layer.doc) for layer in layers], "")
    return schema(**values, **internal)


def _settings(schema: type) -> list[Field[Any]]:
    return [f for f in dataclasses.fields(schema) if f.metadata.get("setting", True)]


def _default(f: Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _values(schema: type, parts: list[tuple[Layer, Mapping[str, Any]]], prefix: str) -> dict[str, Any]:
    """The constructor arguments of `schema` that `parts` set (every section is built)."""
    fields = {f.name: f for f in _settings(schema)}
    hints = typing.get_type_hints(schema)
    for _, doc in parts:
        _refuse_unknown(doc, fields, hints, prefix)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key, hint = prefix + name, hints[name]
        given = [(layer, doc[name]) for layer, doc in parts if name in doc]
        if dataclasses.is_dataclass(hint):
            values[name] = _section(typing.cast(type, hint), key, given, _default(f))
        elif given:
            for layer, raw in given:
                values[name] = convert(key, hint, raw, text=layer.text, base=layer.base)
            _check_range(key, values[name], f.metadata)
    return values


def _section(schema: type, key: str, given: list[tuple[Layer, Any]], default: Any) -> Any:
    for _, doc in given:
        if not isinstance(doc, Mapping):
            raise ConfigError(key, "must be a table")
    values = _values(schema, given, key + ".")
    return dataclasses.replace(default, **values) if default is not None else schema(**values)


def _refuse_unknown(
    doc: Mapping[str, Any], fields: Mapping[str, Field[Any]], hints: Mapping[str, Any], prefix: str
) -> None:
    unknown = sorted(set(doc) - set(fields))
    if not unknown:
        return
    if all(dataclasses.is_dataclass(hints[name]) for name in fields):
        raise ConfigError(prefix + unknown[0], f"unknown section (known: {', '.join(fields)})")
    raise ConfigError(prefix + unknown[0], f"unknown setting (known: {', '.join(sorted(fields))})")


def _check_range(key: str, value: object, meta: Mapping[str, Any]) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    lo, hi, above = meta.get("lo"), meta.get("hi"), meta.get("above")
    if above is not None and not value > above:
        raise ConfigError(key, f"must be > {above:g}, got {value:g}")
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise ConfigError(key, f"must be from {lo:g} to {hi:g}, got {value:g}")
    if lo is not None and value < lo:
        raise ConfigError(key, f"must be >= {lo:g}, got {value:g}")
    if hi is not None and value > hi:
        raise ConfigError(key, f"must be <= {hi:g}, got {value:g}")


# --- converting one value ---------------------------------------------------------------------


def convert(key: str, hint: Any, value: object, *, text: bool = False, base: Path | None = None) -> Any:
    """`value` as the type `hint` (`text`, `base`: see `Layer`); a `ConfigError(key)` if it is not one."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (text and value == ""):
            return None
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return convert(key, inner, value, text=text, base=base)
    if origin is Literal:
        return _choice(key, typing.get_args(hint), value, text)
    if origin is tuple:
        items = value
        if text and isinstance(value, str):
            items = [s.strip() for s in value.split(",") if s.strip()]
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(key, "must be a list of strings")
        return tuple(items)
    if hint is bool:
        return _bool(key, value, text)
    if hint in (int, float):
        return _number(key, hint, value, text)
    if hint is Path:
        return _path(key, value, base)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {type(value).__name__}")
        return value
    raise TypeError(f"unsupported setting type {hint!r} for {key}")  # a bug in the schema


def _choice(key: str, choices: tuple[Any, ...], value: object, text: bool) -> Any:
    if value in choices:
        return value
    if text and isinstance(value, str):
        for choice in choices:
            if value.strip().lower() == str(choice).lower():
                return choice
    raise ConfigError(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _bool(key: str, value: object, text: bool) -> bool:
    if text and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def _number(key: str, hint: type, value: object, text: bool) -> float | int:
    if text and isinstance(value, str):
        try:
            value = int(value) if hint is int else float(value)
        except ValueError:
            raise ConfigError(key, f"must be {_KIND[hint]}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be {_KIND[hint]}, got {value!r}")
    if hint is int and not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(key, "must be finite")
    return hint(value)  # type: ignore[no-any-return]


def _path(key: str, value: object, base: Path | None) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(key, "must be a non-empty path string")
    path = Path(value).expanduser()
    return path if path.is_absolute() or base is None else base / path
