"""``mmbind data import``: CSV or Parquet data into a data set folder, through a small mapping
file.

Two shapes of input (docs/dataset-format.md, "Importing CSV"):

* **a long table** (:func:`import_table`): one CSV or Parquet file, one row per time step,
  with a subject column, a label column, optionally a trial column, and sensor columns that
  the mapping assigns to modalities. All columns share the table's ``rate_hz``. The rows of one
  (subject, trial) must be contiguous; each such block is one recording, labelled per row
  (``windowing.mode = "sliding"``) or, in the other modes, cut into one recording per run of
  rows with the same label. The table is read in blocks (CSV: 32 MB parsed by pyarrow;
  Parquet: batches of its row groups): memory holds one recording, not the file.
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmbind.dataset_manifest import DatasetManifest
from mmbind.errors import DataError

from .folder_writer import DatasetWriter
from .recording import Recording

__all__ = ["ImportMapping", "import_files", "import_table", "table_format"]

log = logging.getLogger(__name__)

_CHUNK_BYTES = 32 << 20  # a CSV block: whole lines, read and parsed at once
_ARROW_BLOCK = 4 << 20  # pyarrow's unit of parallel parsing inside a block


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


def _stripped(value: str) -> NDArray[np.str_]:
    """A text cell as the CSV reader keeps it: a one-element array, whitespace stripped."""
    return np.char.strip(np.array([value], dtype=str))


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
    first_line: int | NDArray[np.int64],
) -> tuple[dict[str, NDArray[np.str_]], NDArray[np.float64]]:  # fmt: skip
    """Parse CSV lines: the text columns as strings, the numeric ones as ``(rows, k)`` floats.

    numpy's C parser reads well-formed blocks; a block it refuses (ragged rows, empty cells,
    a non-number) is read again row by row, which finds the line to name, or reads empty
    cells as NaN. ``first_line``: the line number of ``lines[0]``, or of every line.
    """

    def line_of(i: int) -> int:
        return int(first_line + i) if isinstance(first_line, int) else int(first_line[i])

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
                f"{path}: line {line_of(i)}: {len(row)} fields, the header has {width}; "
                "every row needs one value per column (ragged rows)"
            )
    texts = {c: np.array([r[index[c]].strip() for r in rows], dtype=str) for c in text_cols}
    cols = [index[c] for c in num_cols]
    try:
        values = np.array(
            [[r[c] if r[c] != "" else "nan" for c in cols] for r in rows], dtype=float
        )
    except ValueError:
        for i, r in enumerate(rows):
            for name in num_cols:
                cell = r[index[name]]
                try:
                    np.array([cell if cell != "" else "nan"], dtype=float)
                except ValueError:
                    raise DataError(
                        f"{path}: line {line_of(i)}, column {name!r}: {cell!r} is not a number"
                        "; a sensor value must be a number (empty cells read as NaN)"
                    ) from None
        raise  # unreachable: some cell failed above
    return texts, values.reshape(len(rows), len(cols))


@dataclass
class _Rows:
    """A block of table rows, converted: what the grouping into recordings needs.

    Attributes
    ----------
    subjects, trials, labels : ndarray
        ``(rows,)`` int64: subject and trial ids, class ids (``-1``: unlabelled).
    signals : dict[str, ndarray]
        Modality -> ``(rows, channels)`` float64, C-contiguous.
    lines : ndarray
        ``(rows,)`` int64: the line (CSV) or row (Parquet) number of each row, for messages.
    """

    subjects: NDArray[np.int64]
    trials: NDArray[np.int64]
    labels: NDArray[np.int64]
    signals: dict[str, NDArray[np.float64]]
    lines: NDArray[np.int64]


@dataclass(frozen=True)
class _TableColumns:
    """The columns a table import reads: text ones (subject, label, trial) and sensor ones."""

    subject: str
    label: str
    trial: str | None
    modalities: dict[str, tuple[str, ...]]

    @property
    def text(self) -> list[str]:
        return [self.subject, self.label] + ([self.trial] if self.trial else [])

    @property
    def numeric(self) -> list[str]:
        return [c for cols in self.modalities.values() for c in cols]


def _converted(
    cols: _TableColumns,
    mapping: ImportMapping,
    cells: Callable[[str], tuple[list[Any], NDArray[np.int64]]],
    lines: NDArray[np.int64],
    unit: str,
    where: str,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Subject, trial and class ids of a block, converting each run of equal cells once.

    ``cells(column)`` gives a text column as its runs: ``(values, run ends)``. A bad cell is
    named by its line (``unit`` ``"line"`` or ``"row"``) and column.
    """
    n = len(lines)

    def runs(column: str, fn: Callable[[str, str], int]) -> NDArray[np.int64]:
        values, ends = cells(column)
        starts = np.r_[0, ends[:-1]]
        ids = np.empty(len(values), dtype=np.int64)
        for i, (value, a) in enumerate(zip(values, starts, strict=True)):
            ids[i] = fn("" if value is None else str(value), f"{where}: {unit} {lines[a]}")
        return np.repeat(ids, np.diff(np.r_[0, ends]))

    def integer(column: str) -> Callable[[str, str], int]:
        def parse(value: str, at: str) -> int:
            return int(_int_column(_stripped(value), column, at)[0])

        return parse

    subjects = runs(cols.subject, integer(cols.subject))
    trials = runs(cols.trial, integer(cols.trial)) if cols.trial else np.zeros(n, dtype=np.int64)
    labels = runs(cols.label, lambda value, at: mapping.class_id(str(_stripped(value)[0]), at))
    return subjects, trials, labels


