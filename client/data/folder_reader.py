"""Read a data set folder (docs/dataset-format.md) into a :class:`MultimodalDataset`.

The folder holds ``mmbind-dataset.toml`` and ``recordings/subject-<S>/<name>.npz``. Loading
some subjects lists and reads only their folders, so a node reads only its own files.
Samples come in the order subject, then recording file name (sorted as text), then window
start; recordings lacking a requested modality are skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mmbind.dataset_manifest import DatasetManifest
from mmbind.errors import ConfigError, DataError
from mmbind.modalities import use_modalities

from .dataset import MultimodalDataset
from .recording import Recording, read_recording
from .windowing import cut_windows

__all__ = [
    "RECORDINGS",
    "load_dataset_folder",
    "recording_files",
    "recording_key",
    "subject_folder",
    "subjects_of",
]

log = logging.getLogger(__name__)

#: The folder of the recordings inside a data set folder.
RECORDINGS = "recordings"
_SUBJECT = re.compile(r"subject-(\d+)")


def subject_folder(root: Path, subject: int) -> Path:
    """``root/recordings/subject-<subject>``."""
    return root / RECORDINGS / f"subject-{subject}"


def subjects_of(root: str | Path) -> tuple[int, ...]:
    """The subject ids of a data set folder, sorted (from its ``subject-<S>`` folders).

    Raises
    ------
    DataError
        No ``recordings/`` folder, or no subject folder in it.
    """
    folder = Path(root).expanduser() / RECORDINGS
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; a data set folder keeps its recordings there")
    subjects = sorted(
        int(m.group(1))
        for p in folder.iterdir()
        if p.is_dir() and (m := _SUBJECT.fullmatch(p.name)) is not None
    )
    if not subjects:
        raise DataError(f"{folder} holds no subject-<S> folder; there is no recording to read")
    return tuple(subjects)


def recording_files(root: Path, subject: int) -> list[Path]:
    """The ``.npz`` files of one subject, sorted by name.

    Raises
    ------
    DataError
        The subject has no folder (the message lists the subjects there are).
    """
    folder = subject_folder(root, subject)
    if not folder.is_dir():
        raise DataError(
            f"subject {subject} has no recordings: {folder} does not exist; subjects of this "
            f"data set: {list(subjects_of(root))}"
        )
    files = [p for p in folder.iterdir() if p.suffix == ".npz" and p.is_file()]
    return sorted(files, key=lambda p: p.name)  # one folder: the order of the paths


def recording_key(recording: Recording) -> tuple[int, int, int]:
    """What identifies a recording: ``(subject, trial, label)`` (label ``-1``: per-sample)."""
    label = -1 if recording.label is None else recording.label
    return (recording.subject, recording.trial, label)


def _check_subjects(subjects: Iterable[int] | None, present: Sequence[int]) -> tuple[int, ...]:
    if subjects is None:
        return tuple(present)
    wanted: list[int] = []
    for s in subjects:
        if isinstance(s, bool) or not isinstance(s, int | np.integer):
            raise ConfigError(f"subject ids must be integers, got {s!r}")
        if int(s) not in wanted:
            wanted.append(int(s))
    if not wanted:
        raise ConfigError("subjects is empty; give at least one subject id, or None for all")
    return tuple(sorted(wanted))


class _Windows:
    """A modality's windows, copied as they come into one array (no concatenation at the end).

    The array is allocated for the windows expected (untouched memory costs nothing) and
    grows by doubling when more come; :meth:`windows` is a view of the part filled.
    """

    def __init__(self, shape: tuple[int, ...], capacity: int) -> None:
        self.array = np.empty((capacity, *shape), dtype=np.float32)
        self.count = 0

    def add(self, windows: NDArray[np.float32], expected: int) -> None:
        """Append ``windows`` ``(K, ...)``; ``expected``: windows still to come, these included."""
        k = len(windows)
        if self.count + k > len(self.array):
            grown = np.empty(
                (max(2 * len(self.array), self.count + expected, self.count + k),
                 *self.array.shape[1:]),
                dtype=np.float32,
            )  # fmt: skip
            grown[: self.count] = self.array[: self.count]
            self.array = grown
        self.array[self.count : self.count + k] = windows
        self.count += k

    def windows(self) -> NDArray[np.float32]:
        """The windows added, ``(N, ...)``."""
        return self.array[: self.count]


def load_dataset_folder(
    root: str | Path,
    *,
    subjects: Iterable[int] | None = None,
    modalities: Sequence[str] | None = None,
    manifest: DatasetManifest | None = None,
) -> MultimodalDataset:
    """Load the windows of a data set folder.

    Parameters
    ----------
    root : str or Path
        The data set folder.
    subjects : iterable of int, optional
        Subjects to read (only their folders are listed and read); ``None``: all.
    modalities : sequence of str, optional
        Modalities to keep; ``None``: all of the manifest's. A recording is kept only if it
        holds every requested modality.
    manifest : DatasetManifest, optional
        The folder's manifest when already read (its modalities are registered here).

    Returns
    -------
    MultimodalDataset
        ``windows[m]``: ``(N, window(m), channels(m))`` float32; ``labels``, ``subjects``,
        ``trials``: ``(N,)``; classes from the manifest.

    Raises
    ------
    DataError
        No manifest, a missing subject, an unreadable or invalid recording, a recording in
        another subject's folder, two recordings with one (subject, trial, label), NaN/inf
        in a signal, or no recording with every requested modality (each message names the
        file and the fix).
    """
    folder = Path(root).expanduser()
    manifest = manifest or DatasetManifest.read(folder)
    use_modalities(m.modality for m in manifest.modalities)
    names = tuple(manifest.modality_names if modalities is None else modalities)
    for name in names:
        manifest.entry(name)  # unknown modality: a DataError naming the data set's
    wanted = _check_subjects(subjects, subjects_of(folder) if subjects is None else ())

    files = [(subject, path) for subject in wanted for path in recording_files(folder, subject)]
    one_each = manifest.windowing.mode in ("window", "whole")  # one window per recording
    out = {
        m: _Windows(manifest.entry(m).modality.shape, len(files) if one_each else 0) for m in names
    }
    labels: list[NDArray[np.int64]] = []
    subj: list[NDArray[np.int64]] = []
    trials: list[NDArray[np.int64]] = []
    seen: dict[tuple[int, int, int], Path] = {}
    skipped = 0
    for done, (subject, path) in enumerate(files):
        recording = read_recording(path, manifest)
        if recording.subject != subject:
            raise DataError(
                f"{path}: subject is {recording.subject} but the file is in "
                f"{path.parent.name}; move it to subject-{recording.subject}"
            )
        key = recording_key(recording)
        if key in seen:
            raise DataError(
                f"{path}: same subject, trial and label as {seen[key].name} "
                f"(subject {key[0]}, trial {key[1]}); give each recording its own trial id "
                "or remove the duplicate"
            )
        seen[key] = path
        if any(m not in recording.signals for m in names):
            skipped += 1
            continue
        windows, window_labels = cut_windows(recording, manifest, names, str(path))
        del recording  # its file's buffer goes back to the allocator for the next file
        k = len(window_labels)
        for m in names:
            # room for as many windows per file as this one gave, for the files left
            out[m].add(windows[m], expected=(len(files) - done) * k)
        labels.append(window_labels)
        subj.append(np.full(k, subject, dtype=np.int64))
        trials.append(np.full(k, key[1], dtype=np.int64))
    if skipped:
        log.debug("%s: skipped %d recordings lacking one of %s", folder, skipped, names)
    if not labels or sum(len(x) for x in labels) == 0:
        raise DataError(
            f"{folder}: no window of subjects {list(wanted)} has every requested modality "
            f"({', '.join(names)}); check the data with mmbind data check {folder}"
        )
    return MultimodalDataset(
        windows={m: out[m].windows() for m in names},
        labels=np.concatenate(labels),
        subjects=np.concatenate(subj),
        trials=np.concatenate(trials),
        num_classes=len(manifest.classes),
        class_names=manifest.classes,
    )
