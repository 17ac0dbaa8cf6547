"""``mmbind data``: make, check and import data set folders (docs/dataset-format.md)."""

from __future__ import annotations

from pathlib import Path

from mmbind.client.data.csv_import import ImportMapping, import_files, import_table
from mmbind.client.data.export import export_synthetic, export_utd_mhad
from mmbind.client.data.folder_check import FolderReport, check_dataset_folder
from mmbind.client.data.layout import BUILTIN_LAYOUTS, NodeLayout
from mmbind.errors import ConfigError
from mmbind.run_config import RunConfig

__all__ = ["check", "check_layout", "export", "import_csv", "layout_config"]


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


def import_csv(
    kind: str,
    source: str | Path,
    mapping: str | Path,
    target: str | Path,
    *,
    format: str | None = None,
) -> Path:
    """Import CSV or Parquet data: ``kind`` ``"table"`` (one long CSV or Parquet table, its
    ``format`` from its suffix unless given) or ``"files"`` (a folder of CSVs).

    Raises
    ------
    ConfigError, DataError
        As :func:`~mmbind.client.data.csv_import.import_table` /
        :func:`~mmbind.client.data.csv_import.import_files`; nothing is left at ``target``.
    """
    spec = ImportMapping.read(mapping)
    if kind == "table":
        return import_table(source, spec, target, format=format)
    if kind == "files":
        if format not in (None, "csv"):
            raise ConfigError(f"import files reads CSV files; --format {format} is for a table")
        return import_files(source, spec, target)
    raise ConfigError(f"unknown import kind {kind!r}; use table or files")


def layout_config(layout: str) -> dict[str, str]:
    """The run-config values a layout file sets: its path (absolute, so every worker finds
    it; a shipped layout by name), its binding and shared modality.

    Raises
    ------
    ConfigError
        The layout file is missing or invalid.
    """
    parsed = NodeLayout.read(layout)
    path = layout if layout in BUILTIN_LAYOUTS else str(Path(layout).expanduser().resolve())
    values = {"layout": path, "binding": parsed.binding}
    if parsed.binding == "modality":
        values["shared_modality"] = parsed.shared_modality
    return values


def check_layout(config: RunConfig) -> None:
    """Refuse the run's layout file now if it cannot run on its data set (reads no data).

    Raises
    ------
    ConfigError, BindingError
        As :meth:`~mmbind.client.data.layout.NodeLayout.check`.
    """
    if config.layout:
        from mmbind.client.local_data import simulation_plan  # lazily: it imports torch

        simulation_plan(config)
