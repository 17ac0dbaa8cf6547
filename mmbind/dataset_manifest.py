"""The manifest of a data set folder (``mmbind-dataset.toml``): what its recordings hold.

A data set folder (docs/dataset-format.md) is this manifest plus one ``.npz`` file per
recording under ``recordings/subject-<S>/``. The manifest names the data set and its
classes, defines every modality (channels and their names, sampling rate, unit, window
length, geometry) and says how recordings become windows (:class:`Windowing`). It is
written last by every writer, so a folder without it is not a data set (an import that
stopped half way).

It lives in the shared core because both sides need it: a node reads its recordings with
it, and every process of a run registers the data set's modalities from it
(:func:`activate_dataset`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmbind.errors import DataError, MMBindError
from mmbind.modalities import Modality, check_modality_name, use_modalities

__all__ = [
    "BUILTIN_DATASETS",
    "FORMAT",
    "MANIFEST_NAME",
    "WINDOWING_MODES",
    "DatasetManifest",
    "ModalityEntry",
    "Windowing",
    "activate_dataset",
    "dataset_folder",
]

#: The manifest's file name inside a data set folder.
MANIFEST_NAME = "mmbind-dataset.toml"
#: The format (and version) a manifest declares in its ``format`` key.
FORMAT = "mmbind-dataset/1"
#: Data sets built into mmbind (anything else a run names is a data set folder).
BUILTIN_DATASETS: tuple[str, ...] = ("synthetic", "utd-mhad")
#: How recordings become windows (:class:`Windowing`).
WINDOWING_MODES: tuple[str, ...] = ("window", "whole", "sliding")
#: What a window whose samples carry several labels gets: the majority label, or dropped.
MIXED_LABELS: tuple[str, ...] = ("majority", "drop")


def _fail(source: str, field: str, problem: str, fix: str) -> DataError:
    return DataError(f"{source}: {field}: {problem}; {fix}")


def _number(source: str, field: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(source, field, f"{value!r} is not a number", "give a finite number")
    if positive and value <= 0:
        raise _fail(source, field, f"{value!r} is not > 0", "give a positive number")
    return float(value)


def _integer(source: str, field: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(source, field, f"{value!r} is not an integer >= {minimum}", "fix the value")
    return value


def _names(source: str, field: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(source, field, f"{value!r} is not a list of names", 'give e.g. ["x", "y"]')
    if len(set(value)) != len(value):
        dupes = sorted({v for v in value if value.count(v) > 1})
        raise _fail(source, field, f"names {dupes} appear twice", "give each name once")
    return tuple(value)


def _check_keys(source: str, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(
            source,
            f"{where}{unknown[0]}",
            "unknown key",
            f"valid keys here: {', '.join(sorted(allowed))}",
        )


@dataclass(frozen=True)
class ModalityEntry:
    """One modality of a data set: its registry definition and what the manifest adds.

    Attributes
    ----------
    modality : Modality
        Name, channels, rate, window (time steps per window after resampling), unit and
        geometry (``points`` sensing points of ``channels // points`` axes, point-major).
    channel_names : tuple[str, ...]
        One name per channel, in the order of a recording's columns.
    length_s : float or None
        Seconds one window of this modality covers (``sliding`` windowing only; ``None``:
        the data set's :attr:`Windowing.length_s`).
    """

    modality: Modality
    channel_names: tuple[str, ...]
    length_s: float | None = None

    @property
    def name(self) -> str:
        return self.modality.name

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any], source: str) -> ModalityEntry:
        """Parse ``[modalities.<name>]``.

        Raises
        ------
        DataError
            A key is missing, unknown or invalid (the message names the field and the fix).
        """
        where = f"modalities.{name}."
        try:
            check_modality_name(name)
        except MMBindError as exc:
            raise _fail(source, f"modalities.{name}", str(exc), "rename the table") from None
        _check_keys(
            source,
            where,
            table,
            {"channels", "channel_names", "rate_hz", "unit", "window", "points", "length_s"},
        )
        for key in ("channels", "rate_hz", "unit", "window"):
            if key not in table:
                raise _fail(
                    source, where + key, "missing", f"add {key} = ... to [modalities.{name}]"
                )
        channels = _integer(source, where + "channels", table["channels"])
        names = _names(
            source,
            where + "channel_names",
            table.get("channel_names", [f"c{i}" for i in range(channels)]),
        )
        if len(names) != channels:
            raise _fail(
                source,
                where + "channel_names",
                f"{len(names)} names for {channels} channels",
                "give one name per channel",
            )
        points = _integer(source, where + "points", table.get("points", 1))
        if channels % points:
            raise _fail(
                source,
                where + "points",
                f"{channels} channels cannot be split into {points} points of equal size",
                "points must divide channels (e.g. 20 joints x 3 axes = 60 channels)",
            )
        unit = table["unit"]
        if not isinstance(unit, str):
            raise _fail(source, where + "unit", f"{unit!r} is not a string", 'give e.g. "g"')
        length = table.get("length_s")
        return cls(
            Modality(
                name,
                channels,
                _number(source, where + "rate_hz", table["rate_hz"]),
                _integer(source, where + "window", table["window"]),
                unit,
                points=points,
            ),
            names,
            None if length is None else _number(source, where + "length_s", length),
        )

    def to_table(self) -> dict[str, Any]:
        m = self.modality
        out: dict[str, Any] = {
            "channels": m.channels,
            "channel_names": list(self.channel_names),
            "rate_hz": m.rate_hz,
            "unit": m.unit,
            "window": m.window,
            "points": m.points,
        }
        if self.length_s is not None:
            out["length_s"] = self.length_s
        return out


@dataclass(frozen=True)
class Windowing:
    """How a recording becomes windows.

    Attributes
    ----------
    mode : {"window", "whole", "sliding"}
        ``"window"``: a recording is one window already (each modality exactly its
        ``window`` samples), taken as is; ``"whole"``: a recording is one window, each
        modality's whole sequence resampled (FFT, :func:`scipy.signal.resample`) to its
        ``window`` samples (the MMBind paper's UTD-MHAD preprocessing); ``"sliding"``: a
        continuous recording cut into windows of ``length_s`` seconds every ``stride_s``
        seconds, all modalities on one time axis, each cut resampled to its ``window``.
    length_s, stride_s : float or None
        Window length and stride in seconds (``"sliding"`` only; a modality may override
        the length).
    mixed : {"majority", "drop"}
        A sliding window whose samples carry several labels gets the majority label (ties:
        the smaller class id), or is dropped.
    label_rate_hz : float or None
        Rate of per-sample labels (a recording's ``labels`` array); ``None``: recordings
        carry one ``label`` each.
    """

    mode: Literal["window", "whole", "sliding"] = "window"
    length_s: float | None = None
    stride_s: float | None = None
    mixed: Literal["majority", "drop"] = "majority"
    label_rate_hz: float | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str) -> Windowing:
        """Parse ``[windowing]``.

        Raises
        ------
        DataError
            An unknown key or value, or sliding windows without length and stride.
        """
        _check_keys(
            source, "windowing.", table, {"mode", "length_s", "stride_s", "mixed", "label_rate_hz"}
        )
        mode = table.get("mode", "window")
        if mode not in WINDOWING_MODES:
            raise _fail(
                source, "windowing.mode", f"{mode!r} is unknown", f"use one of {WINDOWING_MODES}"
            )
        mixed = table.get("mixed", "majority")
        if mixed not in MIXED_LABELS:
            raise _fail(
                source, "windowing.mixed", f"{mixed!r} is unknown", f"use one of {MIXED_LABELS}"
            )
        values: dict[str, float | None] = {}
        for key in ("length_s", "stride_s", "label_rate_hz"):
            raw = table.get(key)
            values[key] = None if raw is None else _number(source, f"windowing.{key}", raw)
        if mode == "sliding":
            for key in ("length_s", "stride_s"):
                if values[key] is None:
                    raise _fail(
                        source,
                        f"windowing.{key}",
                        "missing for mode = 'sliding'",
                        f"add {key} = <seconds> to [windowing]",
                    )
        elif values["label_rate_hz"] is not None:
            raise _fail(
                source,
                "windowing.label_rate_hz",
                f"per-sample labels need mode = 'sliding', not {mode!r}",
                "set mode = 'sliding' with length_s and stride_s",
            )
        return cls(mode, values["length_s"], values["stride_s"], mixed, values["label_rate_hz"])

    def to_table(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode}
        for key in ("length_s", "stride_s", "label_rate_hz"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.mode == "sliding":
            out["mixed"] = self.mixed
        return out


@dataclass(frozen=True)
class DatasetManifest:
    """A data set folder's manifest.

    Attributes
    ----------
    name : str
        The data set's name (reports and results say it).
    classes : tuple[str, ...]
        Class names; a recording's labels are 0-based indices into it.
    modalities : tuple[ModalityEntry, ...]
        Every modality a recording may hold, in the data set's order.
    windowing : Windowing
        How recordings become windows.
    """

    name: str
    classes: tuple[str, ...]
    modalities: tuple[ModalityEntry, ...]
    windowing: Windowing = Windowing()

    def __post_init__(self) -> None:
        names = [m.name for m in self.modalities]
        if len(set(names)) != len(names):
            raise DataError(f"data set {self.name!r}: a modality is defined twice in {names}")

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def entry(self, name: str) -> ModalityEntry:
        """The modality ``name``.

        Raises
        ------
        DataError
            The data set has no such modality (the message lists its modalities).
        """
        for m in self.modalities:
            if m.name == name:
                return m
        raise DataError(
            f"data set {self.name!r} has no modality {name!r}; it has: "
            f"{', '.join(self.modality_names)}"
        )

    def window_seconds(self, name: str) -> float:
        """Seconds one sliding window of modality ``name`` covers."""
        length = self.entry(name).length_s or self.windowing.length_s
        if length is None:
            raise DataError(f"data set {self.name!r}: modality {name!r} has no window length")
        return length

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = MANIFEST_NAME) -> DatasetManifest:
        """Parse a manifest document (a TOML file's tables).

        Raises
        ------
        DataError
            The document is not a valid manifest; one line naming ``source``, the field and
            the fix.
        """
        _check_keys(source, "", data, {"format", "name", "classes", "modalities", "windowing"})
        if data.get("format") != FORMAT:
            raise _fail(
                source,
                "format",
                f"{data.get('format')!r} is not {FORMAT!r}",
                f'the first line of a manifest is format = "{FORMAT}"',
            )
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _fail(source, "name", f"{name!r} is not a name", 'give e.g. name = "my-lab"')
        classes = _names(source, "classes", data.get("classes"))
        if not classes:
            raise _fail(source, "classes", "empty", "list the class names")
        tables = data.get("modalities")
        if not isinstance(tables, Mapping) or not tables:
            raise _fail(
                source, "modalities", "no modality defined", "add a [modalities.<name>] table"
            )
        entries = []
        for key, table in tables.items():
            if not isinstance(table, Mapping):
                raise _fail(source, f"modalities.{key}", "not a table", "make it a table")
            entries.append(ModalityEntry.from_table(key, table, source))
        windowing = data.get("windowing", {})
        if not isinstance(windowing, Mapping):
            raise _fail(source, "windowing", "not a table", "make it a [windowing] table")
        return cls(name, classes, tuple(entries), Windowing.from_table(windowing, source))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "classes": list(self.classes),
            "windowing": self.windowing.to_table(),
            "modalities": {m.name: m.to_table() for m in self.modalities},
        }

    @classmethod
    def read(cls, folder: str | Path) -> DatasetManifest:
        """The manifest of the data set folder ``folder``.

        Raises
        ------
        DataError
            No manifest (not a data set folder, or an import that did not finish), or it is
            not valid TOML or not a valid manifest.
        """
        path = Path(folder).expanduser() / MANIFEST_NAME
        if not path.is_file():
            raise DataError(
                f"{path} does not exist: {folder} is not a data set folder (or its import did "
                "not finish); create one with mmbind data import or mmbind data export"
            )
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"{path}: not a readable TOML file ({exc}); fix its syntax") from None
        return cls.from_dict(data, str(path))

    def to_toml(self) -> str:
        """The manifest as TOML text (what :meth:`read` reads back)."""
        import tomli_w

        return str(tomli_w.dumps(self.to_dict()))


def dataset_folder(dataset: str) -> Path | None:
    """The folder a run's ``dataset`` names, or ``None`` for a built-in data set."""
    if dataset in BUILTIN_DATASETS:
        return None
    return Path(dataset).expanduser()


def activate_dataset(dataset: str) -> DatasetManifest | None:
    """Register the modalities of the data set ``dataset`` in this process's registry.

    A built-in data set leaves the registry as it is (its modalities are the built-ins); a
    data set folder's manifest overlays the built-ins
    (:func:`mmbind.modalities.use_modalities`). A process runs one data set: the built-ins
    stay registered beside a folder's own modalities, and only a folder that redefines a
    built-in name (say ``acc`` at 100 Hz) replaces it.

    Returns
    -------
    DatasetManifest or None
        The folder's manifest; ``None`` for a built-in data set.

    Raises
    ------
    DataError
        ``dataset`` is neither built in nor a data set folder, or its manifest is invalid.
    """
    folder = dataset_folder(dataset)
    if folder is None:
        return None
    if not folder.is_dir():
        raise DataError(
            f"dataset {dataset!r} is neither a built-in data set ({', '.join(BUILTIN_DATASETS)}) "
            f"nor an existing folder; give a folder holding {MANIFEST_NAME}"
        )
    manifest = DatasetManifest.read(folder)
    use_modalities(m.modality for m in manifest.modalities)
    return manifest
