"""Aggregates of an experiment's cells (results.json) and paired comparisons with another."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbind.errors import DataError
from mmbind.lab.experiment.grid import Grid, order_methods, recipe_mismatch
from mmbind.lab.paper import PAPER
from mmbind.methods import CENTRALISED


def compare_cells(
    docs: Sequence[Mapping[str, Any]], baseline: Path, methods: Sequence[str]
) -> dict[str, Any]:
    """Paired differences of each method against another experiment's cells (same keys).

    Recipes are told apart by runs on the same cells (split x seed x budget x nodes per role):
    one test subject carries several points of sampling noise, which pairing removes.

    Parameters
    ----------
    docs : sequence of dict
        This experiment's cell documents (each with ``cell`` and ``methods``).
    baseline : Path
        Another experiment folder (its ``cells/*.json``), e.g. the current default recipe.
    methods : sequence of str
        The methods to compare.

    Returns
    -------
    dict
        ``against`` (the folder), ``recipe_differences`` (``key: baseline -> this``) and, per
        method, for ``accuracy`` and ``macro_f1``: ``mean`` and ``std`` of the differences
        (this minus baseline), ``wins``/``losses``/``ties`` and ``runs`` (shared cells),
        with both sides' means over those cells.

    Raises
    ------
    DataError
        ``baseline`` has no cell files.
    """
    files = sorted((baseline / "cells").glob("*.json"))
    if not files:
        raise DataError(
            f"--compare {baseline}: no cell files under {baseline / 'cells'}; give the folder "
            "of another mmbind experiment"
        )
    theirs: dict[str, Mapping[str, Any]] = {}
    recipe: Mapping[str, Any] = {}
    for path in files:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"--compare: cell file {path} is corrupt ({exc})") from None
        key = doc.get("cell", {}).get("key")
        if key:
            theirs[key] = doc
            recipe = doc.get("recipe", recipe)
    ours_recipe: Mapping[str, Any] = next((d["recipe"] for d in docs if d.get("recipe")), {})
    out: dict[str, Any] = {
        "against": str(baseline),
        "recipe_differences": recipe_mismatch(recipe, ours_recipe),
        "methods": {},
    }
    for name in order_methods(methods):
        entry: dict[str, Any] = {}
        for metric in ("accuracy", "macro_f1"):
            pairs = [
                (float(d["methods"][name][metric]), float(other["methods"][name][metric]))
                for d in docs
                if name in d.get("methods", {})
                and (other := theirs.get(d.get("cell", {}).get("key", ""))) is not None
                and name in other.get("methods", {})
            ]
            if not pairs:
                continue
            diffs = [a - b for a, b in pairs]
            mean, std, n = summarise(diffs)
            entry[metric] = {
                "mean": mean,
                "std": std,
                "runs": n,
                "wins": sum(x > 0 for x in diffs),
                "losses": sum(x < 0 for x in diffs),
                "ties": sum(x == 0 for x in diffs),
                "this": summarise([a for a, _ in pairs])[0],
                "baseline": summarise([b for _, b in pairs])[0],
            }
        if entry:
            out["methods"][name] = entry
    return out


# ---------------------------------------------------------------- aggregation
def _finite(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def summarise(values: Sequence[Any]) -> tuple[float | None, float | None, int]:
    """``(mean, sample std, n)`` of the finite numbers in ``values``.

    The std is ``None`` for fewer than two values; the mean ``None`` for none.
    """
    xs = _finite(values)
    if not xs:
        return None, None, 0
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if len(xs) > 1 else None
    return round(mean, 6), (None if std is None else round(std, 6)), len(xs)


def labelled_samples(doc: Mapping[str, Any], budget: int) -> int | None:
    """Labelled samples the cell trained on: ``min(budget, n)`` summed over labelled nodes."""
    nodes = doc.get("nodes") or []
    sizes = [
        int(n.get("num_samples", 0))
        for n in nodes
        if isinstance(n, dict) and n.get("labelled") and n.get("trains")
    ]
    if not sizes:
        return None
    return sum(n if budget <= 0 else min(budget, n) for n in sizes)


def _binding_summary(docs: Sequence[Mapping[str, Any]], where: str) -> dict[str, Any]:
    found = [(d.get(where) or {} if where else d).get("binding") for d in docs]
    bindings = [b for b in found if isinstance(b, dict) and b.get("pairs")]
    acc, acc_std, acc_n = summarise([b.get("pairing_accuracy") for b in bindings])
    sim, sim_std, _ = summarise([b.get("mean_similarity") for b in bindings])
    pairs, _, _ = summarise([b.get("pairs") for b in bindings])
    return {
        "pairs": pairs,
        "pairing_accuracy": acc,
        "pairing_accuracy_std": acc_std,
        "mean_similarity": sim,
        "mean_similarity_std": sim_std,
        "runs": acc_n,
    }


def _group(grid: Grid, docs: Sequence[Mapping[str, Any]], budget: int) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for name in order_methods(grid.methods):
        runs = [d["methods"][name] for d in docs if name in d.get("methods", {})]
        acc, acc_std, n = summarise([r.get("accuracy") for r in runs])
        f1, f1_std, _ = summarise([r.get("macro_f1") for r in runs])
        secs, _, _ = summarise([r.get("seconds") for r in runs])
        methods[name] = {
            "accuracy": acc,
            "macro_f1": f1,
            "accuracy_std": acc_std,
            "macro_f1_std": f1_std,
            "runs": n,
            "seconds": secs,
        }
    group: dict[str, Any] = {
        "methods": methods,
        "binding": _binding_summary(docs, ""),
        "runs": len(docs),
        "labelled_samples": sorted(
            {used for d in docs if (used := labelled_samples(d, budget)) is not None}
        ),
        "wall_seconds": round(sum(float(d.get("wall_seconds", 0.0)) for d in docs), 3),
    }
    if CENTRALISED in grid.methods:
        group["binding_centralised"] = _binding_summary(docs, "centralised")
    return group


def aggregate(grid: Grid, docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The experiment's results.json document from the cells' documents (grid order).

    Parameters
    ----------
    grid : Grid
        The grid the documents belong to.
    docs : sequence of dict
        One cell document per :meth:`Grid.cells` entry, same order.

    Returns
    -------
    dict
        ``methods`` and ``binding`` of the headline group (first nodes-per-role
        value, first label budget), ``label_budgets`` (first nodes-per-role value),
        ``nodes_per_role`` (when several values), ``cells``, ``grid``, ``paper``...
    """
    cells = grid.cells()
    if len(docs) != len(cells):
        raise ValueError(f"aggregate: {len(docs)} documents for {len(cells)} cells")
    by_npr: dict[str, Any] = {}
    for npr in grid.nodes_per_role:
        budgets: dict[str, Any] = {}
        for budget in grid.label_budgets:
            group = [
                d
                for c, d in zip(cells, docs, strict=True)
                if c.nodes_per_role == npr and c.label_budget == budget
            ]
            budgets[str(budget)] = _group(grid, group, budget)
        by_npr[str(npr)] = {"label_budgets": budgets}
    first = by_npr[str(grid.nodes_per_role[0])]["label_budgets"]
    headline = first[str(grid.label_budgets[0])]
    results: dict[str, Any] = {
        "dataset": grid.dataset,
        "engine": "simulation",
        "kind": "experiment",
        "headline": {
            "label_budget": grid.label_budgets[0],
            "nodes_per_role": grid.nodes_per_role[0],
        },
        "methods": headline["methods"],
        "binding": headline["binding"],
        "label_budgets": first,
    }
    if "binding_centralised" in headline:
        results["binding_centralised"] = headline["binding_centralised"]
    if len(grid.nodes_per_role) > 1:
        results["nodes_per_role"] = by_npr
    results["std"] = "sample standard deviation (ddof=1) over seeds x splits; null for one run"
    results["cells"] = [
        {
            **cell.to_dict(),
            "file": f"cells/{cell.key}.json",
            "wall_seconds": doc.get("wall_seconds"),
            "labelled_samples": labelled_samples(doc, cell.label_budget),
            "methods": {
                name: {"accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1")}
                for name, m in doc.get("methods", {}).items()
                if name in grid.methods
            },
            "binding": {
                k: doc.get("binding", {}).get(k)
                for k in ("pairs", "pairing_accuracy", "mean_similarity")
            },
        }
        for cell, doc in zip(cells, docs, strict=True)
    ]
    walls = [float(d.get("wall_seconds", 0.0)) for d in docs]
    results["wall_seconds"] = round(sum(walls), 3)
    results["wall_seconds_per_cell"] = round(statistics.fmean(walls), 3) if walls else 0.0
    results["grid"] = grid.to_dict()
    results["config"] = grid.recipe()
    results["paper"] = PAPER
    return results
