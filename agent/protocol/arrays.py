"""Numeric arrays on the wire: MessagePack ext type 1 holding `[dtype, shape, data]` (PROTOCOL 2).

Encoding builds the ext around the array's own buffer (one copy of the data). Decoding reads
the small `[dtype, shape, ` head by hand, checks dtype, every dimension, the element count and
the data length before numpy sees a byte, then views the data with `numpy.frombuffer` (no
copy). The head is parsed here rather than by a `msgpack.Unpacker`, whose construction alone
cost more than the rest of accepting a task.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from .errors import (
    ArrayDataError,
    BodyError,
    CodecError,
    DtypeError,
    ElementLimitError,
    EncodeError,
    ShapeError,
)

ARRAY_EXT_TYPE = 1
#: The dtypes an ext array may carry: little endian or byte-sized (PROTOCOL 2).
ALLOWED_DTYPES: frozenset[str] = frozenset({"<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"})
_DTYPE_BY_BYTES = {d.encode(): d for d in ALLOWED_DTYPES}
_ITEMSIZE = {d: int(d[2]) for d in ALLOWED_DTYPES}
_NUMPY_DTYPES = {d: np.dtype(d) for d in ALLOWED_DTYPES}


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


def _packed_uint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    for header, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4)):
        if value < 1 << (8 * size):
            return bytes((header,)) + value.to_bytes(size, "big")
    return b"\xcf" + value.to_bytes(8, "big")


def pack_array(arr: np.ndarray[Any, Any]) -> msgpack.ExtType:
    """The ext 1 value of `arr`, in C order and little endian, built around its own buffer.

    The head is written here (as msgpack would write it): a nested `msgpack.packb` would set
    up a packer with a buffer of its own for a dozen bytes.
    """
    dtype = wire_dtype(arr.dtype)
    data = np.ascontiguousarray(arr, dtype=dtype)  # no copy for a C-contiguous little-endian array
    shape = arr.shape
    dims = bytes((0x90 + len(shape),)) if len(shape) < 16 else b"\xdc" + len(shape).to_bytes(2, "big")
    head = b"\x93\xa3" + dtype.encode() + dims + b"".join(map(_packed_uint, shape))
    return msgpack.ExtType(ARRAY_EXT_TYPE, b"".join((head, _bin_header(data.nbytes), data.data)))


# --- decoding --------------------------------------------------------------------


def _uint(data: bytes, pos: int, size: int) -> tuple[int, int]:
    end = pos + size
    if end > len(data):
        raise IndexError("truncated")
    return int.from_bytes(data[pos:end], "big"), end


def _length(data: bytes, pos: int, fix_lo: int, fix_hi: int, wide: dict[int, int]) -> tuple[int, int]:
    """A str or array length: a fix form (fix_lo + length) or a header byte and 2-4 length bytes."""
    byte = data[pos]
    if fix_lo <= byte <= fix_hi:
        return byte - fix_lo, pos + 1
    if byte in wide:
        return _uint(data, pos + 1, wide[byte])
    raise ValueError(f"unexpected type byte 0x{byte:02x}")


_ARRAY = (0x90, 0x9F, {0xDC: 2, 0xDD: 4})
_STR = (0xA0, 0xBF, {0xD9: 1, 0xDA: 2, 0xDB: 4})
_BIN_SIZES = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # bin 8/16/32: bytes of the length after the type byte
_UINTS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_INTS = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


def _integer(data: bytes, pos: int) -> tuple[int, int]:
    """Any MessagePack int: positive or negative fixint, uint 8-64, int 8-64."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    if byte >= 0xE0:
        return byte - 0x100, pos + 1
    if byte in _UINTS:
        return _uint(data, pos + 1, _UINTS[byte])
    if byte in _INTS:
        size = _INTS[byte]
        value, end = _uint(data, pos + 1, size)
        return value - (1 << (8 * size)) if value >> (8 * size - 1) else value, end
    raise ValueError(f"unexpected type byte 0x{byte:02x}")


