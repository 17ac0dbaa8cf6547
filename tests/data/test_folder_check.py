"""``check_dataset_folder``: every problem of a folder in one pass, and its summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmbind.client.data.folder_check import check_dataset_folder
from mmbind.client.data.folder_writer import DatasetWriter
from mmbind.client.data.recording import Recording
from mmbind.dataset_manifest import DatasetManifest, ModalityEntry, Windowing
from mmbind.errors import DataError
from mmbind.modalities import Modality

MANIFEST = DatasetManifest(
    "stream",
    ("a", "b"),
    (
        ModalityEntry(Modality("ecg", 1, 100.0, 50, "mV"), ("lead1",)),
        ModalityEntry(Modality("wrist_acc", 3, 50.0, 25, "g"), ("x", "y", "z")),
    ),
    Windowing("sliding", length_s=0.5, stride_s=0.5),
)


def _recording(
    subject: int, trial: int, seconds: float = 2.0, acc_seconds: float | None = None
) -> Recording:
    rng = np.random.default_rng((subject, trial))
    return Recording(
        subject,
        trial,
        {
            "ecg": rng.normal(size=(round(seconds * 100), 1)),
            "wrist_acc": rng.normal(size=(round((acc_seconds or seconds) * 50), 3)),
        },
        label=trial % 2,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    with DatasetWriter(tmp_path / "d", MANIFEST) as writer:
        writer.add(_recording(1, 1), "a")
        writer.add(_recording(1, 2), "b")
        writer.add(_recording(2, 1, acc_seconds=1.0), "a")  # acc at half the duration
        writer.add(_recording(2, 2, seconds=0.3), "b")  # shorter than a window
    return tmp_path / "d"


def test_a_clean_folder_is_summarised(folder: Path) -> None:
    # Execute
    report = check_dataset_folder(folder)

    # Assert
    assert report.ok and report.recordings == {1: 2, 2: 2}
    assert report.windows["ecg"] == 4 + 4 + 2 and report.classes[1] == {1: 4, 0: 4}
    summary = report.summary()
    assert "subjects: 2, recordings: 4" in summary and summary.endswith("ok")
    warnings = "\n".join(report.warnings)
    assert "modalities last ecg 2.0 s, wrist_acc 1.0 s; check each modality's rate_hz" in warnings
    assert "b.npz: gives no window" in warnings


def test_every_problem_is_listed_in_one_pass(folder: Path) -> None:
    # Prepare: a corrupt file, a duplicate, a file in the wrong folder, a NaN run
    rec = folder / "recordings"
    (rec / "subject-1" / "corrupt.npz").write_bytes(b"x")
    (rec / "subject-1" / "copy.npz").write_bytes((rec / "subject-1" / "a.npz").read_bytes())
    (rec / "subject-3").mkdir()
    (rec / "subject-3" / "moved.npz").write_bytes((rec / "subject-2" / "b.npz").read_bytes())
    ecg = np.ones((200, 1))
    ecg[50:60] = np.nan
    np.savez(rec / "subject-2" / "nan.npz", subject=2, trial=7, label=0, ecg=ecg)

    # Execute
    report = check_dataset_folder(folder)

    # Assert
    assert not report.ok and len(report.errors) == 4
    text = "\n".join(report.errors)
    assert "corrupt.npz: not a readable .npz file" in text
    assert "copy.npz: same subject, trial and label as a.npz" in text
    assert "moved.npz: subject is 2 but the file is in subject-3" in text
    assert "nan.npz: ecg has 1 NaN/inf runs (10 samples; longest 10 from sample 50)" in text
    assert report.summary().endswith("4 errors")


def test_a_folder_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a data set folder"):
        check_dataset_folder(tmp_path)
