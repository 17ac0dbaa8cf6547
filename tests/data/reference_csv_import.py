"""The CSV table importer as it was before the pyarrow reader (commit d464230), kept verbatim
as the reference the new importer's output is compared with, byte for byte
(tests/data/test_table_import_reference.py). Not used by mmbind itself.

Original docstring: ``mmbind data import``: CSV data into a data set folder, through a small
mapping file.

Two shapes of input (docs/dataset-format.md, "Importing CSV"):

* **a long table** (:func:`import_table`): one CSV, one row per time step, with a subject
  column, a label column, optionally a trial column, and sensor columns that the mapping
  assigns to modalities. All columns share the table's ``rate_hz``. The rows of one
  (subject, trial) must be contiguous; each such block is one recording, labelled per row
  (``windowing.mode = "sliding"``) or, in the other modes, cut into one recording per run of
  rows with the same label. The table is read in chunks: memory holds one recording, not the
  file.
* **a folder of per-recording CSVs** (:func:`import_files`): file paths matching the
  mapping's ``pattern``, e.g. ``"{subject}/{trial}_{label}/{modality}.csv"``; a file holds
  one modality's columns at its own ``rate_hz`` (with ``{modality}`` in the pattern), or
  every modality's columns at one rate.

The mapping (TOML) is the manifest (name, classes, windowing, modalities) plus, per modality,
the CSV ``columns`` of its channels, and a ``[table]`` or ``[files]`` table. Every import
goes through :class:`~mmbind.client.data.folder_writer.DatasetWriter`: nothing appears at the
target unless the whole import succeeds.
"""

from __future__ import annotations

import csv
import io
import logging
import operator
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmbind.client.data.folder_writer import DatasetWriter
from mmbind.client.data.recording import Recording
from mmbind.dataset_manifest import DatasetManifest
from mmbind.errors import DataError

__all__ = ["ImportMapping", "import_files", "import_table"]

log = logging.getLogger(__name__)

_CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class ImportMapping:
    """A mapping file: the manifest to write, and where its values are in the CSV input.

    Attributes
    ----------
    manifest : DatasetManifest
    columns : dict[str, tuple[str, ...]]
        Modality -> CSV columns of its channels, in channel order.
    table : dict[str, Any]
        ``[table]``: ``subject``, ``label``, optional ``trial`` column names, ``rate_hz``.
    files : dict[str, Any]
        ``[files]``: ``pattern``, optional ``label_column``.
    source : str
        The mapping file, for messages.
    """

    manifest: DatasetManifest
    columns: dict[str, tuple[str, ...]]
    table: dict[str, Any]
    files: dict[str, Any]
    source: str

    @classmethod
    def read(cls, path: str | Path) -> ImportMapping:
        """Read a mapping file.

        Raises
        ------
        DataError
            Not TOML, or a missing or invalid field (one line naming the file and field).
        """
        path = Path(path).expanduser()
        source = str(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"{source}: cannot read the mapping file ({exc})") from None
        table = doc.pop("table", {})
        files = doc.pop("files", {})
        modalities = doc.get("modalities")
        if not isinstance(modalities, Mapping) or not modalities:
            raise DataError(f"{source}: modalities: none mapped; add [modalities.<name>] tables")
        columns: dict[str, tuple[str, ...]] = {}
        clean: dict[str, Any] = {}
        for name, spec in modalities.items():
            if not isinstance(spec, Mapping):
                raise DataError(f"{source}: modalities.{name}: not a table")
            spec = dict(spec)
            cols = spec.pop("columns", None)
            if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
                raise DataError(
                    f"{source}: modalities.{name}.columns: missing or not a list of column "
                    'names; give e.g. columns = ["ax", "ay", "az"]'
                )
            columns[name] = tuple(cols)
            spec.setdefault("channels", len(cols))
            spec.setdefault("channel_names", list(cols))
            if table:
                if "rate_hz" in spec and spec["rate_hz"] != table.get("rate_hz"):
                    raise DataError(
                        f"{source}: modalities.{name}.rate_hz: {spec['rate_hz']} differs from "
                        f"table.rate_hz {table.get('rate_hz')}; a table has one row per time "
                        "step, so every column has its rate: drop the modality's rate_hz"
                    )
                spec["rate_hz"] = table.get("rate_hz")
            clean[name] = spec
        if table:
            rate = table.get("rate_hz")
            if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
                raise DataError(f"{source}: table.rate_hz: {rate!r}; give the rows' rate in Hz")
            for key in ("subject", "label"):
                if not isinstance(table.get(key), str):
                    raise DataError(
                        f"{source}: table.{key}: missing; give the name of the {key} column"
                    )
            if doc.get("windowing", {}).get("mode") == "sliding":
                doc.setdefault("windowing", {}).setdefault("label_rate_hz", float(rate))
        doc.setdefault("format", "mmbind-dataset/1")
        manifest = DatasetManifest.from_dict({**doc, "modalities": clean}, source)
        return cls(manifest, columns, dict(table), dict(files), source)

    def class_id(self, value: str, where: str) -> int:
        """The class id of a label cell: a class name or a 0-based id.

        Raises
        ------
        DataError
            Neither (the message names ``where`` and the mapping's classes).
        """
        text = value.strip()
        classes = self.manifest.classes
        if text in classes:
            return classes.index(text)
        if re.fullmatch(r"-?\d+", text) and -1 <= int(text) < len(classes):
            return int(text)
        if text == "":
            return -1
        raise DataError(
            f"{where}: label {text!r} is not one of the mapping's classes "
            f"({', '.join(classes)}); add it to classes in {self.source}"
        )


