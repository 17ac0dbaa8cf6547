"""Aggregates of an experiment's cells (results.json) and paired comparisons with another."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbind.errors import DataError
from mmbind.lab.experiment.grid import Cell, Grid, order_methods, recipe_mismatch
from mmbind.lab.paper import PAPER
from mmbind.methods import CENTRALISED
from mmbind.results_model import (
    BindingAggregate,
    BindingSummary,
    CellBinding,
    CellDocument,
    CellEntry,
    CellGroup,
    CellPart,
    CellScore,
    ExperimentResults,
    Headline,
    MethodSummary,
    NodesPerRoleGroup,
)


def compare_cells(
    docs: Sequence[CellDocument | None], baseline: Path, methods: Sequence[str]
) -> dict[str, Any]:
    """Paired differences of each method against another experiment's cells (same keys).

    Recipes are told apart by runs on the same cells (split x seed x budget x nodes per role):
    one test subject carries several points of sampling noise, which pairing removes.

    Parameters
    ----------
    docs : sequence of CellDocument or None
        This experiment's cell documents (``None`` for a cell without one).
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
        ``baseline`` has no cell files, or one is corrupt or not a cell document.
    """
    files = sorted((baseline / "cells").glob("*.json"))
    if not files:
        raise DataError(
            f"--compare {baseline}: no cell files under {baseline / 'cells'}; give the folder "
            "of another mmbind experiment"
        )
    theirs: dict[str, CellDocument] = {}
    recipe: Mapping[str, Any] = {}
    for path in files:
        try:
            doc = CellDocument.read(path)
        except DataError as exc:
            raise DataError(f"--compare: cell file {exc}") from None
        theirs[doc.cell.key] = doc
        recipe = doc.recipe
    ours = [d for d in docs if d is not None]
    ours_recipe: Mapping[str, Any] = next((d.recipe for d in ours if d.recipe), {})
    out: dict[str, Any] = {
        "against": str(baseline),
        "recipe_differences": recipe_mismatch(recipe, ours_recipe),
        "methods": {},
    }
    for name in order_methods(methods):
        entry: dict[str, Any] = {}
        for metric in ("accuracy", "macro_f1"):
            pairs = [
                (
                    float(getattr(d.methods[name], metric)),
                    float(getattr(other.methods[name], metric)),
                )
                for d in ours
                if name in d.methods
                and (other := theirs.get(d.cell.key)) is not None
                and name in other.methods
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
def summarise(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """``(mean, sample std, n)`` of the finite numbers in ``values`` (``None`` left out).

    The std is ``None`` for fewer than two values; the mean ``None`` for none.
    """
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None, None, 0
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if len(xs) > 1 else None
    return round(mean, 6), (None if std is None else round(std, 6)), len(xs)


def labelled_samples(doc: CellPart | None, budget: int) -> int | None:
    """Labelled samples the cell trained on: ``min(budget, n)`` summed over labelled nodes."""
    nodes = (doc.nodes if doc is not None else None) or []
    sizes = [n.num_samples for n in nodes if n.labelled and n.trains]
    if not sizes:
        return None
    return sum(n if budget <= 0 else min(budget, n) for n in sizes)


def _binding_of(doc: CellPart | None, centralised: bool) -> BindingSummary | None:
    if doc is None:
        return None
    if centralised:
        return doc.centralised.binding if doc.centralised is not None else None
    return doc.binding


def _binding_summary(docs: Sequence[CellPart | None], centralised: bool) -> BindingAggregate:
    found = [_binding_of(d, centralised) for d in docs]
    bindings = [b for b in found if b is not None and b.pairs]
    acc, acc_std, acc_n = summarise([b.pairing_accuracy for b in bindings])
    sim, sim_std, _ = summarise([b.mean_similarity for b in bindings])
    pairs, _, _ = summarise([b.pairs for b in bindings])
    return BindingAggregate(
        pairs=pairs,
        pairing_accuracy=acc,
        pairing_accuracy_std=acc_std,
        mean_similarity=sim,
        mean_similarity_std=sim_std,
        runs=acc_n,
    )


def _group(grid: Grid, docs: Sequence[CellPart | None], budget: int) -> CellGroup:
    methods: dict[str, MethodSummary] = {}
    for name in order_methods(grid.methods):
        runs = [d.methods[name] for d in docs if d is not None and name in d.methods]
        acc, acc_std, n = summarise([r.accuracy for r in runs])
        f1, f1_std, _ = summarise([r.macro_f1 for r in runs])
        secs, _, _ = summarise([r.seconds for r in runs])
        methods[name] = MethodSummary(
            accuracy=acc,
            macro_f1=f1,
            accuracy_std=acc_std,
            macro_f1_std=f1_std,
            runs=n,
            seconds=secs,
        )
    group = CellGroup(
        methods=methods,
        binding=_binding_summary(docs, centralised=False),
        runs=len(docs),
        labelled_samples=sorted(
            {used for d in docs if (used := labelled_samples(d, budget)) is not None}
        ),
        wall_seconds=round(sum(_wall(d) for d in docs), 3),
    )
    if CENTRALISED in grid.methods:
        group.binding_centralised = _binding_summary(docs, centralised=True)
    return group


def _wall(doc: CellPart | None) -> float:
    return float(doc.wall_seconds or 0.0) if doc is not None else 0.0


def _cell_entry(grid: Grid, cell: Cell, doc: CellPart | None) -> CellEntry:
    binding = doc.binding if doc is not None else None
    methods = doc.methods if doc is not None else {}
    return CellEntry.model_validate(
        {
            **cell.to_dict(),
            "file": f"cells/{cell.key}.json",
            "wall_seconds": doc.wall_seconds if doc is not None else None,
            "labelled_samples": labelled_samples(doc, cell.label_budget),
            "methods": {
                name: CellScore(accuracy=m.accuracy, macro_f1=m.macro_f1)
                for name, m in methods.items()
                if name in grid.methods
            },
            "binding": CellBinding(
                pairs=binding.pairs if binding is not None else None,
                pairing_accuracy=binding.pairing_accuracy if binding is not None else None,
                mean_similarity=binding.mean_similarity if binding is not None else None,
            ),
        }
    )


def aggregate(grid: Grid, docs: Sequence[CellPart | None]) -> ExperimentResults:
    """The experiment's results.json document from the cells' documents (grid order).

    Parameters
    ----------
    grid : Grid
        The grid the documents belong to.
    docs : sequence of CellPart or None
        One cell document per :meth:`Grid.cells` entry, same order (``None``: none).

    Returns
    -------
    ExperimentResults
        ``methods`` and ``binding`` of the headline group (first nodes-per-role
        value, first label budget), ``label_budgets`` (first nodes-per-role value),
        ``nodes_per_role`` (when several values), ``cells``, ``grid``, ``paper``...
    """
    cells = grid.cells()
    if len(docs) != len(cells):
        raise ValueError(f"aggregate: {len(docs)} documents for {len(cells)} cells")
    by_npr: dict[str, NodesPerRoleGroup] = {}
    for npr in grid.nodes_per_role:
        budgets: dict[str, CellGroup] = {}
        for budget in grid.label_budgets:
            group = [
                d
                for c, d in zip(cells, docs, strict=True)
                if c.nodes_per_role == npr and c.label_budget == budget
            ]
            budgets[str(budget)] = _group(grid, group, budget)
        by_npr[str(npr)] = NodesPerRoleGroup(label_budgets=budgets)
    first = by_npr[str(grid.nodes_per_role[0])].label_budgets
    headline = first[str(grid.label_budgets[0])]
    results = ExperimentResults(
        dataset=grid.dataset,
        engine="simulation",
        kind="experiment",
        headline=Headline(
            label_budget=grid.label_budgets[0], nodes_per_role=grid.nodes_per_role[0]
        ),
        methods=headline.methods,
        binding=headline.binding,
        label_budgets=first,
        std="sample standard deviation (ddof=1) over seeds x splits; null for one run",
        cells=[_cell_entry(grid, cell, doc) for cell, doc in zip(cells, docs, strict=True)],
        wall_seconds=0.0,
        wall_seconds_per_cell=0.0,
        grid=grid.to_dict(),
        config=grid.recipe(),
        paper=PAPER,
    )
    if headline.binding_centralised is not None:
        results.binding_centralised = headline.binding_centralised
    if len(grid.nodes_per_role) > 1:
        results.nodes_per_role = by_npr
    walls = [_wall(d) for d in docs]
    results.wall_seconds = round(sum(walls), 3)
    results.wall_seconds_per_cell = round(statistics.fmean(walls), 3) if walls else 0.0
    return results
