"""PROTOCOL 2: MessagePack with numpy arrays as ext type 1, round trips and refusals."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agent.protocol import (
    ALLOWED_DTYPES,
    BodyError,
    CodecError,
    EncodeError,
    Limits,
    PayloadTooLarge,
    as_array,
    packb,
    unpackb,
)
from agent.protocol.errors import (
    ArrayDataError,
    DepthError,
    DtypeError,
    ElementLimitError,
    ExtTypeError,
    ShapeError,
)

DTYPES = ["<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"]


def test_the_allowed_dtypes_are_those_of_the_protocol() -> None:
    assert set(ALLOWED_DTYPES) == set(DTYPES)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=8, min_side=0, max_side=4),
    )
)
def test_arrays_of_every_allowed_dtype_and_shape_round_trip(arr: np.ndarray[Any, Any]) -> None:
    out = unpackb(packb({"a": arr}))["a"]
    assert isinstance(out, np.ndarray)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)  # NaN == NaN here
    assert not out.flags.writeable  # a view over the received bytes, not a copy


def test_the_wire_form_is_dtype_shape_data_in_ext_1() -> None:
    arr = np.arange(6, dtype="<i4").reshape(2, 3)
    ext = msgpack.unpackb(packb(arr))
    assert isinstance(ext, msgpack.ExtType) and ext.code == 1
    assert msgpack.unpackb(ext.data) == ["<i4", [2, 3], arr.tobytes()]


def test_non_contiguous_and_big_endian_arrays_are_sent_little_endian_c_order() -> None:
    arr = np.arange(12, dtype=">f8").reshape(3, 4)[:, ::2]
    out = unpackb(packb(arr))
    assert out.dtype.str == "<f8"
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("dtype", ["<c16", "<u4", "<u8", "?", "<M8[s]"])
def test_arrays_of_other_dtypes_are_refused_when_encoding(dtype: str) -> None:
    with pytest.raises(EncodeError):
        packb(np.zeros(3, dtype=dtype))


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_plain_values_round_trip(value: Any) -> None:
    assert unpackb(packb(value)) == value


def test_numpy_scalars_become_plain_numbers() -> None:
    out = unpackb(packb({"i": np.int64(7), "f": np.float32(0.5), "u": np.uint8(3)}))
    assert out == {"i": 7, "f": 0.5, "u": 3}
    assert type(out["i"]) is int


def ext_array(dtype: Any, shape: Any, data: Any) -> bytes:
    return msgpack.packb(msgpack.ExtType(1, msgpack.packb([dtype, shape, data], use_bin_type=True)))


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (ext_array("<c16", [1], b"\0" * 16), DtypeError),
        (ext_array(">f8", [1], b"\0" * 8), DtypeError),
        (ext_array(b"<f8", [1], b"\0" * 8), DtypeError),
        (ext_array(["<f8"] * 50, [1], b"\0" * 8), DtypeError),
        (ext_array("<f8", [2], b"\0" * 8), ArrayDataError),
        (ext_array("<f8", [1], b"\0" * 9), ArrayDataError),
        (ext_array("<f8", [1], "text"), ArrayDataError),
        (ext_array("<f8", [-1], b""), ShapeError),
        (ext_array("<f8", "3", b"\0" * 24), ShapeError),
        (ext_array("<f8", [1.0], b"\0" * 8), ShapeError),
        (ext_array("<f8", [True], b"\0" * 8), ShapeError),
        (ext_array("<f8", [1] * 9, b"\0" * 8), ShapeError),
        (ext_array("<f8", [1 << 40], b""), ElementLimitError),
        (ext_array("<f8", [0, 1 << 40], b""), ShapeError),
        (ext_array("<f8", [1 << 11, 1 << 11], b""), ElementLimitError),
        (msgpack.packb(msgpack.ExtType(1, b"\x92\xa3<f8\x91\x01")), CodecError),
        (msgpack.packb(msgpack.ExtType(1, b"")), DtypeError),
        (msgpack.packb(msgpack.ExtType(7, b"x")), ExtTypeError),
        (msgpack.packb(msgpack.Timestamp(1, 0)), ExtTypeError),
        (msgpack.packb({"at": [msgpack.Timestamp(1, 0)]}), ExtTypeError),
        (b"\x91" * 40 + b"\x90", DepthError),
        (b"\x91" * 2000 + b"\x90", DepthError),
        (b"\xdd\x00\x0f\xff\xff", ElementLimitError),
        (b"\xc1", CodecError),
        (b"\x92\x01", CodecError),
        (b"\x01\x02", CodecError),
        (b"\xa2\xff\xfe", CodecError),
        (b"\x81\x01\x02", CodecError),
        (b"\x81\x90\x02", CodecError),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_decoding_refuses_with_the_specific_codec_error(payload: bytes, error: type[CodecError]) -> None:
    with pytest.raises(error) as info:
        unpackb(payload)
    assert info.value.code == "malformed"


def test_limits_are_configurable_and_checked_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        unpackb(b"\xc4\x10" + b"\0" * 16, Limits(max_payload=8))
    assert info.value.code == "too_large"
    assert unpackb(b"\xc4\x10" + b"\0" * 16, Limits(max_payload=18)) == b"\0" * 16
    with pytest.raises(ElementLimitError):
        unpackb(packb(list(range(100))), Limits(max_elements=10))
    with pytest.raises(ElementLimitError):
        unpackb(packb({str(i): i for i in range(11)}), Limits(max_elements=10))
    with pytest.raises(ElementLimitError):
        unpackb(packb(np.zeros(11)), Limits(max_elements=10))
    assert len(unpackb(packb(np.zeros(10)), Limits(max_elements=10))) == 10
    with pytest.raises(DepthError):
        unpackb(packb({"a": {"b": {"c": 1}}}), Limits(max_depth=2))
    assert unpackb(packb({"a": {"b": 1}}), Limits(max_depth=2)) == {"a": {"b": 1}}
    with pytest.raises(ShapeError):
        unpackb(packb(np.zeros((1, 1, 1))), Limits(max_dims=2))
    with pytest.raises(ValueError):
        Limits(max_depth=0)


@pytest.mark.parametrize("depth", [2, 5, 31, 32])
@pytest.mark.parametrize("kind", ["lists", "maps", "maps in lists"])
def test_nesting_is_accepted_up_to_the_depth_limit_and_refused_beyond(depth: int, kind: str) -> None:
    def nest(levels: int) -> Any:
        value: Any = 0
        for i in range(levels):
            as_list = kind == "lists" or (kind == "maps in lists" and i % 2)
            value = [value] if as_list else {"k": value}
        return value

    assert unpackb(packb(nest(depth))) == nest(depth)
    with pytest.raises(DepthError):
        unpackb(
            packb(nest(depth)),
            Limits(max_depth=depth - 1) if depth > 1 else Limits(max_depth=1, max_payload=1),
        )
    with pytest.raises(DepthError):
        unpackb(packb([nest(32)]))


def test_arrays_count_as_leaves_whatever_their_shape() -> None:
    value = {"a": [np.zeros((2, 2, 2))]}
    assert unpackb(packb(value), Limits(max_depth=2))["a"][0].shape == (2, 2, 2)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_only_codec_errors(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        unpackb(data)


def test_deep_nesting_inside_maps_and_lists_is_bounded() -> None:
    value: Any = 1
    for i in range(50):
        value = {"k": value} if i % 2 else [value]
    with pytest.raises(CodecError):
        unpackb(packb(value))


def test_floats_keep_nan_and_infinity() -> None:
    out = unpackb(packb([math.nan, math.inf, -math.inf]))
    assert math.isnan(out[0]) and out[1:] == [math.inf, -math.inf]


def _head(dtype: bytes, dims: list[bytes]) -> bytes:
    return b"\x93" + dtype + b"\x90"[:0] + bytes([0x90 + len(dims)]) + b"".join(dims)


@pytest.mark.parametrize(
    "head",
    [
        b"\x93\xa3<f8\x92\x02\x03",  # what msgpack writes
        b"\x93\xd9\x03<f8\x92\x02\x03",  # dtype as str8
        b"\x93\xda\x00\x03<f8\x92\x02\x03",  # dtype as str16
        b"\xdc\x00\x03\xa3<f8\xdc\x00\x02\x02\x03",  # arrays as array16
        b"\xdd\x00\x00\x00\x03\xa3<f8\x92\xcc\x02\xcf" + (3).to_bytes(8, "big"),  # uint8, uint64
        b"\x93\xa3<f8\x92\xd0\x02\xd1\x00\x03",  # non-negative ints in signed encodings
    ],
)
def test_every_valid_encoding_of_the_array_head_decodes(head: bytes) -> None:
    data = np.arange(6.0).reshape(2, 3)
    ext = msgpack.ExtType(1, head + b"\xc4\x30" + data.tobytes())
    np.testing.assert_array_equal(unpackb(msgpack.packb(ext)), data)
    assert unpackb(msgpack.packb(msgpack.ExtType(1, head + b"\xc5\x00\x30" + data.tobytes()))).shape == (2, 3)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5),
    ),
    st.data(),
)
def test_mutated_array_payloads_decode_or_raise_a_codec_error(
    arr: np.ndarray[Any, Any], data: st.DataObject
) -> None:
    payload = bytearray(packb({"a": arr}))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(CodecError):
        unpackb(bytes(payload))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(["<f8", "<i8"]).map(np.dtype),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
        elements={"min_value": -1000, "max_value": 1000},
    )
)
def test_plain_nested_lists_are_accepted_wherever_an_array_is(arr: np.ndarray[Any, Any]) -> None:
    decoded = unpackb(packb({"signal": arr.tolist()}))["signal"]
    np.testing.assert_array_equal(as_array(decoded, dtype=None), arr)
    np.testing.assert_array_equal(as_array(decoded), arr.astype("<f8"))
    np.testing.assert_array_equal(as_array(unpackb(packb(arr))), arr.astype("<f8"))


@pytest.mark.parametrize(
    "value", [[1, [2]], ["a", "b"], [None], [b"x"], [1, 2**70], "1.5", None, {"a": 1}, True]
)
def test_what_is_not_an_array_of_numbers_is_refused_naming_the_parameter(value: Any) -> None:
    with pytest.raises(BodyError) as info:
        as_array(value, field="signal")
    assert info.value.field == "signal"
    assert info.value.code == "invalid_params"
