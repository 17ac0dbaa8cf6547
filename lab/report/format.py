"""Number, table and matrix formatting shared by the report's figures and sections."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mmbind.lab.experiment.grid import METHOD_ORDER, METHOD_TITLES


def number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def pct(value: Any, std: Any = None, digits: int = 2) -> str:
    """A fraction as a percentage, ``"78.86"`` or ``"78.86 ± 1.20"``; ``"—"`` when absent."""
    v = number(value)
    if v is None:
        return "—"
    s = number(std)
    return f"{100 * v:.{digits}f}" + ("" if s is None else f" ± {100 * s:.{digits}f}")


def dec(value: Any, std: Any = None, digits: int = 3) -> str:
    """A number with ``digits`` decimals, ``"0.763"`` or ``"0.763 ± 0.010"``."""
    v = number(value)
    if v is None:
        return "—"
    s = number(std)
    return f"{v:.{digits}f}" + ("" if s is None else f" ± {s:.{digits}f}")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    right = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def method_title(name: str) -> str:
    return METHOD_TITLES.get(name, name)


def in_report_order(names: Sequence[str]) -> list[str]:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(names, key=lambda m: rank.get(m, len(rank)))


# --------------------------------------------------------------------- figures
def square_matrix(matrix: Any) -> list[list[float]] | None:
    """``matrix`` as a K×K list of floats, or ``None`` when it is not one."""
    if not isinstance(matrix, list) or not matrix:
        return None
    k = len(matrix)
    rows: list[list[float]] = []
    for row in matrix:
        if not isinstance(row, list) or len(row) != k:
            return None
        values = [number(v) for v in row]
        if any(v is None for v in values):
            return None
        rows.append([float(v) for v in values if v is not None])
    return rows


def first_with(
    cells: Sequence[Mapping[str, Any]], key: str
) -> tuple[str, list[list[float]]] | None:
    for doc in cells:
        matrix = square_matrix((doc.get("binding") or {}).get(key))
        if matrix is not None:
            return str((doc.get("cell") or {}).get("key", "?")), matrix
    return None


def trace_share(matrix: list[list[float]]) -> float | None:
    total = sum(sum(r) for r in matrix)
    return sum(matrix[i][i] for i in range(len(matrix))) / total if total else None


def figure_lines(name: str, notes: Mapping[str, str], caption: str) -> list[str]:
    note = notes.get(name)
    if note is None:
        return []
    if note:
        return [f"*Figure `{name}` skipped: {note}.*", ""]
    return [f"![{caption}]({name})", "", f"*{caption}*", ""]
