"""Binding diagnostics: pairing confusion and class-by-class similarity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmbind.binding.diagnostics import class_similarity, pairing_confusion
from mmbind.binding.fusion import FusionModel
from mmbind.errors import ShapeError


def test_pairing_confusion_counts_class_pairs() -> None:
    # Prepare
    query = np.array([0, 0, 1, 2, 2])
    partner = np.array([0, 1, 1, 2, 0])
    # Execute
    cm = pairing_confusion(query, partner, 3)
    # Assert: trace / sum is the pairing accuracy
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert np.trace(cm) / cm.sum() == pytest.approx(3 / 5)


def test_pairing_confusion_rejects_bad_labels() -> None:
    with pytest.raises(ShapeError, match=r"\[0, 3\)"):
        pairing_confusion(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ShapeError, match="differ in length"):
        pairing_confusion(np.array([0, 1]), np.array([0]), 3)


def test_class_similarity_matches_a_loop_reference() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4)).astype(np.float32)
    y = rng.normal(size=(5, 4)).astype(np.float32)
    xl, yl = rng.integers(0, 3, 7), np.array([0, 1, 1, 2, 2])
    # Execute
    got = class_similarity([(x, xl, y, yl)], 3)
    # Assert
    for i in range(3):
        for j in range(3):
            sims = [
                float(x[a] @ y[b]) for a in range(7) for b in range(5) if xl[a] == i and yl[b] == j
            ]
            if sims:
                assert got[i, j] == pytest.approx(np.mean(sims), rel=1e-5)
            else:
                assert np.isnan(got[i, j])


def test_class_similarity_rejects_mismatched_dims() -> None:
    with pytest.raises(ShapeError, match=r"\(N, D\)"):
        class_similarity([(np.zeros((2, 3)), [0, 1], np.zeros((2, 4)), [0, 1])], 2)


def test_mask_vector_marks_present_modalities() -> None:
    # Prepare
    torch.manual_seed(0)
    model = FusionModel(["acc", "gyro"], embed_dim=8, proj_dim=8, num_classes=3, mask_vector=True)
    x = torch.randn(2, 120, 3)
    # Execute
    feats = model.features({"gyro": x})
    logits = model({"gyro": x})
    # Assert: two zero/encoded blocks, then the mask (acc absent, gyro present)
    assert feats.shape == (2, model.feature_dim) == (2, 2 * 8 + 2)
    assert feats[:, -2:].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert torch.all(feats[:, :8] == 0)
    assert logits.shape == (2, 3)
