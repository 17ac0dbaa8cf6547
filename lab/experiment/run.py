"""Running a grid: the missing cells, one simulation per group of label budgets."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbind.errors import ConfigError, DataError
from mmbind.lab.experiment.aggregate import aggregate, compare_cells
from mmbind.lab.experiment.cells import (
    budget_part,
    cell_path,
    centralised_part,
    load_cell,
    merge_parts,
    write_json_atomic,
)
from mmbind.lab.experiment.grid import CENTRALISED_MODULE, Cell, Grid, recipe_mismatch
from mmbind.methods import CENTRALISED
from mmbind.results_model import CellDocument, CellPart, RunResults
from mmbind.run_config import RunConfig

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
SimulateFn = Callable[..., dict[str, Any]]
CentralisedFn = Callable[..., dict[str, Any]]


@dataclass
class ExperimentOutcome:
    """What :func:`run_experiment` did.

    Attributes
    ----------
    results : dict
        The results.json document.
    cells : list[dict]
        Every cell's document (a :class:`~mmbind.results_model.CellDocument`'s JSON), in
        grid order.
    ran : list[str]
        Keys of the cells run (wholly or partly) by this call.
    reused : list[str]
        Keys of the cells loaded from their files without running anything.
    path : Path
        Where results.json was written.
    """

    results: dict[str, Any]
    cells: list[dict[str, Any]]
    ran: list[str]
    reused: list[str]
    path: Path


def _default_simulate(config: RunConfig, *, num_cpus: int, progress: Progress | None) -> Any:
    from mmbind.lab.simulate import simulate

    return simulate(config, num_cpus=num_cpus, progress=progress)


def _default_centralised(config: RunConfig, *, progress: Progress | None) -> Any:
    try:
        module = importlib.import_module(CENTRALISED_MODULE)
    except ImportError as exc:
        raise ConfigError(
            f"method {CENTRALISED!r} needs {CENTRALISED_MODULE}, which this install lacks ({exc})"
        ) from None
    return module.run_centralised(config, progress=progress)


def run_group(
    grid: Grid,
    cells: Sequence[Cell],
    missing: Mapping[Cell, Sequence[str]],
    *,
    num_cpus: int = 0,
    progress: Progress | None = None,
    simulate_fn: SimulateFn | None = None,
    centralised_fn: CentralisedFn | None = None,
) -> dict[Cell, CellPart]:
    """Run the ``missing`` methods of cells that differ only in their label budget.

    One simulation serves every budget: pretraining, binding and alignment do not
    depend on labels, so each budget is fine-tuned and evaluated from the same aligned
    models (``RunConfig.label_budgets``). The centralised run is separate. Returns a
    cell-document fragment per cell.
    """
    federated = [m for m in grid.federated if any(m in missing[c] for c in cells)]
    budgets = [c.label_budget for c in cells if any(m in federated for m in missing[c])]
    parts: dict[Cell, CellPart] = {}
    if federated and budgets:
        sim = simulate_fn or _default_simulate
        lead = next(c for c in cells if c.label_budget == budgets[0])
        config = grid.config_for(lead, federated, budgets if len(budgets) > 1 else ())
        doc = RunResults.from_json(
            sim(config, num_cpus=num_cpus, progress=progress), "the simulation's results"
        )
        share = len(budgets)
        for c in cells:
            if c.label_budget in budgets:
                part = budget_part(doc, c.label_budget, [m for m in federated if m in missing[c]])
                part.wall_seconds = round(float(doc.wall_seconds) / share, 3)
                parts[c] = part
    for c in cells:
        if CENTRALISED not in missing[c]:
            continue
        central = centralised_fn or _default_centralised
        if num_cpus > 0:  # run_centralised leaves torch's thread count to its caller
            import torch

            torch.set_num_threads(num_cpus)
        start = time.perf_counter()
        result = central(grid.config_for(c), progress=progress)
        part = centralised_part(result, time.perf_counter() - start)
        merged = merge_parts(parts.get(c), part)
        merged.centralised = part.centralised
        if "dataset" not in merged.model_fields_set:
            merged.dataset = grid.dataset
            merged.engine = "simulation"
        parts[c] = merged
    return parts


def _within_cell(progress: Progress, label: str, done: int, total: int) -> Progress:
    """A simulation's progress callback that keeps the bar on the cell count."""

    def update(step_label: str, _step: int, _total: int) -> None:
        progress(f"{label} · {step_label}", done, total)

    return update


