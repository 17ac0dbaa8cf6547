"""The CSV table reader as it was before the pyarrow reader (commit d464230), kept verbatim
as the reference the new importer's output is compared with, byte for byte
(tests/data/test_table_import_reference.py). Not used by mmbind itself.

Only what the pyarrow reader replaced is kept here (reading the table in blocks, parsing them,
converting the id and label cells, grouping rows into recordings); the mapping file, the
header check and the id parsing are unchanged and come from
:mod:`mmbind.client.data.csv_import` itself.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmbind.client.data.csv_import import ImportMapping, _header, _int_column, _same_width
from mmbind.client.data.folder_writer import DatasetWriter
from mmbind.client.data.recording import Recording
from mmbind.errors import DataError

__all__ = ["ImportMapping", "import_table"]

_CHUNK_BYTES = 8 << 20


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
