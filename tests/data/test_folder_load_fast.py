"""A node's load of a data set folder: the windows, copied into one array as they come, equal
the concatenation of every recording's cut (the reader before), byte for byte; the one-pass
NaN/inf check finds what the per-sample check found and nothing more."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmbind.client.data.folder_reader import load_dataset_folder, recording_files
from mmbind.client.data.folder_writer import DatasetWriter
from mmbind.client.data.recording import Recording, read_recording, recording_bytes
from mmbind.client.data.windowing import cut_windows
from mmbind.dataset_manifest import DatasetManifest, ModalityEntry, Windowing
from mmbind.errors import DataError
from mmbind.modalities import Modality

MODALITIES = (
    ModalityEntry(Modality("imu", 6, 50.0, 120, "1"), tuple(f"c{i}" for i in range(6))),
    ModalityEntry(
        Modality("pose", 60, 30.0, 40, "m", points=20), tuple(f"j{i}" for i in range(60))
    ),
)


def _folder(root: Path, windowing: Windowing, seed: int) -> tuple[Path, DatasetManifest]:
    """Recordings of growing lengths (the first gives the fewest windows: the array grows)."""
    manifest = DatasetManifest("load", ("a", "b"), MODALITIES, windowing)
    rng = np.random.default_rng(seed)
    with DatasetWriter(root, manifest) as writer:
        for i in range(9):
            if windowing.mode == "window":
                signals = {"imu": rng.normal(size=(120, 6)), "pose": rng.normal(size=(40, 60))}
            elif windowing.mode == "whole":
                signals = {"imu": rng.normal(size=(90 + i, 6)), "pose": rng.normal(size=(50, 60))}
            else:
                seconds = 3 + 4 * i
                signals = {
                    "imu": rng.normal(size=(50 * seconds, 6)).astype(np.float32),
                    "pose": rng.normal(size=(30 * seconds, 60)),
                }
            writer.add(Recording(1 + i % 2, i, signals, label=i % 2), f"r{i:02d}")
    return root, manifest


@pytest.mark.parametrize(
    "windowing",
    [Windowing("window"), Windowing("whole"), Windowing("sliding", 2.4, 2.4),
     Windowing("sliding", 2.0, 0.7)],
)  # fmt: skip
def test_loaded_windows_equal_the_concatenated_cuts(tmp_path: Path, windowing: Windowing) -> None:
    # Prepare
    folder, manifest = _folder(tmp_path / "ds", windowing, 0)
    names = manifest.modality_names
    cuts = [
        cut_windows(read_recording(p, manifest), manifest, names)
        for s in (1, 2)
        for p in recording_files(folder, s)
    ]

    # Execute
    ds = load_dataset_folder(folder)

    # Assert
    for m in names:
        expected = np.concatenate([c[0][m] for c in cuts])
        assert ds.windows[m].dtype == np.float32 and ds.windows[m].flags.c_contiguous
        assert ds.windows[m].shape == expected.shape
        assert ds.windows[m].tobytes() == expected.tobytes()
    assert ds.labels.tolist() == np.concatenate([c[1] for c in cuts]).tolist()


def test_nan_is_found_and_huge_finite_values_are_not(tmp_path: Path) -> None:
    # Prepare: values whose float32 sum overflows, and a recording with one NaN
    manifest = DatasetManifest("load", ("a", "b"), MODALITIES, Windowing("window"))
    huge = {"imu": np.full((120, 6), 3e38, np.float32), "pose": np.ones((40, 60), np.float32)}
    nan = {k: v.copy() for k, v in huge.items()}
    nan["pose"][7, 3] = np.nan
    with DatasetWriter(tmp_path / "ok", manifest) as writer:
        writer.add(Recording(1, 1, huge, label=0), "r1")
    bad = tmp_path / "bad" / "recordings" / "subject-1"  # the writer refuses NaN: plant it
    bad.mkdir(parents=True)
    (bad / "r1.npz").write_bytes(recording_bytes(Recording(1, 1, nan, label=0)))
    (tmp_path / "bad" / "mmbind-dataset.toml").write_text(manifest.to_toml())

    # Execute / Assert
    ds = load_dataset_folder(tmp_path / "ok")
    assert np.isfinite(ds.windows["imu"]).all()
    with pytest.raises(DataError, match=r"pose holds NaN/inf in 1 samples \(first at sample 7\)"):
        load_dataset_folder(tmp_path / "bad")
