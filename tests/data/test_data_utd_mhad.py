"""UTD-MHAD loader: the real release (marked ``data``) and error handling on tmp files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from utd_mhad_files import UTD_DIR, needs_utd

from mmbind.client.data.utd_mhad import (
    UTD_MHAD_ACTIONS,
    clear_utd_mhad_cache,
    load_utd_mhad,
)
from mmbind.errors import ConfigError, DataError


def _write_pair(root: Path, action: int, subject: int, trial: int, frames: int = 90) -> None:
    rng = np.random.default_rng(action * 100 + subject * 10 + trial)
    (root / "Inertial").mkdir(parents=True, exist_ok=True)
    (root / "Skeleton").mkdir(parents=True, exist_ok=True)
    name = f"a{action}_s{subject}_t{trial}"
    scipy.io.savemat(
        root / "Inertial" / f"{name}_inertial.mat", {"d_iner": rng.normal(size=(frames, 6))}
    )
    scipy.io.savemat(
        root / "Skeleton" / f"{name}_skeleton.mat",
        {"d_skel": rng.normal(size=(20, 3, frames // 2))},
    )


# --- the real release ---------------------------------------------------------------


@pytest.mark.data
@needs_utd
def test_full_release_counts_shapes_and_labels() -> None:
    # Execute
    ds = load_utd_mhad(UTD_DIR)

    # Assert
    assert len(ds) == 861  # 27 x 8 x 4 minus a8_s1_t4, a23_s6_t4, a27_s8_t4
    assert ds.windows["acc"].shape == (861, 120, 3)
    assert ds.windows["gyro"].shape == (861, 120, 3)
    assert ds.windows["skeleton"].shape == (861, 40, 60)
    assert ds.labels.min() == 0 and ds.labels.max() == 26
    assert ds.num_classes == 27 and ds.class_names == UTD_MHAD_ACTIONS
    assert ds.class_names[0] == "right arm swipe to the left"
    assert ds.subject_ids == tuple(range(1, 9))
    assert set(ds.trials.tolist()) == {1, 2, 3, 4}


@pytest.mark.data
@needs_utd
def test_subjects_five_and_six_hold_215_samples() -> None:
    ds = load_utd_mhad(UTD_DIR, subjects=[5, 6], modalities=("skeleton", "gyro"))
    assert len(ds) == 215
    assert ds.modalities == ("skeleton", "gyro")
    missing = (ds.labels == 22) & (ds.subjects == 6) & (ds.trials == 4)
    assert not missing.any()  # a23_s6_t4 is not in the release


@pytest.mark.data
@needs_utd
def test_resampling_matches_fft_resample_of_the_whole_sequence() -> None:
    # Prepare
    import scipy.signal

    raw = scipy.io.loadmat(str(UTD_DIR / "Inertial" / "a3_s2_t1_inertial.mat"))["d_iner"]
    skel = scipy.io.loadmat(str(UTD_DIR / "Skeleton" / "a3_s2_t1_skeleton.mat"))["d_skel"]

    # Execute
    ds = load_utd_mhad(UTD_DIR, subjects=[2])
    i = int(np.flatnonzero((ds.labels == 2) & (ds.trials == 1))[0])

    # Assert
    np.testing.assert_allclose(
        ds.windows["gyro"][i], scipy.signal.resample(raw, 120, axis=0)[:, 3:], rtol=1e-5, atol=1e-3
    )
    frames = skel.transpose(2, 0, 1).reshape(-1, 60)  # joint-major: channel = 3 * joint + axis
    np.testing.assert_allclose(
        ds.windows["skeleton"][i], scipy.signal.resample(frames, 40, axis=0), rtol=1e-5, atol=1e-5
    )


@pytest.mark.data
@needs_utd
def test_second_load_is_served_from_cache() -> None:
    load_utd_mhad(UTD_DIR)
    start = time.perf_counter()
    ds = load_utd_mhad(UTD_DIR)
    assert time.perf_counter() - start < 0.5
    ds.windows["acc"][:] = 0  # callers get their own arrays
    assert np.abs(load_utd_mhad(UTD_DIR).windows["acc"]).sum() > 0


# --- errors, no real data needed ------------------------------------------------------


def test_missing_dir_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_utd_mhad(tmp_path / "nope")


def test_empty_dir_names_folder_and_pattern(tmp_path: Path) -> None:
    (tmp_path / "Inertial").mkdir()
    with pytest.raises(DataError, match=r"Inertial/a\*_s\*_t\*_inertial\.mat"):
        load_utd_mhad(tmp_path, modalities=("acc",))
    with pytest.raises(DataError, match=r"Skeleton does not exist.*Skeleton/a\*_s\*_t\*_skeleton"):
        load_utd_mhad(tmp_path, modalities=("skeleton",))


def test_small_release_keeps_only_complete_samples(tmp_path: Path) -> None:
    # Prepare
    _write_pair(tmp_path, 1, 1, 1)
    _write_pair(tmp_path, 2, 1, 1)
    _write_pair(tmp_path, 27, 3, 2)
    (tmp_path / "Skeleton" / "a2_s1_t1_skeleton.mat").unlink()

    # Execute
    both = load_utd_mhad(tmp_path)
    imu = load_utd_mhad(tmp_path, modalities=("acc", "gyro"))

    # Assert
    assert len(both) == 2 and len(imu) == 3
    np.testing.assert_array_equal(both.labels, [0, 26])
    np.testing.assert_array_equal(imu.subjects, [1, 1, 3])
    with pytest.raises(DataError, match=r"subjects \[2\]"):
        load_utd_mhad(tmp_path, subjects=[2])


def test_corrupt_mat_names_the_file(tmp_path: Path) -> None:
    _write_pair(tmp_path, 1, 1, 1)
    bad = tmp_path / "Inertial" / "a1_s1_t2_inertial.mat"
    bad.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(DataError, match=r"a1_s1_t2_inertial\.mat"):
        load_utd_mhad(tmp_path, modalities=("acc",))


def test_nan_values_name_the_file(tmp_path: Path) -> None:
    _write_pair(tmp_path, 1, 1, 1)
    d = np.ones((20, 3, 30))
    d[3, 1, 7] = np.nan
    scipy.io.savemat(tmp_path / "Skeleton" / "a1_s1_t1_skeleton.mat", {"d_skel": d})
    clear_utd_mhad_cache()
    with pytest.raises(DataError, match=r"a1_s1_t1_skeleton\.mat.*NaN"):
        load_utd_mhad(tmp_path)


def test_wrong_shape_and_missing_key_name_the_file(tmp_path: Path) -> None:
    _write_pair(tmp_path, 1, 1, 1)
    path = tmp_path / "Inertial" / "a1_s1_t1_inertial.mat"
    scipy.io.savemat(path, {"d_iner": np.ones((50, 5))})
    with pytest.raises(DataError, match=r"a1_s1_t1_inertial\.mat.*\(50, 5\)"):
        load_utd_mhad(tmp_path, modalities=("gyro",))
    scipy.io.savemat(path, {"other": np.ones((50, 6))})
    with pytest.raises(DataError, match=r"a1_s1_t1_inertial\.mat lacks the variable 'd_iner'"):
        load_utd_mhad(tmp_path, modalities=("gyro",))


def test_bad_subjects_and_modalities_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"subject id 9 does not exist; valid ids are 1\.\.8"):
        load_utd_mhad(tmp_path, subjects=[1, 9])
    with pytest.raises(ConfigError, match="no 'mag' modality"):
        load_utd_mhad(tmp_path, modalities=("acc", "mag"))
