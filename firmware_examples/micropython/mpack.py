"""The MessagePack subset of the edge task protocol (PROTOCOL 2), for MicroPython.

Only what a device needs: nil, bool, int (to 64 bits), float 64 (float 32 decoded too), str,
bin, array, map and ext type 1 (numeric arrays, as `Array`). Encoding writes each int in its
smallest form and keeps a map's iteration order (build bodies as `OrderedDict` when the bytes
must match another encoder's, as the test vectors do; a signature needs no particular order).
Decoding refuses truncated or trailing bytes, other types and nesting past `MAX_DEPTH` with
`MpackError`. No state: safe from any thread or interrupt-free context.
"""

import struct

MAX_DEPTH = 32
EXT_NDARRAY = 1
# numpy dtype string -> struct format of one element (PROTOCOL 2's dtypes)
DTYPES = {
    "<f8": "<d",
    "<f4": "<f",
    "<i8": "<q",
    "<i4": "<i",
    "<i2": "<h",
    "<u2": "<H",
    "|i1": "b",
    "|u1": "B",
}
_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


class MpackError(ValueError):
    """Bytes that are not a value of the subset, or a value the subset cannot encode."""


class Array:
    """A numeric array (ext type 1): `dtype` one of `DTYPES`, `shape` a list of ints and
    `values` nested lists of numbers in C order, as numpy's `tolist()` gives them."""

    def __init__(self, dtype, shape, values):
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise MpackError("ndarray: unsupported dtype " + repr(dtype))
        self.dtype = dtype
        self.shape = list(shape)
        self.values = values

    def __eq__(self, other):
        return isinstance(other, Array) and (self.dtype, self.shape, self.values) == (
            other.dtype,
            other.shape,
            other.values,
        )

    def __repr__(self):
        return f"Array({self.dtype!r}, {self.shape!r}, {self.values!r})"


# --- encoding ---------------------------------------------------------------------------------------


def _head(out, size, fix, fix_limit, codes):
    """A length header: the fix form below `fix_limit`, else the 8/16/32-bit form in `codes`."""
    if size < fix_limit:
        out.append(fix | size)
    elif size < 0x100 and codes[0]:
        out.append(codes[0])
        out.append(size)
    elif size < 0x10000:
        out.append(codes[1])
        out.extend(struct.pack(">H", size))
    else:
        out.append(codes[2])
        out.extend(struct.pack(">I", size))


def _int(out, n):
    if 0 <= n < 0x80 or -32 <= n < 0:
        out.append(n & 0xFF)
        return
    for low, high, code, fmt in _INT_FORMS:
        if low <= n <= high:
            out.append(code)
            out.extend(struct.pack(fmt, n))
            return
    raise MpackError("int out of the 64-bit range: " + str(n))


_INT_FORMS = (
    (0, 0xFF, 0xCC, ">B"),
    (0, 0xFFFF, 0xCD, ">H"),
    (0, 0xFFFFFFFF, 0xCE, ">I"),
    (0, 0xFFFFFFFFFFFFFFFF, 0xCF, ">Q"),
    (-0x80, 0x7F, 0xD0, ">b"),
    (-0x8000, 0x7FFF, 0xD1, ">h"),
    (-0x80000000, 0x7FFFFFFF, 0xD2, ">i"),
    (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF, 0xD3, ">q"),
)


def _flat(values, out):
    if isinstance(values, (list, tuple)):
        for v in values:
            _flat(v, out)
    else:
        out.append(values)
    return out


def _ext(out, code, data):
    size = len(data)
    if size in _FIXEXT:
        out.append(_FIXEXT[size])
    else:
        _head(out, size, 0, 0, (0xC7, 0xC8, 0xC9))
    out.append(code)
    out.extend(data)


def _array(out, arr):
    flat = _flat(arr.values, [])
    count = 1
    for n in arr.shape:
        count *= n
    if count != len(flat):
        raise MpackError(f"ndarray: {len(flat)} values for shape {arr.shape}")
    fmt = DTYPES[arr.dtype]
    data = bytearray()
    for v in flat:
        data.extend(struct.pack(fmt, v))
    _ext(out, EXT_NDARRAY, packb([arr.dtype, arr.shape, bytes(data)]))


def _pack(out, value, depth):
    if depth > MAX_DEPTH:
        raise MpackError(f"nested deeper than {MAX_DEPTH}")
    if value is None:
        out.append(0xC0)
    elif value is True or value is False:
        out.append(0xC3 if value else 0xC2)
    elif isinstance(value, int):
        _int(out, value)
    elif isinstance(value, float):
        out.append(0xCB)
        out.extend(struct.pack(">d", value))
    elif isinstance(value, str):
        data = value.encode()
        _head(out, len(data), 0xA0, 32, (0xD9, 0xDA, 0xDB))
        out.extend(data)
    elif isinstance(value, (bytes, bytearray)):
        _head(out, len(value), 0, 0, (0xC4, 0xC5, 0xC6))
        out.extend(value)
    else:
        _pack_container(out, value, depth)