def run_experiment(
    grid: Grid,
    output: str | Path,
    *,
    num_cpus: int = 0,
    fresh: bool = False,
    progress: Progress | None = None,
    simulate_fn: SimulateFn | None = None,
    centralised_fn: CentralisedFn | None = None,
    report: bool = True,
    compare: str | Path | None = None,
) -> ExperimentOutcome:
    """Run the grid's missing cells, then write ``results.json`` and the report.

    Parameters
    ----------
    grid : Grid
        What to run.
    output : str or Path
        The experiment folder (``cells/``, ``results.json``, ``report.md``, PNGs).
    num_cpus : int
        CPUs for the simulation engine; 0 = all.
    fresh : bool
        Run every cell again, ignoring (and overwriting) the recorded ones.
    progress : callable, optional
        ``progress(label, cells_done, cells_total)``.
    simulate_fn, centralised_fn : callable, optional
        Replacements for :func:`~mmbind.lab.simulate.simulate` and
        ``run_centralised`` (tests).
    report : bool
        Write ``report.md`` and its figures.
    compare : str or Path, optional
        Another experiment folder: results.json gets ``comparison``, the paired
        differences of every method on the cells both share (:func:`compare_cells`).

    Returns
    -------
    ExperimentOutcome

    Raises
    ------
    ConfigError
        A recorded cell ran with another recipe than ``grid`` asks (unless ``fresh``).
    DataError
        A recorded cell file is corrupt (unless ``fresh``).
    """
    folder = Path(output)
    started = time.perf_counter()
    baseline = None if compare is None else Path(compare)
    if baseline is not None and not (baseline / "cells").is_dir():
        raise DataError(
            f"--compare {baseline}: not an experiment folder (no cells/ inside); give the "
            "--output folder of another mmbind experiment"
        )
    cells = grid.cells()
    recipe = grid.recipe()

    # Check every recorded cell first, so a mismatch fails before any work is done.
    plan: list[tuple[Cell, CellDocument | None, list[str]]] = []
    for cell in cells:
        doc = None if fresh else load_cell(cell_path(folder, cell), cell)
        if doc is not None:
            diffs = recipe_mismatch(doc.recipe, recipe)
            if diffs:
                raise ConfigError(
                    f"cell {cell.key} in {folder} was recorded with another recipe "
                    f"({'; '.join(diffs)}); use another --output, or --fresh to run "
                    "every cell again"
                )
        missing = [m for m in grid.methods_for(cell) if doc is None or m not in doc.methods]
        plan.append((cell, doc, missing))

    # Cells that differ only in their label budget share one simulation.
    groups: dict[tuple[int, int, int], list[Cell]] = {}
    for cell, _, missing in plan:
        if missing:
            groups.setdefault((cell.nodes_per_role, cell.split, cell.seed), []).append(cell)
    recorded: dict[Cell, CellDocument | None] = {cell: doc for cell, doc, _ in plan}
    wanted = {cell: missing for cell, _, missing in plan}
    todo = len(groups)
    ran: list[str] = []
    for index, group in enumerate(groups.values()):
        lead = group[0]
        label = f"run {index + 1}/{todo} split{lead.split}_seed{lead.seed}_npr{lead.nodes_per_role}"
        log.info("%s: budgets %s", label, ", ".join(str(c.label_budget) for c in group))
        inner = None if progress is None else _within_cell(progress, label, index, todo)
        if progress is not None:
            progress(label, index, todo)
        parts = run_group(
            grid,
            group,
            wanted,
            num_cpus=num_cpus,
            progress=inner,
            simulate_fn=simulate_fn,
            centralised_fn=centralised_fn,
        )
        for cell, part in parts.items():
            merged = merge_parts(recorded[cell], part)
            if part.centralised is not None:
                merged.centralised = part.centralised
            written = CellDocument.model_validate(
                {**merged.to_json(), "cell": cell.to_dict(), "recipe": recipe}
            )
            write_json_atomic(written, cell_path(folder, cell))
            recorded[cell] = written
            ran.append(cell.key)
        if progress is not None:
            progress(label, index + 1, todo)
    reused = [cell.key for cell, _, missing in plan if not missing]
    cell_docs = [recorded[cell] for cell, _, _ in plan]

    summary = aggregate(grid, cell_docs)
    if baseline is not None:
        summary.comparison = compare_cells(cell_docs, baseline, grid.methods)
    summary.elapsed_seconds = round(time.perf_counter() - started, 3)
    summary.cells_run = list(ran)
    path = write_json_atomic(summary, folder / "results.json")
    results = summary.to_json()
    docs = [doc.to_json() if doc is not None else {} for doc in cell_docs]
    if report:
        from mmbind.lab.report import write_report

        write_report(results, docs, folder)
    return ExperimentOutcome(results=results, cells=docs, ran=ran, reused=reused, path=path)
