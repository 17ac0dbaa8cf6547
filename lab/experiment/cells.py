"""Cell files (``OUTPUT/cells/<key>.json``) and the documents a cell's runs leave."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbind.errors import DataError
from mmbind.lab.experiment.grid import Cell
from mmbind.methods import CENTRALISED
from mmbind.results_model import (
    CellDocument,
    CellPart,
    CentralisedSummary,
    MethodScore,
    ResultsDocument,
    RunResults,
)


def cell_path(output: Path, cell: Cell) -> Path:
    """``OUTPUT/cells/<key>.json``."""
    return output / "cells" / f"{cell.key}.json"


def load_cell(path: Path, cell: Cell) -> CellDocument | None:
    """The recorded document of ``cell``, or ``None`` when it has no file.

    Raises
    ------
    DataError
        The file is unreadable, not JSON, or not a cell document for ``cell``.
    """
    if not path.exists():
        return None
    hint = "delete it to run that cell again, or pass --fresh to run every cell again"
    try:
        doc = CellDocument.read(path)
    except DataError as exc:
        raise DataError(f"cell file {exc}; {hint}") from None
    if doc.cell.to_json() != cell.to_dict():
        raise DataError(
            f"cell file {path} records cell {doc.cell.to_json()}, not {cell.key}; {hint}"
        )
    return doc


def write_json_atomic(doc: Mapping[str, Any] | ResultsDocument, path: Path) -> Path:
    """Write ``doc`` to ``path`` through a ``.tmp`` sibling and :func:`os.replace`."""
    if isinstance(doc, ResultsDocument):
        doc = doc.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def merge_parts(doc: CellPart | None, new: CellPart) -> CellPart:
    """Fold a partial run's document ``new`` into the cell document ``doc``.

    Methods, curves and phases are merged (``new``'s win), the wall seconds added; the
    binding is ``new``'s when it bound any pairs; nodes, config, dataset and engine are
    taken from ``new`` where ``doc`` lacks them.
    """
    if doc is None:
        return new.model_copy(deep=True)
    out = doc.model_copy(deep=True)
    out.methods = {**doc.methods, **new.methods}
    out.history = {**(doc.history or {}), **(new.history or {})}
    out.phases = {**(doc.phases or {}), **(new.phases or {})}
    if new.binding is not None and new.binding.pairs > 0:
        out.binding = new.binding
    out.wall_seconds = round(float(doc.wall_seconds or 0.0) + float(new.wall_seconds or 0.0), 3)
    for key in ("nodes", "config", "dataset", "engine"):
        if key not in out.model_fields_set and key in new.model_fields_set:
            setattr(out, key, getattr(new, key))
    return out


def centralised_part(result: Mapping[str, Any], seconds: float) -> CellPart:
    """A cell-document fragment from ``run_centralised``'s dict."""
    return CellPart(
        methods={
            CENTRALISED: MethodScore(
                accuracy=round(float(result["accuracy"]), 6),
                macro_f1=round(float(result["macro_f1"]), 6),
                seconds=round(float(result.get("seconds", seconds)), 3),
            )
        },
        wall_seconds=round(seconds, 3),
        centralised=CentralisedSummary.model_validate(
            {
                "binding": dict(result.get("binding", {})),
                "test_samples": result.get("test_samples"),
                "history": dict(result.get("history", {})),
            }
        ),
    )


def budget_part(doc: RunResults, budget: int, methods: Sequence[str]) -> CellPart:
    """The cell document of one label budget, cut from a several-budget simulation."""
    scores = (doc.label_budgets or {}).get(str(budget))
    if scores is None:  # a single-budget run
        scores = doc.methods
    part = {k: v for k, v in doc.to_json().items() if k != "label_budgets"}
    part["methods"] = {
        name: {**scores[name].to_json(), "seconds": _seconds(doc, name)}
        for name in methods
        if name in scores
    }
    return CellPart.model_validate(part)


def _seconds(doc: RunResults, name: str) -> float | int | None:
    method = doc.methods.get(name)
    return 0.0 if method is None else method.seconds
