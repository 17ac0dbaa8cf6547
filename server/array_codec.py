"""The array codec: numpy arrays as ``(dtype name, shape, raw bytes)``, checked on the way in.

Arrays are stored and sent as raw bytes, C order, little endian, with their dtype name and
shape; only the dtypes of :data:`DTYPES` are accepted. Decoding validates everything: a bad
dtype, a shape that does not match the bytes or a declared size over the limit raises
:class:`~mmbind.errors.ShapeError` with a message that says what was wrong. The gRPC edge
(:mod:`mmbind.server.serde`) and the Redis store (:mod:`mmbind.server.redis_store`) share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmbind.errors import ShapeError

__all__ = [
    "DTYPES",
    "MAX_ARRAY_BYTES",
    "MAX_NDIM",
    "array_from_bytes",
    "array_to_bytes",
    "check_bool_bytes",
    "check_dtype",
    "declared_nbytes",
    "native",
    "wire_dtype",
]

MAX_ARRAY_BYTES = 4 << 30
"""Default cap on the declared size of one array (4 GiB)."""
MAX_NDIM = 32
"""Most dimensions an array may declare (numpy's own limit is 64)."""


DTYPES: dict[str, np.dtype[Any]] = {
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint64": np.dtype("<u8"),
    "bool": np.dtype("?"),
}
"""Dtype names accepted on the wire, with their little-endian numpy dtype."""


def check_dtype(name: str) -> np.dtype[Any]:
    """The little-endian numpy dtype of a wire dtype name.

    Raises
    ------
    ShapeError
        If ``name`` is not one of :data:`DTYPES`.
    """
    try:
        return DTYPES[name]
    except KeyError:
        allowed = ", ".join(DTYPES)
        raise ShapeError(f"unsupported dtype {name!r}; allowed: {allowed}") from None


def wire_dtype(array: NDArray[Any], key: str = "array") -> str:
    """The wire dtype name of ``array``; :class:`ShapeError` naming ``key`` if unsupported."""
    dtype = array.dtype
    for name, wire in DTYPES.items():
        if dtype.kind == wire.kind and dtype.itemsize == wire.itemsize:
            return name
    allowed = ", ".join(DTYPES)
    raise ShapeError(f"array {key!r} has unsupported dtype {dtype}; allowed: {allowed}")


def declared_nbytes(
    key: str, dtype: str, shape: Sequence[int], max_bytes: int = MAX_ARRAY_BYTES
) -> int:
    """Bytes an array of ``dtype`` and ``shape`` takes, after checking both.

    Raises
    ------
    ShapeError
        Unsupported dtype, negative dimension, too many dimensions, or a size
        over ``max_bytes`` (the limit is named in the message).
    """
    wire = check_dtype(dtype)
    if len(shape) > MAX_NDIM:
        raise ShapeError(f"array {key!r} declares {len(shape)} dimensions; at most {MAX_NDIM}")
    if any(int(d) < 0 for d in shape):
        raise ShapeError(f"array {key!r} declares a negative dimension in shape {tuple(shape)}")
    nbytes = math.prod(int(d) for d in shape) * wire.itemsize
    if nbytes > max_bytes:
        raise ShapeError(
            f"array {key!r} declares shape {tuple(int(d) for d in shape)} of {dtype} = "
            f"{nbytes} bytes, over the limit of {max_bytes} bytes"
        )
    return nbytes


def array_to_bytes(array: NDArray[Any], key: str = "array") -> tuple[str, tuple[int, ...], bytes]:
    """``(dtype name, shape, raw little-endian C-order bytes)`` of an array."""
    arr = np.asarray(array)
    name = wire_dtype(arr, key)
    data = np.ascontiguousarray(arr, dtype=DTYPES[name]).tobytes()
    return name, tuple(int(d) for d in arr.shape), data


def native(array: NDArray[Any]) -> NDArray[Any]:
    """``array`` in the machine's byte order (a no-op when it is already)."""
    if array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


def check_bool_bytes(key: str, raw: NDArray[np.uint8]) -> None:
    """:class:`ShapeError` naming ``key`` when a bool array's bytes are not all 0 or 1."""
    if raw.size and int(raw.max()) > 1:
        raise ShapeError(f"bool array {key!r} holds bytes other than 0 and 1")


def array_from_bytes(
    dtype: str,
    shape: Sequence[int],
    data: bytes | bytearray | memoryview,
    key: str = "array",
    max_bytes: int = MAX_ARRAY_BYTES,
) -> NDArray[Any]:
    """The array that :func:`array_to_bytes` encoded (a writable copy).

    Raises
    ------
    ShapeError
        Bad dtype or shape, or ``len(data)`` does not match them.
    """
    nbytes = declared_nbytes(key, dtype, shape, max_bytes)
    if len(data) != nbytes:
        raise ShapeError(
            f"array {key!r} of shape {tuple(shape)} and dtype {dtype} needs {nbytes} bytes; "
            f"got {len(data)}"
        )
    out = np.frombuffer(data, dtype=DTYPES[dtype]).reshape(tuple(int(d) for d in shape)).copy()
    if dtype == "bool":
        check_bool_bytes(key, out.reshape(-1).view(np.uint8))
    return native(out)
