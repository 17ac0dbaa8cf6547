"""Packing numbers, arrays and torch states into Flower records, and reading them back.

The building blocks of :mod:`mmbind.wire`'s messages: arrays travel in ``ArrayRecord``s
(model states packed into one buffer per dtype), numbers and settings in
``MetricRecord``s and ``ConfigRecord``s. A missing or mistyped entry is a
:class:`~mmbind.errors.FederationError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from numpy.typing import NDArray

from mmbind.errors import FederationError


def array_record(content: RecordDict, key: str) -> ArrayRecord:
    """The array record ``key`` of a message; a missing one is a FederationError."""
    record = content.array_records.get(key)
    if record is None:
        raise FederationError(
            f"message lacks its {key!r} arrays; it has {sorted(content.array_records)[:8]}"
        )
    return record


def config_record(content: RecordDict, key: str) -> ConfigRecord:
    """The config record ``key`` of a message; a missing one is a FederationError."""
    record = content.config_records.get(key)
    if record is None:
        raise FederationError(f"message lacks its {key!r} settings")
    return record


def metric_record(content: RecordDict, key: str) -> MetricRecord:
    """The metric record ``key`` of a message; a missing one is a FederationError."""
    record = content.metric_records.get(key)
    if record is None:
        raise FederationError(f"message lacks its {key!r} metrics")
    return record


def array(arrays: Mapping[str, NDArray[np.generic]], key: str) -> NDArray[np.generic]:
    """Entry ``key`` of unpacked arrays; a missing one is a FederationError."""
    if key not in arrays:
        raise FederationError(f"message lacks array {key!r}; it has {sorted(arrays)[:8]}")
    return arrays[key]


def names(record: ConfigRecord, key: str) -> list[str]:
    """A comma-separated list entry of a config record (empty when absent)."""
    value = record.get(key, "")
    if not isinstance(value, str):
        raise FederationError(f"message entry {key!r} must be a string; got {value!r}")
    return [v for v in value.split(",") if v]


def arrays_to_record(arrays: Mapping[str, NDArray[np.generic]]) -> ArrayRecord:
    """Pack named numpy arrays into an ``ArrayRecord``."""
    return ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def record_to_arrays(record: ArrayRecord) -> dict[str, NDArray[np.generic]]:
    """Unpack an ``ArrayRecord`` made by :func:`arrays_to_record`."""
    return {k: v.numpy() for k, v in record.items()}


STATE_LAYOUT = "layout"
"""Array of a packed state record holding its tensors' names, dtypes and shapes (JSON)."""


def state_to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """Pack a torch ``state_dict`` (detached, on CPU) into one flat array per dtype.

    Flower sends every array of a message as its own object, each with its own
    round trip between ServerApp, SuperLink, SuperNode and ClientApp. A fusion model
    has ~70 tensors and a message may carry several models: packing them into one
    buffer per dtype (plus a small JSON layout) turns hundreds of objects per message
    into a handful, which is most of a deployment round's overhead. Values round-trip
    exactly.
    """
    layout: list[list[object]] = []
    parts: dict[str, list[NDArray[np.generic]]] = {}
    for name, tensor in state.items():
        arr = tensor.detach().cpu().numpy()
        dtype = arr.dtype.str
        layout.append([name, dtype, list(arr.shape)])
        parts.setdefault(dtype, []).append(arr.reshape(-1))
    arrays: dict[str, NDArray[np.generic]] = {
        f"flat{dtype}": np.concatenate(chunks) for dtype, chunks in parts.items()
    }
    arrays[STATE_LAYOUT] = np.frombuffer(json.dumps(layout).encode(), dtype=np.uint8)
    return arrays_to_record(arrays)


def record_to_state(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """Unpack a torch ``state_dict`` packed by :func:`state_to_record`.

    Raises
    ------
    FederationError
        When the record is not a packed state or its buffers do not match its layout.
    """
    arrays = record_to_arrays(record)
    if STATE_LAYOUT not in arrays:
        raise FederationError(
            f"expected a packed model state (with {STATE_LAYOUT!r}); "
            f"got arrays {sorted(arrays)[:5]}"
        )
    try:
        layout = json.loads(bytes(np.asarray(arrays[STATE_LAYOUT], np.uint8)).decode())
        offsets: dict[str, int] = {}
        state: dict[str, torch.Tensor] = {}
        for name, dtype, shape in layout:
            flat = arrays[f"flat{dtype}"]
            start = offsets.get(dtype, 0)
            size = int(np.prod(shape, dtype=np.int64))
            if start + size > flat.size:
                raise ValueError(f"buffer {dtype} too short for {name}")
            chunk = np.array(flat[start : start + size], copy=True).reshape(shape)
            state[name] = torch.from_numpy(chunk)
            offsets[dtype] = start + size
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise FederationError(f"corrupt packed model state: {exc}") from None
    if any(offsets[d] != arrays[f"flat{d}"].size for d in offsets):
        raise FederationError("corrupt packed model state: buffers longer than the layout")
    return state


def get_int(record: ConfigRecord | MetricRecord, key: str, default: int | None = None) -> int:
    """An integer entry of a record; a missing or mistyped entry is a FederationError."""
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FederationError(f"message entry {key!r} must be a number; got {value!r}")
    return int(value)


def get_float(record: ConfigRecord | MetricRecord, key: str, default: float | None = None) -> float:
    """A float entry of a record; a missing or mistyped entry is a FederationError."""
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FederationError(f"message entry {key!r} must be a number; got {value!r}")
    return float(value)


def get_str(record: ConfigRecord, key: str, default: str | None = None) -> str:
    """A string entry of a record; a missing or mistyped entry is a FederationError."""
    value = record.get(key, default)
    if not isinstance(value, str):
        raise FederationError(f"message entry {key!r} must be a string; got {value!r}")
    return value


def get_bool(record: ConfigRecord, key: str, default: bool = False) -> bool:
    """A boolean entry of a record (absent: ``default``)."""
    value = record.get(key, default)
    if not isinstance(value, bool):
        raise FederationError(f"message entry {key!r} must be a boolean; got {value!r}")
    return value
