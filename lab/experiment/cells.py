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


def cell_path(output: Path, cell: Cell) -> Path:
    """``OUTPUT/cells/<key>.json``."""
    return output / "cells" / f"{cell.key}.json"


def load_cell(path: Path, cell: Cell) -> dict[str, Any] | None:
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
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cell file {path} is corrupt ({exc}); {hint}") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("methods"), dict)
        or not isinstance(doc.get("recipe"), dict)
        or not isinstance(doc.get("cell"), dict)
    ):
        raise DataError(f"cell file {path} is not a cell results document; {hint}")
    if doc["cell"] != cell.to_dict():
        raise DataError(f"cell file {path} records cell {doc['cell']}, not {cell.key}; {hint}")
    for name, m in doc["methods"].items():
        if not isinstance(m, dict) or not all(
            isinstance(m.get(k), int | float) for k in ("accuracy", "macro_f1")
        ):
            raise DataError(f"cell file {path}: method {name!r} has no accuracy/macro_f1; {hint}")
    return doc


def write_json_atomic(doc: Mapping[str, Any], path: Path) -> Path:
    """Write ``doc`` to ``path`` through a ``.tmp`` sibling and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def merge_parts(doc: dict[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Fold a partial run's document ``new`` into the cell document ``doc``."""
    if doc is None:
        return dict(new)
    out = dict(doc)
    out["methods"] = {**doc.get("methods", {}), **new.get("methods", {})}
    out["history"] = {**doc.get("history", {}), **new.get("history", {})}
    out["phases"] = {**doc.get("phases", {}), **new.get("phases", {})}
    if int(new.get("binding", {}).get("pairs", 0) or 0) > 0:
        out["binding"] = new["binding"]
    out["wall_seconds"] = round(
        float(doc.get("wall_seconds", 0.0)) + float(new.get("wall_seconds", 0.0)), 3
    )
    for key in ("nodes", "config", "dataset", "engine"):
        if key not in out and key in new:
            out[key] = new[key]
    return out


def centralised_part(result: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """A cell-document fragment from ``run_centralised``'s dict."""
    return {
        "methods": {
            CENTRALISED: {
                "accuracy": round(float(result["accuracy"]), 6),
                "macro_f1": round(float(result["macro_f1"]), 6),
                "seconds": round(float(result.get("seconds", seconds)), 3),
            }
        },
        "wall_seconds": round(seconds, 3),
        "centralised": {
            "binding": dict(result.get("binding", {})),
            "test_samples": result.get("test_samples"),
            "history": dict(result.get("history", {})),
        },
    }


def budget_part(doc: Mapping[str, Any], budget: int, methods: Sequence[str]) -> dict[str, Any]:
    """The cell document of one label budget, cut from a several-budget simulation."""
    part = dict(doc)
    scores = doc.get("label_budgets", {}).get(str(budget))
    if scores is None:  # a single-budget run
        scores = doc.get("methods", {})
    seconds = {n: m.get("seconds") for n, m in doc.get("methods", {}).items()}
    part["methods"] = {
        name: {**scores[name], "seconds": seconds.get(name, 0.0)}
        for name in methods
        if name in scores
    }
    part.pop("label_budgets", None)
    return part