def _header(path: Path, first: str, needed: list[str]) -> dict[str, int]:
    names = next(csv.reader([first]))
    index = {n.strip(): i for i, n in enumerate(names)}
    missing = [c for c in needed if c not in index]
    if missing:
        raise DataError(
            f"{path}: column {missing[0]!r} is missing (the header has: "
            f"{', '.join(index)}); fix the mapping's column names or the file"
        )
    return index


def _per_run(cells: NDArray[Any], fn: Callable[[NDArray[Any]], NDArray[Any]]) -> NDArray[Any]:
    """``fn(cells)`` for an element-wise ``fn``, computed once per run of equal cells.

    Subject, trial and label cells come in long runs (a recording's rows are contiguous), so
    this calls ``fn`` on a few values instead of every row.
    """
    if len(cells) < 2:
        return fn(cells)
    flat = np.ascontiguousarray(cells)
    if flat.dtype.kind == "U":  # compare the code points: faster than string comparison
        flat = flat.view(np.uint32).reshape(len(cells), -1)
    change = flat[1:] != flat[:-1]
    if change.ndim == 2:
        change = change.any(axis=1)
    starts = np.flatnonzero(np.r_[True, change])
    return np.repeat(fn(cells[starts]), np.diff(np.r_[starts, len(cells)]))


def _same_width(lines: list[str], commas: int, every_column_read: bool) -> bool:
    """Whether every line holds ``commas`` commas (no ragged row).

    When every column was read, ``np.loadtxt`` has refused any row with fewer fields, so a
    total of ``len(lines) * commas`` commas leaves no row with more: one count over the
    block, not one per line.
    """
    if every_column_read:
        return "".join(lines).count(",") == len(lines) * commas
    return set(map(operator.methodcaller("count", ","), lines)) == {commas}


def _parse_block(
    path: Path, lines: list[str], index: dict[str, int], text_cols: list[str], num_cols: list[str],
    first_line: int,
) -> tuple[dict[str, NDArray[np.str_]], NDArray[np.float64]]:  # fmt: skip
    """Parse CSV lines: the text columns as strings, the numeric ones as ``(rows, k)`` floats.

    numpy's C parser reads well-formed blocks; a block it refuses (ragged rows, empty cells,
    a non-number) is read again row by row, which finds the line to name, or reads empty
    cells as NaN.
    """
    options: dict[str, Any] = {"delimiter": ",", "quotechar": '"', "comments": None}
    try:
        values = np.loadtxt(
            lines, usecols=[index[c] for c in num_cols], dtype=np.float64, ndmin=2, **options
        )
        texts = {}
        if text_cols:
            cells = np.loadtxt(
                lines, usecols=[index[c] for c in text_cols], dtype=str, ndmin=2, **options
            )
            texts = {c: np.char.strip(cells[:, i]) for i, c in enumerate(text_cols)}
        if values.shape == (len(lines), len(num_cols)) and _same_width(
            lines, len(index) - 1, {index[c] for c in text_cols + num_cols} == set(index.values())
        ):
            return texts, values
    except ValueError:
        pass
    rows = list(csv.reader(lines))
    width = len(index)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(
                f"{path}: line {first_line + i}: {len(row)} fields, the header has {width}; "
                "every row needs one value per column (ragged rows)"
            )
    texts = {c: np.array([r[index[c]].strip() for r in rows], dtype=str) for c in text_cols}
    cols = [index[c] for c in num_cols]
    try:
        values = np.array(
            [[r[c] if r[c] != "" else "nan" for c in cols] for r in rows], dtype=float
        )
    except ValueError as exc:
        raise DataError(
            f"{path}: lines {first_line}..{first_line + len(rows) - 1}: a sensor value is not "
            f"a number ({exc}); fix the cell (empty cells read as NaN)"
        ) from None
    return texts, values.reshape(len(rows), len(cols))


