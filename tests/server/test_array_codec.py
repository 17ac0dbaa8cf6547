"""The array codec (mmbind.server.array_codec): bitwise round trips and input checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mmbind.errors import ShapeError
from mmbind.server import array_codec

WIRE_DTYPES = [np.dtype(n) for n in array_codec.DTYPES]


def assert_same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # bitwise: NaNs and -0.0 survive too


@settings(max_examples=40, deadline=None)
@given(
    array=st.sampled_from(WIRE_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0))
    )
)
def test_array_bytes_round_trip(array: np.ndarray[Any, Any]) -> None:
    dtype, shape, data = array_codec.array_to_bytes(array)
    assert_same(array_codec.array_from_bytes(dtype, shape, data), array)


@pytest.mark.parametrize(
    ("dtype", "match"),
    [(np.int8, "unsupported dtype int8"), (np.complex64, "complex64"), (np.uint32, "uint32"),
     (object, "object"), ("U3", "<U3")],
)  # fmt: skip
def test_unsupported_dtypes_are_shape_errors(dtype: Any, match: str) -> None:
    with pytest.raises(ShapeError, match=match):
        array_codec.array_to_bytes(np.zeros(2, dtype=dtype), "x")
    with pytest.raises(ShapeError, match="allowed: float16, float32"):
        array_codec.check_dtype(np.dtype(dtype).name)


def test_declared_sizes_are_checked() -> None:
    assert array_codec.declared_nbytes("a", "float32", (3, 4)) == 48
    with pytest.raises(ShapeError, match=r"over the limit of 100 bytes"):
        array_codec.declared_nbytes("a", "float64", (20,), max_bytes=100)
    with pytest.raises(ShapeError, match="over the limit"):
        array_codec.declared_nbytes("a", "float32", (2**40, 2**40))
    with pytest.raises(ShapeError, match="at most 32"):
        array_codec.declared_nbytes("a", "bool", (1,) * 33)
    with pytest.raises(ShapeError, match="negative"):
        array_codec.declared_nbytes("a", "bool", (2, -1))
    with pytest.raises(ShapeError, match="needs 12 bytes; got 11"):
        array_codec.array_from_bytes("float32", (3,), b"\x00" * 11, "a")


def test_big_endian_arrays_are_encoded_little_endian_and_decoded_native() -> None:
    # Prepare
    big = np.array([1.0, -2.5], ">f8")

    # Execute
    dtype, shape, data = array_codec.array_to_bytes(big)
    back = array_codec.array_from_bytes(dtype, shape, data)

    # Assert
    assert data == np.array([1.0, -2.5], "<f8").tobytes()
    assert back.dtype.isnative and back.tolist() == [1.0, -2.5]


def test_bool_arrays_hold_only_zeros_and_ones() -> None:
    with pytest.raises(ShapeError, match="bytes other than 0 and 1"):
        array_codec.array_from_bytes("bool", (2,), b"\x01\x02", "flags")
