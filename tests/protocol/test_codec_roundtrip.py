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

from agent.protocol import ALLOWED_DTYPES, CodecError, EncodeError, Limits, PayloadTooLarge, packb, unpackb

DTYPES = ["<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"]


def test_the_allowed_dtypes_are_those_of_the_protocol() -> None:
    assert set(ALLOWED_DTYPES) == set(DTYPES)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
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
    ("payload", "why"),
    [
        (ext_array("<c16", [1], b"\0" * 16), "dtype"),
        (ext_array(">f8", [1], b"\0" * 8), "dtype"),
        (ext_array("<f8", [2], b"\0" * 8), "data length"),
        (ext_array("<f8", [1], b"\0" * 9), "data length"),
        (ext_array("<f8", [-1], b""), "negative shape"),
        (ext_array("<f8", "3", b"\0" * 24), "shape not a list"),
        (ext_array("<f8", [1.0], b"\0" * 8), "float in shape"),
        (ext_array("<f8", [1] * 9, b"\0" * 8), "too many dims"),
        (ext_array("<f8", [1 << 40], b""), "too many elements"),
        (ext_array("<f8", [1], "text"), "data not bin"),
        (msgpack.packb(msgpack.ExtType(1, b"\x92\xa3<f8\x91\x01")), "two items"),
        (msgpack.packb(msgpack.ExtType(7, b"x")), "unknown ext"),
        (b"\x91" * 40 + b"\x90", "too deep"),
        (b"\xc1", "reserved byte"),
        (b"\x92\x01", "truncated"),
        (b"\x01\x02", "trailing bytes"),
        (b"\xa2\xff\xfe", "invalid utf-8"),
        (b"\x81\x01\x02", "int map key"),
    ],
)
def test_decoding_refuses_with_a_codec_error(payload: bytes, why: str) -> None:
    with pytest.raises(CodecError):
        unpackb(payload)


def test_limits_are_configurable_and_checked_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        unpackb(b"\xc4\x10" + b"\0" * 16, Limits(max_payload=8))
    assert info.value.code == "too_large"
    with pytest.raises(CodecError):
        unpackb(packb(list(range(100))), Limits(max_elements=10))
    with pytest.raises(CodecError):
        unpackb(packb({"a": {"b": {"c": 1}}}), Limits(max_depth=2))
    assert unpackb(packb({"a": {"b": 1}}), Limits(max_depth=2)) == {"a": {"b": 1}}


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