def _pack_container(out, value, depth):
    if isinstance(value, (list, tuple)):
        _head(out, len(value), 0x90, 16, (0, 0xDC, 0xDD))
        for v in value:
            _pack(out, v, depth + 1)
    elif isinstance(value, dict):
        _head(out, len(value), 0x80, 16, (0, 0xDE, 0xDF))
        for k, v in value.items():
            _pack(out, k, depth + 1)
            _pack(out, v, depth + 1)
    elif isinstance(value, Array):
        _array(out, value)
    else:
        raise MpackError("cannot encode a " + type(value).__name__)


def packb(value):
    """The MessagePack bytes of `value`."""
    out = bytearray()
    _pack(out, value, 0)
    return bytes(out)


# --- decoding ---------------------------------------------------------------------------------------

# first byte -> (struct format of the fixed-size value or length, what it is)
_FIXED = {
    0xCA: (">f", "float"),
    0xCB: (">d", "float"),
    0xCC: (">B", "int"),
    0xCD: (">H", "int"),
    0xCE: (">I", "int"),
    0xCF: (">Q", "int"),
    0xD0: (">b", "int"),
    0xD1: (">h", "int"),
    0xD2: (">i", "int"),
    0xD3: (">q", "int"),
    0xC4: (">B", "bin"),
    0xC5: (">H", "bin"),
    0xC6: (">I", "bin"),
    0xD9: (">B", "str"),
    0xDA: (">H", "str"),
    0xDB: (">I", "str"),
    0xDC: (">H", "array"),
    0xDD: (">I", "array"),
    0xDE: (">H", "map"),
    0xDF: (">I", "map"),
    0xC7: (">B", "ext"),
    0xC8: (">H", "ext"),
    0xC9: (">I", "ext"),
}
_CONSTANTS = {0xC0: None, 0xC2: False, 0xC3: True}


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        end = self.pos + n
        if end > len(self.data):
            raise MpackError(f"truncated at byte {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def number(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]


def _kind(r, b):
    """(kind, number or length) of the value whose first byte is `b`."""
    if b < 0x80:
        return "int", b
    if b >= 0xE0:
        return "int", b - 0x100
    if b & 0xF0 == 0x80:
        return "map", b & 0x0F
    if b & 0xF0 == 0x90:
        return "array", b & 0x0F
    if b & 0xE0 == 0xA0:
        return "str", b & 0x1F
    if 0xD4 <= b <= 0xD8:
        return "ext", 1 << (b - 0xD4)
    if b not in _FIXED:
        raise MpackError(f"unsupported type byte 0x{b:02x}")
    fmt, kind = _FIXED[b]
    return kind, r.number(fmt)


def _unpack(r, depth):
    if depth > MAX_DEPTH:
        raise MpackError(f"nested deeper than {MAX_DEPTH}")
    b = r.take(1)[0]
    if b in _CONSTANTS:
        return _CONSTANTS[b]
    kind, n = _kind(r, b)
    if kind in ("int", "float"):
        return n
    if kind == "bin":
        return bytes(r.take(n))
    if kind == "str":
        try:
            return str(r.take(n), "utf-8")
        except UnicodeError:
            raise MpackError("str is not UTF-8") from None
    if kind == "array":
        return [_unpack(r, depth + 1) for _ in range(n)]
    if kind == "map":
        out = {}
        for _ in range(n):
            key = _unpack(r, depth + 1)
            if not isinstance(key, (str, int, bytes)):
                raise MpackError("map key of type " + type(key).__name__)
            out[key] = _unpack(r, depth + 1)
        return out
    code = r.take(1)[0]
    return _ext_value(code, r.take(n))


def _nest(flat, shape):
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _ext_value(code, data):
    if code != EXT_NDARRAY:
        raise MpackError(f"unsupported ext type {code}")
    parts = unpackb(data)
    if not (isinstance(parts, list) and len(parts) == 3):
        raise MpackError("ndarray: ext 1 must hold [dtype, shape, data]")
    dtype, shape, raw = parts
    if (
        not isinstance(dtype, str)
        or dtype not in DTYPES
        or not isinstance(raw, bytes)
        or not isinstance(shape, list)
    ):
        raise MpackError(f"ndarray: bad dtype {dtype!r}, shape or data")
    fmt = DTYPES[dtype]
    size = struct.calcsize(fmt)
    count = 1
    for n in shape:
        if not isinstance(n, int) or n < 0:
            raise MpackError(f"ndarray: bad shape {shape!r}")
        count *= n
    if count * size != len(raw):
        raise MpackError(f"ndarray: {len(raw)} bytes for shape {shape} of {dtype}")
    flat = [struct.unpack_from(fmt, raw, i * size)[0] for i in range(count)]
    return Array(dtype, shape, flat[0] if not shape else _nest(flat, shape))


def unpackb(data):
    """The value of `data`, which must hold exactly one MessagePack value."""
    r = _Reader(data)
    value = _unpack(r, 0)
    if r.pos != len(data):
        raise MpackError(f"{len(data) - r.pos} bytes after the value")
    return value