def _array_head(data: bytes, max_dims: int) -> tuple[str, list[int], int]:
    """Read `[dtype, shape, ` of an ext 1 array in any MessagePack encoding: the dtype, the
    shape and where `data` starts."""
    try:
        count, pos = _length(data, 0, *_ARRAY)
        if count != 3:
            raise CodecError(f"an array ext must hold [dtype, shape, data], not {count} items")
        size, pos = _length(data, pos, *_STR)
        dtype = _DTYPE_BY_BYTES.get(data[pos : pos + size])
    except (IndexError, ValueError):
        raise DtypeError("an array ext must start with [dtype (a str), ...]") from None
    if dtype is None:
        shown = data[pos : pos + min(size, 16)]
        raise DtypeError(
            f"array dtype {shown!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_DTYPES))}"
        )
    try:
        ndims, pos = _length(data, pos + size, *_ARRAY)
        if ndims > max_dims:
            raise ShapeError(f"an array of {ndims} dimensions exceeds the limit of {max_dims}")
        shape = []
        for _ in range(ndims):
            dim, pos = _integer(data, pos)
            shape.append(dim)
    except (IndexError, ValueError):
        raise ShapeError("an array shape must be a list of ints") from None
    return dtype, shape, pos


#: The head every mainstream encoder writes: fixarray 3, fixstr 3 (the dtype), fixarray of ndims.
_CANONICAL = {b"\x93\xa3" + d.encode() + bytes([0x90 + n]): (d, n) for d in ALLOWED_DTYPES for n in range(16)}
_UINT_SIZES = {0xCC: 1, 0xCD: 2, 0xCE: 4}


def _canonical_head(data: bytes, max_dims: int) -> tuple[str, list[int], int] | None:
    """`_array_head` for the common encoding (dimensions as fixint or uint 8-32); None otherwise."""
    known = _CANONICAL.get(data[:6])
    if known is None or known[1] > max_dims:
        return None
    dtype, ndims = known
    shape, pos = [], 6
    for _ in range(ndims):
        byte = data[pos] if pos < len(data) else 0xC1
        if byte < 0x80:
            shape.append(byte)
            pos += 1
        elif byte in _UINT_SIZES:
            end = pos + 1 + _UINT_SIZES[byte]
            shape.append(int.from_bytes(data[pos + 1 : end], "big"))
            pos = end
        else:
            return None
    return dtype, shape, pos


def unpack_array(data: bytes, max_dims: int, max_elements: int) -> np.ndarray[Any, Any]:
    """Decode the `[dtype, shape, data]` of an ext 1 array, viewing `data` without a copy."""
    dtype, shape, pos = _canonical_head(data, max_dims) or _array_head(data, max_dims)
    count = 1
    for dim in shape:
        if dim < 0:
            raise ShapeError(f"array shape {shape} has a negative dimension")
        count *= dim
    if count > max_elements:
        raise ElementLimitError(f"an array of {count} elements exceeds the limit of {max_elements}")
    if count == 0 and max(shape, default=0) > max_elements:  # empty, yet with an absurd dimension
        raise ShapeError(f"array shape {shape} has a dimension over {max_elements}")
    size_bytes = _BIN_SIZES.get(data[pos]) if pos < len(data) else None
    if size_bytes is None:
        raise ArrayDataError("array data must be a MessagePack bin")
    start = pos + 1 + size_bytes
    declared = int.from_bytes(data[pos + 1 : start], "big")
    needed = count * _ITEMSIZE[dtype]
    if declared != needed or start + declared != len(data):
        raise ArrayDataError(
            f"array data is {len(data) - start} bytes in a bin of {declared}; "
            f"shape {shape} of {dtype} needs {needed}"
        )
    arr = np.frombuffer(data, _NUMPY_DTYPES[dtype], count, start)
    return arr if len(shape) == 1 else arr.reshape(shape)


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