def _text_rows(
    path: Path,
    text: str,
    first_line: int,
    index: dict[str, int],
    cols: _TableColumns,
    mapping: ImportMapping,
) -> tuple[_Rows, int]:
    """Parse CSV text with the exact reader (``np.loadtxt``, then row by row): the blocks the
    fast reader leaves to it (quotes, lone ``\\r`` line ends, blank lines, anything it
    refuses). Returns the rows and the number of lines the text held.
    """
    raw = io.StringIO(text, newline="").readlines()
    keep = [i for i, x in enumerate(raw) if x.strip()]
    lines = [raw[i] for i in keep]
    numbers = first_line + np.array(keep, dtype=np.int64)
    if not lines:
        empty = np.zeros(0, dtype=np.int64)
        none = {m: np.zeros((0, len(c))) for m, c in cols.modalities.items()}
        return _Rows(empty, empty, empty, none, empty), len(raw)
    texts, values = _parse_block(path, lines, index, cols.text, cols.numeric, numbers)

    def cells(column: str) -> tuple[list[Any], NDArray[np.int64]]:
        column_cells = texts[column]
        if len(column_cells) < 2:
            return list(column_cells), np.array([len(column_cells)], dtype=np.int64)
        flat: NDArray[Any] = np.ascontiguousarray(column_cells)
        if flat.dtype.kind == "U":  # compare the code points: faster than string comparison
            flat = flat.view(np.uint32).reshape(len(column_cells), -1)
        change = flat[1:] != flat[:-1]
        if change.ndim == 2:
            change = change.any(axis=1)
        ends = np.r_[np.flatnonzero(change) + 1, len(column_cells)].astype(np.int64)
        return list(column_cells[ends - 1]), ends

    where = str(path)
    subjects, trials, labels = _converted(cols, mapping, cells, numbers, "line", where)
    signals: dict[str, NDArray[np.float64]] = {}
    at = 0
    for name, c in cols.modalities.items():
        signals[name] = np.ascontiguousarray(values[:, at : at + len(c)])
        at += len(c)
    return _Rows(subjects, trials, labels, signals, numbers), len(raw)


