"""Synthetic generator: shapes, determinism, and binding-relevant structure."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mmbind.client.data.dataset import MultimodalDataset
from mmbind.client.data.normalization import dataset_moments, normalize
from mmbind.client.data.synthetic import make_synthetic
from mmbind.errors import ConfigError, UnknownModalityError


def _unit_features(
    ds: MultimodalDataset, modality: str, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    x = normalize(ds.windows[modality], mean, std).reshape(len(ds), -1)
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def _nn_pairing_accuracy(ds: MultimodalDataset, a: list[int], b: list[int]) -> float:
    """Share of group-``a`` samples whose cosine nearest neighbour on acc in ``b`` has its class."""
    m = dataset_moments(ds)["acc"]
    da, db = ds.for_subjects(a), ds.for_subjects(b)
    sim = _unit_features(da, "acc", m.mean, m.std) @ _unit_features(db, "acc", m.mean, m.std).T
    return float(np.mean(db.labels[sim.argmax(axis=1)] == da.labels))


def _ridge_accuracy(ds: MultimodalDataset, train: np.ndarray, test: np.ndarray) -> float:
    """A ridge classifier on skeleton + gyro, trained on ``train``, scored on ``test``."""
    tr, te = ds.select(train), ds.select(test)
    feats = []
    for part in (tr, te):
        cols = []
        for mod in ("skeleton", "gyro"):
            mo = dataset_moments(tr)[mod]
            cols.append(normalize(part.windows[mod], mo.mean, mo.std).reshape(len(part), -1))
        feats.append(np.concatenate(cols, axis=1).astype(np.float64))
    x_tr, x_te = feats
    y = np.eye(ds.num_classes)[tr.labels] * 2 - 1
    w = x_tr.T @ np.linalg.solve(x_tr @ x_tr.T + 10.0 * np.eye(len(x_tr)), y)
    return float(np.mean((x_te @ w).argmax(axis=1) == te.labels))


def test_shapes_dtypes_and_metadata() -> None:
    # Execute
    ds = make_synthetic(num_classes=5, subjects=[2, 4, 9], trials=3, seed=7)

    # Assert
    assert len(ds) == 5 * 3 * 3
    assert ds.windows["acc"].shape == (45, 120, 3)
    assert ds.windows["gyro"].shape == (45, 120, 3)
    assert ds.windows["skeleton"].shape == (45, 40, 60)
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in ds.windows.values())
    assert ds.subject_ids == (2, 4, 9)
    assert set(ds.trials.tolist()) == {1, 2, 3}
    np.testing.assert_array_equal(np.bincount(ds.labels), [9] * 5)
    assert ds.num_classes == 5 and len(ds.class_names) == 5


def test_deterministic_per_seed_and_different_across_seeds() -> None:
    a, b, c = make_synthetic(seed=11), make_synthetic(seed=11), make_synthetic(seed=12)
    for m in a.modalities:
        np.testing.assert_array_equal(a.windows[m], b.windows[m])
        assert not np.allclose(a.windows[m], c.windows[m])


def test_subject_data_do_not_depend_on_other_subjects_or_modalities() -> None:
    full = make_synthetic(seed=5)
    alone = make_synthetic(seed=5, subjects=[3], modalities=("gyro",))
    np.testing.assert_array_equal(full.for_subjects([3]).windows["gyro"], alone.windows["gyro"])


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    make_synthetic(seed=0)
    assert time.perf_counter() - start < 2.0  # ~0.1 s on 2 cores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nn_pairing_on_acc_across_disjoint_subjects_far_above_chance(seed: int) -> None:
    # Prepare
    ds = make_synthetic(seed=seed)
    chance = 1.0 / ds.num_classes

    # Execute
    acc_12_34 = _nn_pairing_accuracy(ds, [1, 2], [3, 4])
    acc_56_78 = _nn_pairing_accuracy(ds, [5, 6], [7, 8])

    # Assert: measured 0.59 mean over seeds 0..9 (chance 0.17)
    assert (acc_12_34 + acc_56_78) / 2 > 2.0 * chance


def test_subject_shift_hurts_a_few_label_classifier() -> None:
    # Prepare
    accs = {"within": [], "cross": []}
    for seed in range(3):
        ds = make_synthetic(seed=seed)
        c, t = np.isin(ds.subjects, [5, 6]), ds.trials

        # Execute
        accs["within"].append(_ridge_accuracy(ds, c & (t <= 3), c & (t > 3)))
        accs["cross"].append(_ridge_accuracy(ds, c, np.isin(ds.subjects, [7, 8])))

    # Assert: new trials of the same subjects are easy, new subjects much less so
    assert np.mean(accs["within"]) > 0.9
    assert np.mean(accs["cross"]) < np.mean(accs["within"]) - 0.15
    assert np.mean(accs["cross"]) > 2.0 / 6  # but the classes are still learnable


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="num_classes must be >= 2"):
        make_synthetic(num_classes=1)
    with pytest.raises(ConfigError, match="distinct"):
        make_synthetic(subjects=[1, 1])
    with pytest.raises(ConfigError, match="'mag'"):
        make_synthetic(modalities=("mag",))
    with pytest.raises(UnknownModalityError):
        make_synthetic(modalities=("radar",))
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        make_synthetic(seed=-1)
