"""``mmbind data check``: validate a data set folder and summarise what it holds.

Every recording is read and cut as a run would read it; problems are collected rather than
raised one by one, so one pass lists them all: unreadable or invalid files (each one line
naming the file, the field and the fix), recordings in another subject's folder, duplicates,
NaN/inf runs ("gaps") and constant channels, recordings that give no window.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmbind.dataset_manifest import DatasetManifest
from mmbind.errors import DataError

from .folder_reader import recording_files, recording_key, subjects_of
from .recording import read_recording
from .windowing import cut_windows

__all__ = ["FolderReport", "check_dataset_folder"]


@dataclass
class FolderReport:
    """What :func:`check_dataset_folder` found.

    Attributes
    ----------
    manifest : DatasetManifest
    recordings : dict[int, int]
        Subject -> readable recordings.
    classes : dict[int, Counter[int]]
        Subject -> windows per class id (windows of every modality the recording holds).
    windows : Counter[str]
        Modality -> windows it gives (a recording's windows counted for each modality it holds).
    errors : list[str]
        One line per problem that stops a run (invalid file, duplicate, NaN/inf, ...).
    warnings : list[str]
        Problems a run survives (constant channels, recordings without any window).
    """

    manifest: DatasetManifest
    recordings: dict[int, int] = field(default_factory=dict)
    classes: dict[int, Counter[int]] = field(default_factory=dict)
    windows: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """A human-readable summary (what ``mmbind data check`` prints)."""
        m = self.manifest
        lines = [
            f"data set {m.name!r}: {len(m.classes)} classes, modalities "
            + ", ".join(
                f"{e.name} ({e.modality.channels} ch, {e.modality.rate_hz:g} Hz, "
                f"window {e.modality.window}, {e.modality.unit})"
                for e in m.modalities
            )
            + f"; windowing {m.windowing.mode}",
            f"subjects: {len(self.recordings)}, recordings: {sum(self.recordings.values())}",
            "windows per modality: "
            + ", ".join(f"{name} {self.windows[name]}" for name in m.modality_names),
        ]
        for subject in sorted(self.recordings):
            counts = self.classes.get(subject, Counter())
            lines.append(
                f"  subject {subject}: {self.recordings[subject]} recordings, "
                f"{sum(counts.values())} windows, {len(counts)} classes "
                f"({', '.join(f'{c}:{n}' for c, n in sorted(counts.items()))})"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"error: {e}" for e in self.errors]
        lines.append("ok" if self.ok else f"{len(self.errors)} errors")
        return "\n".join(lines)


def _nan_runs(finite: np.ndarray) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of ``False`` in a boolean ``(n,)`` array."""
    bad = np.r_[False, ~finite, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(bad))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def check_dataset_folder(root: str | Path) -> FolderReport:
    """Read every recording of a data set folder and report what it holds and what is wrong.

    Raises
    ------
    DataError
        The folder has no valid manifest or no subject folder (nothing else to check).
    """
    folder = Path(root).expanduser()
    manifest = DatasetManifest.read(folder)
    report = FolderReport(manifest)
    seen: dict[tuple[int, int, int], Path] = {}
    for subject in subjects_of(folder):
        report.recordings[subject] = 0
        report.classes[subject] = Counter()
        for path in recording_files(folder, subject):
            try:
                recording = read_recording(path, manifest)
            except DataError as exc:
                report.errors.append(str(exc))
                continue
            if recording.subject != subject:
                report.errors.append(
                    f"{path}: subject is {recording.subject} but the file is in "
                    f"{path.parent.name}; move it to subject-{recording.subject}"
                )
                continue
            key = recording_key(recording)
            if key in seen:
                report.errors.append(
                    f"{path}: same subject, trial and label as {seen[key].name}; give each "
                    "recording its own trial id or remove the duplicate"
                )
                continue
            seen[key] = path
            report.recordings[subject] += 1
            faulty = False
            for name, signal in recording.signals.items():
                finite = np.isfinite(signal).all(axis=1)
                if not finite.all():
                    runs = _nan_runs(finite)
                    start, length = max(runs, key=lambda r: r[1])
                    report.errors.append(
                        f"{path}: {name} has {len(runs)} NaN/inf runs ({int((~finite).sum())} "
                        f"samples; longest {length} from sample {start}); fill or cut them"
                    )
                    faulty = True
                    continue
                if len(signal) > 1:
                    constant = np.flatnonzero(np.ptp(signal, axis=0) == 0)
                    if constant.size:
                        names = manifest.entry(name).channel_names
                        report.warnings.append(
                            f"{path}: {name} channels "
                            f"{', '.join(names[i] for i in constant)} are constant"
                        )
            if faulty:
                continue
            if manifest.windowing.mode == "sliding" and len(recording.signals) > 1:
                durations = {
                    n: len(x) / manifest.entry(n).modality.rate_hz
                    for n, x in recording.signals.items()
                }
                short, long = min(durations.values()), max(durations.values())
                if long > 1.1 * short:
                    report.warnings.append(
                        f"{path}: modalities last "
                        + ", ".join(f"{n} {d:.1f} s" for n, d in durations.items())
                        + "; check each modality's rate_hz (windows cover only the time "
                        "all of them share)"
                    )
            held = tuple(recording.signals)
            windows, labels = cut_windows(recording, manifest, held, str(path))
            if not len(labels):
                report.warnings.append(
                    f"{path}: gives no window (shorter than a window, or every window "
                    "unlabelled or mixed)"
                )
            for name in held:
                report.windows[name] += len(windows[name])
            report.classes[subject].update(int(c) for c in labels)
    return report
