"""``mmbind data``: make, check and import data set folders (docs/dataset-format.md)."""

from __future__ import annotations

from pathlib import Path

from mmbind.client.data.export import export_synthetic, export_utd_mhad
from mmbind.client.data.folder_check import FolderReport, check_dataset_folder
from mmbind.errors import ConfigError

__all__ = ["check", "export"]


def export(dataset: str, target: str | Path, *, data_dir: str = "", seed: int = 0) -> Path:
    """Write the built-in ``dataset`` as a data set folder at ``target``.

    Raises
    ------
    ConfigError
        Unknown data set, UTD-MHAD without ``data_dir``, or ``target`` not empty.
    DataError
        The built-in data set's files are missing or invalid (nothing is left at ``target``).
    """
    if dataset == "synthetic":
        return export_synthetic(target, seed=seed)
    if dataset == "utd-mhad":
        if not data_dir:
            raise ConfigError(
                "exporting utd-mhad needs its folder: pass --data-dir DIR (Inertial/, Skeleton/)"
            )
        return export_utd_mhad(Path(data_dir).expanduser(), target)
    raise ConfigError(f"unknown built-in data set {dataset!r}; valid: synthetic, utd-mhad")


def check(folder: str | Path) -> FolderReport:
    """Validate the data set folder ``folder`` (:func:`check_dataset_folder`)."""
    return check_dataset_folder(folder)
