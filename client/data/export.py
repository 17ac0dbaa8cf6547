"""Export the built-in data sets (synthetic, UTD-MHAD) as data set folders.

* UTD-MHAD: one recording per sequence with its *raw* signals (acc, gyro at 50 Hz, skeleton
  at 30 Hz, float64 as the ``.mat`` files hold them) and windowing ``"whole"``: reading the
  folder resamples each sequence exactly as the built-in loader does, so the windows are bit
  for bit the same. Recordings are named ``aAA_tTT`` (action, trial), so the folder's order
  (subject, file name) is the built-in loader's (subject, action, trial).
* synthetic: the generated windows (float32), one recording per sample, windowing
  ``"window"`` (taken as is): the folder reads back exactly what :func:`make_synthetic` gave
  for the same arguments. Recordings are named ``cCCC_tTTT`` (class, trial).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmbind.dataset_manifest import DatasetManifest, ModalityEntry, Windowing
from mmbind.modalities import BUILTIN_MODALITIES, SKELETON_JOINTS, Modality

from .folder_writer import DatasetWriter
from .recording import Recording
from .synthetic import SYNTHETIC_MODALITIES, make_synthetic
from .utd_mhad import UTD_MHAD_ACTIONS, UTD_MHAD_MODALITIES, utd_mhad_sequences

__all__ = ["builtin_entries", "export_synthetic", "export_utd_mhad"]

_BUILTIN = {m.name: m for m in BUILTIN_MODALITIES}


def _channel_names(modality: Modality) -> tuple[str, ...]:
    if modality.name == "skeleton":
        return tuple(f"joint{j}_{a}" for j in range(SKELETON_JOINTS) for a in "xyz")
    return tuple(f"{modality.name}_{a}" for a in "xyz"[: modality.channels])


def builtin_entries(names: Sequence[str]) -> tuple[ModalityEntry, ...]:
    """Manifest entries of built-in modalities, with their registry definitions."""
    return tuple(ModalityEntry(_BUILTIN[n], _channel_names(_BUILTIN[n])) for n in names)


def export_utd_mhad(
    data_dir: str | Path, target: str | Path, *, subjects: Sequence[int] | None = None
) -> Path:
    """Write UTD-MHAD (the official ``.mat`` files under ``data_dir``) as a data set folder.

    Raises
    ------
    ConfigError
        ``target`` exists and is not empty, or a subject id outside 1..8.
    DataError
        As :func:`~mmbind.client.data.utd_mhad.load_utd_mhad`; nothing is left at ``target``.
    """
    manifest = DatasetManifest(
        "utd-mhad", UTD_MHAD_ACTIONS, builtin_entries(UTD_MHAD_MODALITIES), Windowing("whole")
    )
    with DatasetWriter(target, manifest) as writer:
        for (action, subject, trial), signals in utd_mhad_sequences(data_dir, subjects=subjects):
            writer.add(
                Recording(subject, trial, dict(signals), label=action - 1),
                f"a{action:02d}_t{trial:02d}",
            )
    return writer.target


def export_synthetic(
    target: str | Path,
    *,
    num_classes: int = 6,
    subjects: Sequence[int] = range(1, 9),
    trials: int = 6,
    seed: int = 0,
) -> Path:
    """Write :func:`make_synthetic`'s data set (these arguments) as a data set folder.

    Raises
    ------
    ConfigError
        ``target`` exists and is not empty, or an argument :func:`make_synthetic` refuses.
    """
    data = make_synthetic(num_classes=num_classes, subjects=subjects, trials=trials, seed=seed)
    manifest = DatasetManifest(
        "synthetic", data.class_names, builtin_entries(SYNTHETIC_MODALITIES), Windowing("window")
    )
    with DatasetWriter(target, manifest) as writer:
        for i in range(len(data)):
            label, trial = int(data.labels[i]), int(data.trials[i])
            writer.add(
                Recording(
                    int(data.subjects[i]),
                    trial,
                    {m: data.windows[m][i] for m in SYNTHETIC_MODALITIES},
                    label=label,
                ),
                f"c{label:03d}_t{trial:03d}",
            )
    return writer.target