def _chunks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(first line number, lines)`` blocks of a CSV file after its header (1-based lines)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        fh.readline()
        line = 2
        while True:
            raw = fh.readlines(_CHUNK_BYTES)
            if not raw:
                return
            lines = raw if all(map(str.strip, raw)) else [x for x in raw if x.strip()]
            if lines:
                yield line, lines
            line += len(raw)


def _int_column(values: NDArray[np.str_], column: str, where: str) -> NDArray[np.int64]:
    """A column of integer cells (subject or trial ids) as int64.

    Raises
    ------
    DataError
        A cell is not an integer (the message shows the first).
    """
    try:
        return values.astype(np.int64)
    except ValueError:
        bad = next(v for v in values if not re.fullmatch(r"\s*-?\d+\s*", str(v)))
        raise DataError(
            f"{where}: {column} {str(bad)!r} is not an integer; subject and trial ids must be"
            " integers"
        ) from None


def import_table(table: str | Path, mapping: ImportMapping, target: str | Path) -> Path:
    """Import a long CSV table (see the module docstring) into the data set folder ``target``.

    Raises
    ------
    DataError
        A missing column, a ragged row, a non-numeric sensor value, an unknown label, a
        non-integer subject or trial, the rows of one (subject, trial) not contiguous, or an
        invalid recording (each one line naming the file and line); nothing is written.
    ConfigError
        ``target`` exists and is not empty.
    """
    path = Path(table).expanduser()
    t = mapping.table
    if not t:
        raise DataError(f"{mapping.source}: no [table] section; a table import needs one")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        header = fh.readline()
    subject_col, label_col = str(t["subject"]), str(t["label"])
    trial_col = t.get("trial")
    text_cols = [subject_col, label_col] + ([str(trial_col)] if trial_col else [])
    num_cols = [c for cols in mapping.columns.values() for c in cols]
    index = _header(path, header, text_cols + num_cols)
    per_sample = mapping.manifest.windowing.label_rate_hz is not None
    offsets: dict[str, slice] = {}
    at = 0
    for name, cols in mapping.columns.items():
        offsets[name] = slice(at, at + len(cols))
        at += len(cols)

    done: set[tuple[int, int]] = set()
    current: tuple[int, int] | None = None
    parts: list[NDArray[np.float64]] = []
    part_labels: list[NDArray[np.int64]] = []
    start_line = 2
    counters: dict[tuple[int, int], int] = {}

    with DatasetWriter(target, mapping.manifest) as writer:

        def flush() -> None:
            if current is None or not parts:
                return
            values = np.concatenate(parts)
            labels = np.concatenate(part_labels)
            subject, trial = current
            origin = f"{path}: lines from {start_line}"
            signals: dict[str, NDArray[np.floating]] = {n: values[:, s] for n, s in offsets.items()}
            if per_sample:
                writer.add(
                    Recording(subject, trial, signals, labels=labels), f"t{trial:06d}", origin
                )
                return
            edges = np.flatnonzero(np.diff(labels)) + 1
            for a, b in zip(np.r_[0, edges], np.r_[edges, len(labels)], strict=True):
                label = int(labels[a])
                if label < 0:
                    continue
                n = counters.get(current, 0)
                counters[current] = n + 1
                writer.add(
                    Recording(subject, trial, {k: v[a:b] for k, v in signals.items()}, label=label),
                    f"t{trial:06d}_{n:04d}",
                    origin,
                )

        for first, lines in _chunks(path):
            texts, values = _parse_block(path, lines, index, text_cols, num_cols, first)
            where = f"{path}: lines {first}..{first + len(lines) - 1}"
            subjects = _per_run(
                texts[subject_col], partial(_int_column, column=subject_col, where=where)
            )
            trials = (
                _per_run(
                    texts[str(trial_col)], partial(_int_column, column=str(trial_col), where=where)
                )
                if trial_col
                else np.zeros(len(subjects), dtype=np.int64)
            )

            def class_ids(cells: NDArray[np.str_], where: str = where) -> NDArray[np.int64]:
                names, inverse = np.unique(cells, return_inverse=True)
                ids = np.array([mapping.class_id(str(v), where) for v in names], dtype=np.int64)
                return ids[inverse.reshape(-1)]

            labels = _per_run(texts[label_col], class_ids)
            change = np.flatnonzero((np.diff(subjects) != 0) | (np.diff(trials) != 0)) + 1
            for a, b in zip(np.r_[0, change], np.r_[change, len(subjects)], strict=True):
                key = (int(subjects[a]), int(trials[a]))
                if key != current:
                    flush()
                    if key in done:
                        raise DataError(
                            f"{path}: line {first + a}: the rows of subject {key[0]} trial "
                            f"{key[1]} are not contiguous (they appeared before line "
                            f"{start_line}); sort the table by subject and trial"
                        )
                    done.add(key)
                    current, parts, part_labels, start_line = key, [], [], first + a
                parts.append(values[a:b])
                part_labels.append(labels[a:b])
        flush()
    return writer.target


