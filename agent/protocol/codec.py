"""MessagePack with numpy arrays as ext type 1 (PROTOCOL 2), limits checked up front.

Decoding trusts nothing: the payload size is checked before unpacking, msgpack's own
length limits bound every string, bin, array and map, an ext array's dtype, shape and data
length are checked before numpy sees a byte, and nesting depth is bounded. Arrays decode
with `numpy.frombuffer` straight over the received bytes (read-only, no copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .errors import CodecError, EncodeError, PayloadTooLarge

ARRAY_EXT_TYPE = 1
#: The dtypes an ext array may carry: little endian or byte-sized (PROTOCOL 2).
ALLOWED_DTYPES: frozenset[str] = frozenset({"<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"})
_CONTAINERS = (list, dict)


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts; every limit is checked before the memory it guards is taken."""

    max_payload: int = 1 << 20  # PROTOCOL 4 check 1: 1 MiB by default
    max_depth: int = 32  # nesting of maps and lists
    max_elements: int = 1 << 20  # items in one list or map, elements in one array
    max_dims: int = 8  # dimensions of one ext array

    def __post_init__(self) -> None:
        for name in ("max_payload", "max_depth", "max_elements", "max_dims"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1")


DEFAULT_LIMITS = Limits()


# --- encoding ------------------------------------------------------------------


def _pack_array(arr: np.ndarray[Any, Any]) -> msgpack.ExtType:
    dtype = arr.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and dtype.str[0] == ">"):
        dtype = dtype.newbyteorder("<")
    if dtype.str not in ALLOWED_DTYPES:
        raise EncodeError(
            f"arrays of dtype {arr.dtype.str} cannot be sent; allowed: {', '.join(sorted(ALLOWED_DTYPES))}"
        )
    data = np.ascontiguousarray(arr, dtype=dtype)
    inner = msgpack.packb([dtype.str, list(arr.shape), data.tobytes()], use_bin_type=True)
    return msgpack.ExtType(ARRAY_EXT_TYPE, inner)


def _default(obj: object) -> object:
    if isinstance(obj, np.ndarray):
        return _pack_array(obj)
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

_BIN_HEADERS = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def _unpack_array(data: bytes, limits: Limits) -> np.ndarray[Any, Any]:
    """Decode the `[dtype, shape, data]` of an ext 1 array, viewing `data` without a copy."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        if unpacker.read_array_header() != 3:
            raise CodecError("array ext must hold [dtype, shape, data]")
        dtype = unpacker.unpack()
        shape = unpacker.unpack()
        offset = unpacker.tell()
    except (msgpack.UnpackException, ValueError, msgpack.OutOfData) as exc:
        raise CodecError(f"array ext header is not valid MessagePack: {exc}") from exc
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise CodecError(
            f"array dtype {dtype!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_DTYPES))}"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > limits.max_dims
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise CodecError(f"array shape must be a list of at most {limits.max_dims} non-negative ints")
    count = math.prod(shape)
    if count > limits.max_elements:
        raise CodecError(f"array of {count} elements exceeds the limit of {limits.max_elements}")
    header = data[offset] if offset < len(data) else None
    size_len = _BIN_HEADERS.get(header) if header is not None else None
    if size_len is None:
        raise CodecError("array data must be a MessagePack bin")
    start = offset + 1 + size_len
    declared = int.from_bytes(data[offset + 1 : start], "big")
    itemsize = int(dtype[2])
    if start + declared != len(data) or declared != count * itemsize:
        raise CodecError(
            f"array data is {len(data) - start} bytes, declared bin {declared} bytes, "
            f"shape {shape} of {dtype} needs {count * itemsize}"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(shape)


def _check_depth(root: object, max_depth: int) -> None:
    """Iteratively bound nesting; lists of scalars cost one C-level pass."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise CodecError(f"nesting deeper than {max_depth} levels")
        if isinstance(node, dict):
            items: Any = node.values()
        else:
            items = node
        if not {list, dict} & set(map(type, items)):
            continue
        stack.extend((child, depth + 1) for child in items if isinstance(child, _CONTAINERS))


def unpackb(payload: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one MessagePack value within `limits`; raises `CodecError` for anything else."""
    if len(payload) > limits.max_payload:
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload}")

    def ext_hook(code: int, data: bytes) -> object:
        if code != ARRAY_EXT_TYPE:
            raise CodecError(f"unknown MessagePack ext type {code}")
        return _unpack_array(data, limits)

    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            ext_hook=ext_hook,
            max_array_len=limits.max_elements,
            max_map_len=limits.max_elements,
        )
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises ValueError, TypeError, ExtraData, UnicodeDecodeError...
        raise CodecError(f"not a valid MessagePack value: {exc}") from exc
    if isinstance(value, _CONTAINERS):
        _check_depth(value, limits.max_depth)
    return value


def as_array(value: object, dtype: str = "<f8") -> np.ndarray[Any, Any]:
    """Accept an ext array or plain (nested) list of numbers wherever an array is expected."""
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(value, dtype=dtype)
