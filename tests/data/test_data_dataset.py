"""MultimodalDataset: validation on construction, selection, modality and subject views."""

from __future__ import annotations

import numpy as np
import pytest

from mmbind.client.data.dataset import MultimodalDataset
from mmbind.errors import ConfigError, DataError, UnknownModalityError


def _dataset(n: int = 6, seed: int = 0) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    return MultimodalDataset(
        windows={
            "acc": rng.normal(size=(n, 120, 3)).astype(np.float32),
            "skeleton": rng.normal(size=(n, 40, 60)).astype(np.float32),
        },
        labels=np.arange(n) % 3,
        subjects=np.repeat(np.arange(1, n // 2 + 1), 2),
        trials=np.tile([1, 2], n // 2),
        num_classes=3,
        class_names=("a", "b", "c"),
    )


def test_valid_dataset_exposes_length_modalities_and_dtypes() -> None:
    # Prepare / Execute
    ds = _dataset()

    # Assert
    assert len(ds) == 6
    assert ds.modalities == ("acc", "skeleton")
    assert ds.subject_ids == (1, 2, 3)
    assert ds.windows["acc"].dtype == np.float32
    assert ds.labels.dtype == np.int64


def test_nan_window_raises_data_error_naming_modality_and_index() -> None:
    # Prepare
    ds = _dataset()
    skel = ds.windows["skeleton"].copy()
    skel[4, 10, 7] = np.nan

    # Execute / Assert
    with pytest.raises(DataError, match=r"'skeleton'.*sample index 4"):
        MultimodalDataset(
            windows={"acc": ds.windows["acc"], "skeleton": skel},
            labels=ds.labels,
            subjects=ds.subjects,
            trials=ds.trials,
            num_classes=3,
        )


def test_inf_window_raises_data_error() -> None:
    ds = _dataset()
    acc = ds.windows["acc"].copy()
    acc[0, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"'acc'.*sample index 0"):
        MultimodalDataset({"acc": acc}, ds.labels, ds.subjects, ds.trials, 3)


def test_wrong_window_shape_raises_data_error_with_expected_shape() -> None:
    ds = _dataset()
    with pytest.raises(DataError, match=r"expected \(6, 120, 3\)"):
        MultimodalDataset({"acc": ds.windows["acc"][:, :100]}, ds.labels, ds.subjects, ds.trials, 3)


def test_length_mismatch_raises_data_error() -> None:
    ds = _dataset()
    with pytest.raises(DataError, match="subjects has 5 entries"):
        MultimodalDataset(ds.windows, ds.labels, ds.subjects[:5], ds.trials, 3)


def test_label_out_of_range_raises_data_error() -> None:
    ds = _dataset()
    with pytest.raises(DataError, match=r"label 3 is out of range.*\[0, 2\]"):
        MultimodalDataset(ds.windows, ds.labels + 1, ds.subjects, ds.trials, 3)


def test_unknown_modality_key_raises() -> None:
    ds = _dataset()
    with pytest.raises(UnknownModalityError, match="'lidar'"):
        MultimodalDataset({"lidar": ds.windows["acc"]}, ds.labels, ds.subjects, ds.trials, 3)


def test_class_names_must_match_num_classes() -> None:
    ds = _dataset()
    with pytest.raises(DataError, match="class_names has 2 names"):
        MultimodalDataset(ds.windows, ds.labels, ds.subjects, ds.trials, 3, ("a", "b"))


def test_select_by_mask_and_indices_agree_and_copy() -> None:
    # Prepare
    ds = _dataset()
    mask = ds.labels == 1

    # Execute
    by_mask = ds.select(mask)
    by_idx = ds.select(np.flatnonzero(mask))
    by_mask.windows["acc"][:] = 0.0

    # Assert
    assert len(by_mask) == len(by_idx) == 2
    np.testing.assert_array_equal(by_idx.labels, [1, 1])
    assert np.abs(ds.windows["acc"]).sum() > 0  # the parent is untouched


def test_select_rejects_bad_mask_and_indices() -> None:
    ds = _dataset()
    with pytest.raises(ConfigError, match=r"expected \(6,\)"):
        ds.select(np.ones(5, dtype=bool))
    with pytest.raises(ConfigError, match="indices must lie"):
        ds.select(np.array([0, 6]))
    with pytest.raises(ConfigError, match="integer indices"):
        ds.select(np.array([0.5]))


def test_with_modalities_keeps_order_and_rejects_absent() -> None:
    ds = _dataset()
    assert ds.with_modalities(["skeleton"]).modalities == ("skeleton",)
    with pytest.raises(DataError, match=r"gyro.*it holds: acc, skeleton"):
        ds.with_modalities(("acc", "gyro"))
    with pytest.raises(UnknownModalityError):
        ds.with_modalities(("sonar",))


def test_for_subjects_filters_and_rejects_absent_subject() -> None:
    ds = _dataset()
    sub = ds.for_subjects([3, 1])
    assert sub.subject_ids == (1, 3)
    assert len(sub) == 4
    with pytest.raises(DataError, match=r"subjects \[9\]"):
        ds.for_subjects([1, 9])