def _pattern_regex(pattern: str, source: str) -> tuple[re.Pattern[str], list[str]]:
    fields = re.findall(r"{(\w+)}", pattern)
    allowed = {"subject", "trial", "label", "modality"}
    for f in fields:
        if f not in allowed:
            raise DataError(
                f"{source}: files.pattern: field {{{f}}} is unknown; use "
                "{subject}, {trial}, {label}, {modality}"
            )
    for f in ("subject", "trial"):
        if f not in fields:
            raise DataError(f"{source}: files.pattern: no {{{f}}}; a file's path must name it")
    regex = ""
    for piece in re.split(r"({\w+})", pattern):
        m = re.fullmatch(r"{(\w+)}", piece)
        if m is None:
            regex += re.escape(piece)
        elif m.group(1) in ("subject", "trial"):
            regex += rf"(?P<{m.group(1)}>-?\d+)"
        else:
            regex += rf"(?P<{m.group(1)}>[^/]+?)"
    return re.compile(regex), fields


def import_files(folder: str | Path, mapping: ImportMapping, target: str | Path) -> Path:
    """Import a folder of per-recording CSV files (see the module docstring).

    Raises
    ------
    DataError
        No file matches the pattern, a file lacks a mapped column, holds a ragged row or a
        non-number, names an unknown modality or label, or a recording is invalid (each one
        line naming the file); nothing is written.
    ConfigError
        ``target`` exists and is not empty.
    """
    root = Path(folder).expanduser()
    f = mapping.files
    pattern = f.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise DataError(
            f"{mapping.source}: files.pattern: missing; give e.g. "
            'pattern = "{subject}/{trial}_{label}/{modality}.csv"'
        )
    regex, fields = _pattern_regex(pattern, mapping.source)
    label_column = f.get("label_column")
    per_sample = mapping.manifest.windowing.label_rate_hz is not None
    if per_sample and not label_column:
        raise DataError(
            f"{mapping.source}: files.label_column: missing; per-sample labels "
            "(windowing.label_rate_hz) are read from a column of the files"
        )
    if not per_sample and "label" not in fields:
        raise DataError(
            f"{mapping.source}: files.pattern: no {{label}}; name each recording's class in "
            "its path, or set windowing.label_rate_hz and files.label_column"
        )
    groups: dict[tuple[int, int, str], dict[str, Path]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        m = regex.fullmatch(rel)
        if m is None or not path.is_file():
            continue
        values = m.groupdict()
        modality = values.get("modality", "*")
        if modality != "*" and modality not in mapping.columns:
            raise DataError(
                f"{path}: modality {modality!r} is not in the mapping (it maps: "
                f"{', '.join(mapping.columns)}); add [modalities.{modality}] or remove the file"
            )
        key = (int(values["subject"]), int(values["trial"]), values.get("label", ""))
        groups.setdefault(key, {})[modality] = path
    if not groups:
        raise DataError(f"{root}: no file matches the pattern {pattern!r}; check files.pattern")
    with DatasetWriter(target, mapping.manifest) as writer:
        for (subject, trial, label_text), paths in sorted(groups.items()):
            signals: dict[str, NDArray[np.floating]] = {}
            labels: NDArray[np.int64] | None = None
            for modality, path in sorted(paths.items()):
                names = list(mapping.columns) if modality == "*" else [modality]
                cols = [c for n in names for c in mapping.columns[n]]
                text = path.read_text(encoding="utf-8-sig")
                header, _, body = text.partition("\n")
                wanted = cols + ([str(label_column)] if label_column else [])
                index = _header(path, header, wanted)
                lines = [x for x in io.StringIO(body).readlines() if x.strip()]
                extra = [str(label_column)] if label_column else []
                texts, numbers = _parse_block(path, lines, index, extra, cols, 2)
                at = 0
                for n in names:
                    k = len(mapping.columns[n])
                    signals[n] = numbers[:, at : at + k]
                    at += k
                if label_column:
                    here = np.array(
                        [mapping.class_id(v, str(path)) for v in texts[str(label_column)]],
                        dtype=np.int64,
                    )
                    if labels is not None and not np.array_equal(labels, here):
                        raise DataError(
                            f"{path}: its {label_column} column differs from the other files "
                            "of the recording; give the labels once, or identically"
                        )
                    labels = here
            label = None if per_sample else mapping.class_id(label_text, str(root))
            recording = Recording(subject, trial, signals, label=label, labels=labels)
            origin = ", ".join(str(p) for p in paths.values())
            writer.add(recording, _name(subject, trial, label_text), origin)
    return writer.target


def _name(subject: int, trial: int, label: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")
    return f"t{trial:06d}" + (f"_{safe}" if safe else "")
