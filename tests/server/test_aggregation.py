"""FedAvg of state dicts, whole and per modality."""

from __future__ import annotations

import pytest
import torch

from mmbind.errors import FederationError
from mmbind.server.aggregation import average_modality, weighted_average


def test_weighted_average_matches_hand_computation() -> None:
    # Prepare
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    # Execute
    out = weighted_average([a, b], [1.0, 3.0])
    # Assert
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 5.0]))
    assert int(out["n"]) == 5  # integer buffers take the maximum


def test_weighted_average_rejects_bad_input() -> None:
    a = {"w": torch.zeros(2)}
    with pytest.raises(FederationError, match="no node"):
        weighted_average([], [])
    with pytest.raises(FederationError, match="positive sum"):
        weighted_average([a], [0.0])
    with pytest.raises(FederationError, match="different parameter sets"):
        weighted_average([a, {"v": torch.zeros(2)}], [1.0, 1.0])


def test_average_modality_touches_only_that_modality() -> None:
    # Prepare
    glob = {
        "encoders.acc.w": torch.zeros(2),
        "heads.acc.w": torch.zeros(2),
        "encoders.gyro.w": torch.full((2,), 7.0),
        "classifier.w": torch.ones(2),
    }
    node = {k: v + 2.0 for k, v in glob.items()}
    # Execute
    out = average_modality(glob, [node], [1.0], "acc")
    # Assert
    torch.testing.assert_close(out["encoders.acc.w"], torch.full((2,), 2.0))
    torch.testing.assert_close(out["heads.acc.w"], torch.full((2,), 2.0))
    torch.testing.assert_close(out["encoders.gyro.w"], glob["encoders.gyro.w"])
    torch.testing.assert_close(out["classifier.w"], glob["classifier.w"])
