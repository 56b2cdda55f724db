"""MessagePack with numpy arrays as ext type 1 (PROTOCOL 2), limits checked up front.

Decoding trusts nothing. Before anything is allocated: the payload size; every list and
map length, which msgpack checks against `Limits.max_elements` (and against the payload
size, as its own defaults do) when it reads the header; an ext array's dtype, shape and
data length, before numpy sees a byte. Nesting is bounded twice: msgpack's parser refuses
more than 1,024 levels (its fixed stack) while it reads, so memory stays linear in the
payload size, and `Limits.max_depth` is checked on the decoded tree before the value is
returned, together with the types it holds (a MessagePack timestamp, ext -1, is refused).
Arrays decode with `numpy.frombuffer` straight over the ext's bytes (read-only, no copy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgpack
import numpy as np

from .arrays import ALLOWED_DTYPES, ARRAY_EXT_TYPE, as_array, pack_array, unpack_array, wire_dtype
from .errors import CodecError, DepthError, ElementLimitError, EncodeError, ExtTypeError, PayloadTooLarge

__all__ = [
    "ALLOWED_DTYPES",
    "ARRAY_EXT_TYPE",
    "DEFAULT_LIMITS",
    "Limits",
    "as_array",
    "packb",
    "unpackb",
    "wire_dtype",
]

_CONTAINERS = (list, dict)
_LEAF_TYPES = frozenset({str, bytes, int, float, bool, type(None), np.ndarray})
_TREE_TYPES = _LEAF_TYPES | {list, dict}
MAX_DEPTH = 512  # msgpack's parser stops at 1,024 levels anyway


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts; every limit is checked before the memory it guards is taken."""

    max_payload: int = 1 << 20  # PROTOCOL 4 check 1: 1 MiB by default
    max_depth: int = 32  # nesting of maps and lists; at most MAX_DEPTH
    max_elements: int = 1 << 20  # items in one list or map, elements in one array
    max_dims: int = 8  # dimensions of one ext array

    def __post_init__(self) -> None:
        for name in ("max_payload", "max_depth", "max_elements", "max_dims"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1")
        if self.max_depth > MAX_DEPTH:
            raise ValueError(f"Limits.max_depth must be <= {MAX_DEPTH} (the checker recurses)")

    @cached_property
    def ext_hook(self) -> Callable[[int, bytes], object]:
        """msgpack's `ext_hook` that decodes ext 1 arrays within these limits (built once)."""
        return _ext_hook(self)


DEFAULT_LIMITS = Limits()


# --- encoding ------------------------------------------------------------------


def _default(obj: object) -> object:
    if isinstance(obj, np.ndarray):
        return pack_array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        raise EncodeError("sets have no order on the wire; send a list")
    raise EncodeError(f"cannot encode a {type(obj).__name__}")


def packb(obj: object) -> bytes:
    """Encode `obj`; numpy arrays become ext type 1, numpy scalars plain numbers."""
    try:
        return msgpack.packb(obj, use_bin_type=True, default=_default)  # type: ignore[no-any-return]
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode: {exc}") from exc


# --- decoding --------------------------------------------------------------------


def _ext_hook(limits: Limits) -> Callable[[int, bytes], object]:
    def hook(code: int, data: bytes) -> object:
        if code != ARRAY_EXT_TYPE:
            raise ExtTypeError(f"unknown MessagePack ext type {code}")
        return unpack_array(data, limits.max_dims, limits.max_elements)

    return hook


def check_tree(node: list[Any] | dict[Any, Any], max_depth: int, depth: int = 1) -> None:
    """Bound nesting (`node` is at level `depth`) and refuse foreign types (a msgpack Timestamp).

    Recursion is bounded by `max_depth`; a long list is first checked in one C pass.
    """
    items = node.values() if type(node) is dict else node
    if len(items) > 16:
        kinds = set(map(type, items))
        if kinds <= _LEAF_TYPES:
            return
        if not kinds <= _TREE_TYPES:
            raise ExtTypeError(
                f"values of type {sorted(k.__name__ for k in kinds - _TREE_TYPES)} not allowed"
            )
    for child in items:
        kind = type(child)
        if kind in _LEAF_TYPES:
            continue
        if kind is not dict and kind is not list:
            raise ExtTypeError(f"a {kind.__name__} is not a value of this protocol")
        if depth >= max_depth:
            raise DepthError(f"maps and lists nest deeper than {max_depth} levels")
        check_tree(child, max_depth, depth + 1)


def _decode_error(exc: Exception) -> CodecError:
    text = str(exc)
    if isinstance(exc, msgpack.StackError):
        return DepthError("maps and lists nest deeper than MessagePack's parser allows")
    if "max_array_len" in text or "max_map_len" in text:
        return ElementLimitError(f"a list or map is longer than allowed: {text}")
    return CodecError(f"not a valid MessagePack value: {text}")


def parse(payload: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """`unpackb` without the final `check_tree`: for a caller that checks the types of most of
    the value itself and runs `check_tree` on the rest (as acceptance does with `params`)."""
    size = len(payload)
    if size > limits.max_payload:
        raise PayloadTooLarge(f"payload of {size} bytes exceeds the limit of {limits.max_payload}")
    try:
        if size <= limits.max_elements:  # msgpack's own length limits (the payload size) are tighter
            return msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=limits.ext_hook)
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            ext_hook=limits.ext_hook,
            max_array_len=limits.max_elements,
            max_map_len=limits.max_elements,
        )
    except CodecError:
        raise
    except Exception as exc:  # ValueError, ExtraData, StackError, UnicodeDecodeError, TypeError...
        raise _decode_error(exc) from None


def unpackb(payload: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one MessagePack value within `limits`; raises `CodecError` for anything else."""
    value = parse(payload, limits)
    if type(value) in _CONTAINERS:
        check_tree(value, limits.max_depth)
    elif type(value) not in _LEAF_TYPES:
        raise ExtTypeError(f"a {type(value).__name__} is not a value of this protocol")
    return value
