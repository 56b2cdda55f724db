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

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgpack
import numpy as np

from .errors import (
    ArrayDataError,
    BodyError,
    CodecError,
    DepthError,
    DtypeError,
    ElementLimitError,
    EncodeError,
    ExtTypeError,
    PayloadTooLarge,
    ShapeError,
)

ARRAY_EXT_TYPE = 1
#: The dtypes an ext array may carry: little endian or byte-sized (PROTOCOL 2).
ALLOWED_DTYPES: frozenset[str] = frozenset({"<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"})
_ITEMSIZE = {d: int(d[2]) for d in ALLOWED_DTYPES}
_CONTAINERS = (list, dict)
MAX_DEPTH = 512  # msgpack's parser stops at 1,024 levels anyway
_LEAF_TYPES = frozenset({str, bytes, int, float, bool, type(None), np.ndarray})
_TREE_TYPES = _LEAF_TYPES | {list, dict}


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


def wire_dtype(dtype: np.dtype[Any]) -> str:
    """The PROTOCOL 2 dtype string an array of `dtype` is sent as (big endian becomes little)."""
    name: str = dtype.str
    if name[0] == ">":
        name = "<" + name[1:]
    if name not in ALLOWED_DTYPES:
        raise EncodeError(
            f"arrays of dtype {dtype.str} cannot be sent; allowed: {', '.join(sorted(ALLOWED_DTYPES))}"
        )
    return name


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    if size < 1 << 32:
        return b"\xc6" + size.to_bytes(4, "big")
    raise EncodeError(f"array data of {size} bytes is over MessagePack's 4 GiB bin limit")


def _pack_array(arr: np.ndarray[Any, Any]) -> msgpack.ExtType:
    """`[dtype, shape, data]` built around the array's own buffer: one copy of the data."""
    dtype = wire_dtype(arr.dtype)
    data = np.ascontiguousarray(arr, dtype=dtype)  # no copy for a C-contiguous little-endian array
    # packb([dtype, shape]) is a 2-array; the same bytes after a 3-array header start [dtype, shape, data].
    head = msgpack.packb([dtype, list(arr.shape)])
    inner = b"".join((b"\x93", head[1:], _bin_header(data.nbytes), data.data))
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

_BIN_SIZE_BYTES = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def _array_head(data: bytes, limits: Limits) -> tuple[str, list[int], int]:
    """Read `[dtype, shape, ` of an ext 1 array: the dtype, the shape and where `data` starts."""
    # Only the head is parsed: at most a 5-byte array header, a 3-character str with a 5-byte
    # header, a shape header and max_dims ints of 9 bytes each. The data is never copied.
    head = msgpack.Unpacker(raw=False, max_buffer_size=18 + 9 * limits.max_dims)
    head.feed(data[: 18 + 9 * limits.max_dims])
    try:
        if head.read_array_header() != 3:
            raise CodecError("array ext must hold [dtype, shape, data]")
        dtype = head.unpack()
    except (ValueError, msgpack.OutOfData):
        raise DtypeError("array ext must start with [dtype, ...] and dtype must be a short str") from None
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise DtypeError(
            f"array dtype {dtype!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_DTYPES))}"
        )
    try:
        ndims = head.read_array_header()
        if ndims > limits.max_dims:
            raise ShapeError(f"array of {ndims} dimensions exceeds the limit of {limits.max_dims}")
        shape = [head.unpack() for _ in range(ndims)]
    except (ValueError, msgpack.OutOfData):
        raise ShapeError("array shape must be a list of non-negative ints") from None
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= limits.max_elements:
            raise ShapeError(f"array dimension {dim!r} is not an int from 0 to {limits.max_elements}")
    return dtype, shape, head.tell()


def _unpack_array(data: bytes, limits: Limits) -> np.ndarray[Any, Any]:
    """Decode the `[dtype, shape, data]` of an ext 1 array, viewing `data` without a copy."""
    dtype, shape, offset = _array_head(data, limits)
    count = math.prod(shape)
    if count > limits.max_elements:
        raise ElementLimitError(f"array of {count} elements exceeds the limit of {limits.max_elements}")
    size_bytes = _BIN_SIZE_BYTES.get(data[offset]) if offset < len(data) else None
    if size_bytes is None:
        raise ArrayDataError("array data must be a MessagePack bin")
    start = offset + 1 + size_bytes
    declared = int.from_bytes(data[offset + 1 : start], "big")
    needed = count * _ITEMSIZE[dtype]
    if declared != needed or start + declared != len(data):
        raise ArrayDataError(
            f"array data is {len(data) - start} bytes in a bin of {declared}; "
            f"shape {shape} of {dtype} needs {needed}"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(shape)


def _ext_hook(limits: Limits) -> Callable[[int, bytes], object]:
    def hook(code: int, data: bytes) -> object:
        if code != ARRAY_EXT_TYPE:
            raise ExtTypeError(f"unknown MessagePack ext type {code}")
        return _unpack_array(data, limits)

    return hook


def _check_tree(node: list[Any] | dict[Any, Any], max_depth: int, depth: int = 1) -> None:
    """Bound nesting and refuse foreign types (a msgpack Timestamp): recursion is bounded by
    `max_depth`; a long list is first checked in one C pass, `set(map(type, ...))`."""
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
        _check_tree(child, max_depth, depth + 1)


def _decode_error(exc: Exception) -> CodecError:
    text = str(exc)
    if isinstance(exc, msgpack.StackError):
        return DepthError("maps and lists nest deeper than MessagePack's parser allows")
    if "max_array_len" in text or "max_map_len" in text:
        return ElementLimitError(f"a list or map is longer than allowed: {text}")
    return CodecError(f"not a valid MessagePack value: {text}")


def unpackb(payload: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one MessagePack value within `limits`; raises `CodecError` for anything else."""
    size = len(payload)
    if size > limits.max_payload:
        raise PayloadTooLarge(f"payload of {size} bytes exceeds the limit of {limits.max_payload}")
    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            ext_hook=limits.ext_hook,
            # msgpack's own defaults tie these to the payload size; keep that and add ours.
            max_array_len=min(limits.max_elements, size),
            max_map_len=min(limits.max_elements, size // 2),
        )
    except CodecError:
        raise
    except Exception as exc:  # ValueError, ExtraData, StackError, UnicodeDecodeError, TypeError...
        raise _decode_error(exc) from None
    if type(value) in _CONTAINERS:
        _check_tree(value, limits.max_depth)
    elif type(value) not in _LEAF_TYPES:
        raise ExtTypeError(f"a {type(value).__name__} is not a value of this protocol")
    return value


def as_array(value: object, dtype: str | None = "<f8", *, field: str = "array") -> np.ndarray[Any, Any]:
    """Accept an ext array or a plain (nested) list of numbers wherever an array is expected.

    Raises `BodyError` (code `invalid_params`, naming `field`) for anything else: strings,
    None, ragged lists, ints beyond 64 bits. `dtype=None` keeps an ext array's own dtype.
    """
    if isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, (list, int, float)) and not isinstance(value, bool):
        try:
            arr = np.asarray(value)
        except (ValueError, OverflowError) as exc:
            raise BodyError(
                f"'{field}' is not a rectangular array: {exc}", field=field, code="invalid_params"
            ) from None
    else:
        raise BodyError(
            f"'{field}' must be an array or a list of numbers", field=field, code="invalid_params"
        )
    if arr.dtype.kind not in "iuf":
        raise BodyError(f"'{field}' must hold numbers only", field=field, code="invalid_params")
    return arr if dtype is None or arr.dtype == np.dtype(dtype) else arr.astype(dtype)
