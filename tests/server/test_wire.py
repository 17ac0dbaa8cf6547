"""The Flower message contract's packing of model states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from mmbind import wire
from mmbind.binding.fusion import FusionModel
from mmbind.errors import FederationError


def test_state_round_trips_exactly_in_a_few_arrays() -> None:
    # Prepare
    torch.manual_seed(0)
    state = {
        **FusionModel(["acc", "gyro", "skeleton"], 16, 8, 5).state_dict(),
        "steps": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
    }
    # Execute
    record = wire.state_to_record(state)
    back = wire.record_to_state(record)
    # Assert: one buffer per dtype plus the layout, every tensor bit-identical
    assert len(record) == 4
    assert list(back) == list(state)
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


def test_record_without_layout_is_a_clear_error() -> None:
    record = ArrayRecord(array_dict={"w": Array(np.zeros(3, np.float32))})
    with pytest.raises(FederationError, match="packed model state"):
        wire.record_to_state(record)


def test_truncated_buffer_is_a_clear_error() -> None:
    # Prepare: drop the last value of the float buffer
    arrays = wire.record_to_arrays(wire.state_to_record({"w": torch.ones(2, 3)}))
    arrays["flat<f4"] = arrays["flat<f4"][:-1]
    # Execute / Assert
    with pytest.raises(FederationError, match="corrupt packed model state"):
        wire.record_to_state(wire.arrays_to_record(arrays))