def _arrow_rows(
    table: Any, first: int, cols: _TableColumns, mapping: ImportMapping,
    where: str, unit: str, name_of: Callable[[str], str],
) -> _Rows:  # fmt: skip
    """Rows from a pyarrow table (a CSV block or a Parquet batch): sensor columns as float64,
    text columns converted once per run of equal cells.

    ``name_of(column)`` is the table's name of a mapped column; ``first`` the line or row
    number of its first row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    lines = np.arange(first, first + n, dtype=np.int64)

    def cells(column: str) -> tuple[list[Any], NDArray[np.int64]]:
        array = table.column(name_of(column))
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
            array = array.cast(pa.string())
        encoded = pc.run_end_encode(array)
        ends = encoded.run_ends.to_numpy().astype(np.int64)
        return encoded.values.to_pylist(), ends

    subjects, trials, labels = _converted(cols, mapping, cells, lines, unit, where)
    signals: dict[str, NDArray[np.float64]] = {}
    for name, c in cols.modalities.items():
        out = np.empty((n, len(c)), dtype=np.float64)
        for j, column in enumerate(c):
            values = table.column(name_of(column))
            if isinstance(values, pa.ChunkedArray):
                out[:, j] = values.to_numpy()  # nulls (empty cells) read as NaN
            else:
                out[:, j] = values.to_numpy(zero_copy_only=False)
        signals[name] = out
    return _Rows(subjects, trials, labels, signals, lines)


def _csv_rows(path: Path, cols: _TableColumns, mapping: ImportMapping) -> Iterator[_Rows]:
    """The rows of a long CSV table, block by block (a few MB each: bounded memory).

    Each block of whole lines is parsed by pyarrow's multi-threaded C++ reader, with explicit
    column types (float64 sensor columns, text for the others). A block holding a quote, a
    lone ``\\r``, a blank line, or anything pyarrow refuses (ragged rows, cells that are not
    numbers, text that is not UTF-8) is read again by the exact reader
    (:func:`_text_rows`), which accepts what it accepted before and names the line, column
    and fix of what it refuses. Both give the same values for a cell: the same shortest
    round-trip decimal parsing (tested byte for byte against the previous importer).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open("rb") as fh:
        head = fh.readline()
        try:
            header = head.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(
                f"{path}: line 1: not UTF-8 text; save the table as UTF-8 CSV"
            ) from None
        names = next(csv.reader([header]), [])
        stripped = [n.strip() for n in names]
        seen: set[str] = set()
        for name in stripped:
            if name in seen:
                raise DataError(
                    f"{path}: line 1: column {name!r} appears twice in the header; give every "
                    "column its own name"
                )
            seen.add(name)
        index = _header(path, header, cols.text + cols.numeric)
        field = {c: f"f{index[c]}" for c in cols.text + cols.numeric}
        types = {field[c]: pa.float64() for c in cols.numeric}
        types.update({field[c]: pa.string() for c in cols.text})
        read = pacsv.ReadOptions(
            column_names=[f"f{i}" for i in range(len(names))],
            block_size=_ARROW_BLOCK,
            use_threads=True,
        )
        parse = pacsv.ParseOptions(delimiter=",", quote_char=False, ignore_empty_lines=True)
        convert = pacsv.ConvertOptions(
            column_types=types,
            include_columns=list(types),
            null_values=[""],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        line = 2
        while True:
            block = fh.read(_CHUNK_BYTES)
            if not block:
                return
            if not block.endswith(b"\n"):
                block += fh.readline()
            count = block.count(b"\n") + (not block.endswith(b"\n"))
            # pyarrow skips blank lines (then fewer rows than lines: the exact reader numbers
            # the lines); quotes and lone \r line ends go to the exact reader too.
            plain = b'"' not in block and (
                b"\r" not in block or block.count(b"\r") == block.count(b"\r\n")
            )
            rows = None
            if plain:
                try:
                    table = pacsv.read_csv(
                        pa.py_buffer(block), read_options=read, parse_options=parse,
                        convert_options=convert,
                    )  # fmt: skip
                    if table.num_rows == count:
                        rows = _arrow_rows(
                            table, line, cols, mapping, str(path), "line", field.__getitem__
                        )
                except pa.ArrowInvalid:
                    rows = None
            if rows is None:
                try:
                    text = block.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad = line + block[: exc.start].count(b"\n")
                    raise DataError(
                        f"{path}: line {bad}: not UTF-8 text; save the table as UTF-8 CSV"
                    ) from None
                rows, count = _text_rows(path, text, line, index, cols, mapping)
            if len(rows.lines):
                yield rows
            line += count


def _table_columns(mapping: ImportMapping) -> _TableColumns:
    t = mapping.table
    if not t:
        raise DataError(f"{mapping.source}: no [table] section; a table import needs one")
    trial = t.get("trial")
    return _TableColumns(
        str(t["subject"]), str(t["label"]), str(trial) if trial else None, dict(mapping.columns)
    )


def _write_rows(
    blocks: Iterable[_Rows], path: Path, mapping: ImportMapping, target: str | Path, unit: str
) -> Path:
    """Group table rows into recordings (one per contiguous (subject, trial) block, cut at
    label changes unless labels are per sample) and write them with a :class:`DatasetWriter`.
    """
    per_sample = mapping.manifest.windowing.label_rate_hz is not None
    done: set[tuple[int, int]] = set()
    current: tuple[int, int] | None = None
    parts: dict[str, list[NDArray[np.float64]]] = {m: [] for m in mapping.columns}
    part_labels: list[NDArray[np.int64]] = []
    start_line = 2
    counters: dict[tuple[int, int], int] = {}

    with DatasetWriter(target, mapping.manifest) as writer:

        def flush() -> None:
            if current is None or not part_labels:
                return
            labels = np.concatenate(part_labels)
            signals: dict[str, NDArray[np.floating]] = {
                m: p[0] if len(p) == 1 else np.concatenate(p) for m, p in parts.items()
            }
            subject, trial = current
            origin = f"{path}: {unit}s from {start_line}"
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

        for rows in blocks:
            subjects, trials = rows.subjects, rows.trials
            change = np.flatnonzero((np.diff(subjects) != 0) | (np.diff(trials) != 0)) + 1
            for a, b in zip(np.r_[0, change], np.r_[change, len(subjects)], strict=True):
                key = (int(subjects[a]), int(trials[a]))
                if key != current:
                    flush()
                    if key in done:
                        raise DataError(
                            f"{path}: {unit} {rows.lines[a]}: the rows of subject {key[0]} trial "
                            f"{key[1]} are not contiguous (they appeared before {unit} "
                            f"{start_line}); sort the table by subject and trial"
                        )
                    done.add(key)
                    current, start_line = key, int(rows.lines[a])
                    parts = {m: [] for m in mapping.columns}
                    part_labels = []
                for m, signal in rows.signals.items():
                    parts[m].append(signal[a:b])
                part_labels.append(rows.labels[a:b])
        flush()
    return writer.target


#: Rows of a Parquet table read at once (its row groups are read batch by batch).
_PARQUET_ROWS = 1 << 18
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _parquet_rows(path: Path, cols: _TableColumns, mapping: ImportMapping) -> Iterator[_Rows]:
    """The rows of a Parquet table, batch by batch (``iter_batches``: bounded memory).

    Sensor columns may be floating-point or integer (read as float64; nulls as NaN, which
    the writer refuses as it refuses empty CSV cells); subject and trial columns integer or
    text; the label column text or integer (nulls: unlabelled). Values give the recordings
    a CSV of the same table gives.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]}); write it again "
            "or give --format csv"
        ) from None
    names = list(schema.names)
    for column in cols.text + cols.numeric:
        if column not in names:
            raise DataError(
                f"{path}: column {column!r} is missing (the table has: {', '.join(names)}); "
                "fix the mapping's column names or the file"
            )
    for column in cols.text + cols.numeric:
        kind = schema.field(column).type
        base = kind.value_type if pa.types.is_dictionary(kind) else kind
        text = pa.types.is_string(base) or pa.types.is_large_string(base)
        if column in cols.numeric:
            ok = pa.types.is_floating(kind) or pa.types.is_integer(kind)
            want = "a floating-point or integer column"
        else:
            ok = text or pa.types.is_integer(base)
            want = "an integer or text column"
        if not ok:
            raise DataError(
                f"{path}: column {column!r} has type {kind}; it must be {want} (write it as "
                "float64 for sensor values, int64 or string for ids and labels)"
            )
    row = 1
    batches = parquet.iter_batches(batch_size=_PARQUET_ROWS, columns=cols.text + cols.numeric)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{path}: rows from {row}: cannot read the Parquet data "
                f"({str(exc).splitlines()[0]}); write the file again"
            ) from None
        if batch is None:
            return
        if batch.num_rows:
            yield _arrow_rows(batch, row, cols, mapping, str(path), "row", str)
        row += batch.num_rows


def table_format(path: str | Path, format: str | None = None) -> str:
    """The format of a table file: ``format`` when given, else ``"parquet"`` for a
    ``.parquet`` or ``.pq`` file and ``"csv"`` for any other.

    Raises
    ------
    DataError
        An unknown ``format``.
    """
    if format is None:
        return "parquet" if Path(path).suffix.lower() in _PARQUET_SUFFIXES else "csv"
    if format not in ("csv", "parquet"):
        raise DataError(f"table format {format!r} is unknown; give csv or parquet")
    return format


def import_table(
    table: str | Path, mapping: ImportMapping, target: str | Path, *, format: str | None = None
) -> Path:
    """Import a long table (see the module docstring) into the data set folder ``target``.

    Parameters
    ----------
    table : str or Path
        A CSV file or a Parquet file.
    mapping : ImportMapping
    target : str or Path
        The folder to create.
    format : {"csv", "parquet"}, optional
        The table's format; default: from the file's suffix (:func:`table_format`).

    Raises
    ------
    DataError
        A missing or repeated column, a column of the wrong type (Parquet), a ragged row, a
        non-numeric sensor value, an unknown label, a non-integer subject or trial, the rows
        of one (subject, trial) not contiguous, text that is not UTF-8, a damaged Parquet
        file, or an invalid recording (each one line naming the file and the line or row);
        nothing is written.
    ConfigError
        ``target`` exists and is not empty.
    """
    path = Path(table).expanduser()
    kind = table_format(path, format)
    cols = _table_columns(mapping)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the table's path")
    if kind == "parquet":
        return _write_rows(_parquet_rows(path, cols, mapping), path, mapping, target, "row")
    return _write_rows(_csv_rows(path, cols, mapping), path, mapping, target, "line")


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
