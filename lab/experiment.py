"""``mmbind experiment``: a resumable grid of simulations and its aggregate results.

A grid is methods × label budgets × subject splits × seeds × nodes per role. One
*cell* is one (label budget, split, seed, nodes per role) point: it runs every
federated method of the grid in **one** :func:`~mmbind.lab.simulate.simulate`
call (the methods share phase 1 and run in lockstep), plus
``run_centralised`` when ``"mmbind_centralised"`` is asked for.

Resumability
------------
Each finished cell is written to ``OUTPUT/cells/<key>.json`` atomically (a ``.tmp``
file, then :func:`os.replace`), holding the cell's results document (the shape of
``mmbind simulate``'s results.json) plus its coordinates (``"cell"``) and the
recipe it ran with (``"recipe"``). Running the same command again loads the
finished cells and runs only the missing ones:

* a cell whose file lacks some asked methods runs only those methods and merges
  them into its file (so adding ``mmbind_centralised`` later runs just that);
* a cell recorded with a different recipe (any run-config value other than the
  cell coordinates, the method list and the data folder; a value the record
  predates is compared with its default) is a :class:`ConfigError` naming the
  differing keys; ``fresh=True`` (``--fresh``) runs every cell again and
  overwrites the files;
* an unreadable or corrupt cell file is a :class:`DataError` naming the file (it
  is never silently overwritten): delete it to run that cell again, or pass
  ``--fresh``.

Aggregation
-----------
Accuracy and macro-F1 are averaged per method over the seeds × splits of each
(nodes per role, label budget) group; the spread is the *sample* standard
deviation (``ddof=1``), ``null`` when a group has a single run. Binding pairing
accuracy and mean similarity are aggregated the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbind.client.data.partition import protocol_folds
from mmbind.errors import ConfigError, DataError
from mmbind.methods import ALL_METHODS, CENTRALISED, REPORT_ORDER, TITLES
from mmbind.run_config import METHODS as RUN_CONFIG_METHODS
from mmbind.run_config import RunConfig

log = logging.getLogger(__name__)

__all__ = [
    "CENTRALISED",
    "METHOD_ORDER",
    "METHOD_TITLES",
    "PAPER",
    "Cell",
    "ExperimentOutcome",
    "Grid",
    "aggregate",
    "available_methods",
    "compare_cells",
    "default_methods",
    "run_experiment",
]

Progress = Callable[[str, int, int], None]
SimulateFn = Callable[..., dict[str, Any]]
CentralisedFn = Callable[..., dict[str, Any]]

CENTRALISED_MODULE = "mmbind.lab.centralised"

#: Every method name the grid knows, in the order of the paper's tables.
METHOD_ORDER: tuple[str, ...] = REPORT_ORDER

METHOD_TITLES: dict[str, str] = {
    **TITLES,
    "mmbind_label": "MMBind, label binding (federated)",
}

#: UTD-MHAD label budgets of the paper (216 = all of C's labelled samples).
PAPER_LABEL_BUDGETS: tuple[int, ...] = (216, 162, 108, 54)

#: The paper's figures (DESIGN.md, "The reference protocol"); accuracies as fractions.
PAPER: dict[str, Any] = {
    "source": "Ouyang et al., MMBind, SenSys 2025 (arXiv 2411.12126); DESIGN.md",
    "table3": {
        "lower_bound": {"accuracy": 0.4041, "macro_f1": 0.380},
        "unimodal": {"accuracy": 0.6904, "macro_f1": 0.646},
        "mim": {"accuracy": 0.6223, "macro_f1": 0.590},
        "mpm": {"accuracy": 0.6974, "macro_f1": 0.666},
        "cmg": {"accuracy": 0.6169, "macro_f1": 0.592},
        "dcm": {"accuracy": 0.5925, "macro_f1": 0.563},
        "imagebind": {"accuracy": 0.6299, "macro_f1": 0.612},
        "mmbind": {"accuracy": 0.7886, "macro_f1": 0.763},
        "upper_bound": {"accuracy": 0.7868, "macro_f1": 0.768},
    },
    "table4_label_binding": {
        "mmbind_label": {"accuracy": 0.8304, "macro_f1": 0.813},
        "upper_bound": {"accuracy": 0.8563, "macro_f1": 0.844},
    },
    "paper_code_split0": {
        "note": "the paper's code on split 0, 2 CPU cores, epochs cut (autoencoder 100, "
        "contrastive 60, fine-tuning 60), 3 seeds; accuracy = mean test accuracy over the "
        "last 60 % of fine-tuning epochs",
        "mmbind": {"accuracy": 0.770, "accuracy_std": 0.013, "macro_f1": 0.749},
        "lower_bound": {"accuracy": 0.328},
        "pairing_accuracy_a_reference": 0.763,
        "pairing_accuracy_b_reference": 0.704,
        "mean_similarity": 0.905,
        "wall_seconds": 2627.0,
        "seeds": 3,
    },
}

#: Run-config keys that are the cell's coordinates (set by the grid, not the recipe).
CELL_KEYS = ("seed", "split", "nodes-per-role", "label-budget", "label-budgets", "methods")
#: Run-config keys that do not change what a cell computes.
VOLATILE_KEYS = (
    "data-dir",
    "output",
    "run-id",
    "resume",
    "attempt",
    "binding-service",
    "reply-timeout",
    "min-nodes",
    "wait-seconds",
    "node-grace-seconds",
)
_GRID_OWNED = {
    "dataset": "--dataset",
    "data_dir": "--data-dir",
    "seed": "--seeds",
    "split": "--splits",
    "nodes_per_role": "--nodes-per-role",
    "label_budget": "--label-budgets",
    "label_budgets": "--label-budgets",
    "methods": "--methods",
    "protocol": "--protocol",
}
#: What the splits of each protocol are.
PROTOCOL_SPLITS = {
    "paper": "rotations of the four roles' subject groups; split 4 would repeat split 0",
    "dev-loso": "each of subjects 1-6 as the test subject",
}


def federated_methods_known() -> tuple[str, ...]:
    """Method names this install's :class:`RunConfig` accepts (run by ``simulate``)."""
    return tuple(dict.fromkeys((*ALL_METHODS, *RUN_CONFIG_METHODS)))


def centralised_available() -> bool:
    """Whether ``mmbind.lab.centralised`` is installed."""
    try:
        return importlib.util.find_spec(CENTRALISED_MODULE) is not None
    except (ImportError, ValueError):
        return False


def available_methods() -> tuple[str, ...]:
    """Every method name a grid may ask for in this install, in the paper's order."""
    known = set(federated_methods_known()) | {CENTRALISED}
    ordered = [m for m in METHOD_ORDER if m in known]
    return (*ordered, *sorted(known - set(METHOD_ORDER)))


def default_methods() -> tuple[str, ...]:
    """Every federated method of this install, plus the centralised one when installed."""
    return tuple(m for m in available_methods() if m != CENTRALISED or centralised_available())


def order_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """``methods`` in the paper's table order (unknown names last, as given)."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return tuple(sorted(dict.fromkeys(methods), key=lambda m: rank.get(m, len(rank))))


def parse_int_list(text: str | Sequence[int], what: str, *, minimum: int = 1) -> tuple[int, ...]:
    """A comma list of integers ``>= minimum``, without repeats.

    Raises
    ------
    ConfigError
        An entry is not an integer, is below ``minimum``, repeats, or the list is empty.
    """
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    values: list[int] = []
    for item in items:
        if item == "":
            continue
        try:
            value = int(item)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} must be integers >= {minimum} separated by commas, got {item!r}"
            ) from None
        if isinstance(item, bool) or value < minimum:
            raise ConfigError(f"{what} must be integers >= {minimum}, got {item!r}")
        if value in values:
            raise ConfigError(f"{what}: {value} is listed twice")
        values.append(value)
    if not values:
        raise ConfigError(f"{what}: give at least one value")
    return tuple(values)


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a comma list of method names (order kept, repeats dropped).

    Raises
    ------
    ConfigError
        An unknown name (the message lists the valid ones), an empty list, or
        ``mmbind_centralised`` without ``mmbind.lab.centralised`` installed.
    """
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(s for s in items if s))
    if not names:
        raise ConfigError(f"--methods: give at least one of {', '.join(available_methods())}")
    valid = available_methods()
    unknown = [m for m in names if m not in valid]
    if unknown:
        raise ConfigError(
            f"unknown method{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f"; valid methods: {', '.join(valid)}"
        )
    if CENTRALISED in names and not centralised_available():
        raise ConfigError(
            f"method {CENTRALISED!r} needs {CENTRALISED_MODULE}, which this install lacks"
        )
    return names


@dataclass(frozen=True)
class Cell:
    """One point of the grid: every method of the grid runs once for it.

    Attributes
    ----------
    label_budget : int
        Labelled samples per labelled node (``RunConfig.label_budget``).
    split : int
        Subject assignment (rotation of the roles' subject groups).
    seed : int
        Seed of the run.
    nodes_per_role : int
        Nodes each role's subjects are spread over.
    """

    label_budget: int
    split: int
    seed: int
    nodes_per_role: int

    @property
    def key(self) -> str:
        """The cell's file name stem, e.g. ``budget216_split0_seed1_npr1``."""
        return (
            f"budget{self.label_budget}_split{self.split}_seed{self.seed}_npr{self.nodes_per_role}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The coordinates with the key, as stored in cell files and results.json."""
        return {
            "key": self.key,
            "label_budget": self.label_budget,
            "split": self.split,
            "seed": self.seed,
            "nodes_per_role": self.nodes_per_role,
        }


@dataclass(frozen=True)
class Grid:
    """What ``mmbind experiment`` runs.

    Attributes
    ----------
    dataset : str
        ``"synthetic"`` or ``"utd-mhad"``.
    data_dir : str
        The UTD-MHAD folder (unused for synthetic data).
    methods : tuple[str, ...]
        Method names (see :func:`available_methods`).
    label_budgets : tuple[int, ...]
        Label budgets; the first is the headline one (top-level ``methods``).
    splits : int
        Number of subject splits, ``0 .. splits-1`` (at most 4: they rotate).
    seeds : int
        Number of seeds, ``0 .. seeds-1``.
    nodes_per_role : tuple[int, ...]
        Nodes-per-role values; the first is the headline one.
    overrides : Mapping[str, Any]
        Further run-config values (the recipe), snake_case keys.
    protocol : str
        Subject layout (:data:`~mmbind.client.data.partition.PROTOCOLS`): ``"paper"`` (splits
        rotate the paper's 2/2/2/2 groups) or ``"dev-loso"`` (split ``k``: subject ``k + 1``
        of 1-6 is the test subject; recipes are chosen here, never on subjects 7 and 8).
    """

    dataset: str = "synthetic"
    data_dir: str = ""
    methods: tuple[str, ...] = field(default_factory=default_methods)
    label_budgets: tuple[int, ...] = PAPER_LABEL_BUDGETS
    splits: int = 1
    seeds: int = 1
    nodes_per_role: tuple[int, ...] = (1,)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    protocol: str = "paper"

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", parse_methods(self.methods))
        object.__setattr__(
            self, "label_budgets", parse_int_list(self.label_budgets, "label budgets")
        )
        object.__setattr__(
            self, "nodes_per_role", parse_int_list(self.nodes_per_role, "nodes per role")
        )
        for name, value in (("splits", self.splits), ("seeds", self.seeds)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name} must be an integer >= 1, got {value!r}")
        folds = protocol_folds(self.protocol)
        if self.splits > folds:
            raise ConfigError(
                f"--splits {self.splits}: protocol {self.protocol!r} has {folds} splits "
                f"({PROTOCOL_SPLITS[self.protocol]}); use --splits <= {folds}"
            )
        owned = sorted(k for k in self.overrides if k in _GRID_OWNED)
        if owned:
            key = owned[0]
            raise ConfigError(
                f"--config {key.replace('_', '-')}=...: the grid sets {key.replace('_', '-')}; "
                f"use {_GRID_OWNED[key]} instead"
            )
        object.__setattr__(self, "overrides", dict(self.overrides))
        # Validate the recipe and every cell's config now, before any cell runs.
        for cell in self.cells():
            self.config_for(cell)

    def methods_for(self, cell: Cell) -> tuple[str, ...]:
        """The methods ``cell`` runs: the centralised run only at the headline budget."""
        if cell.label_budget == self.label_budgets[0]:
            return self.methods
        return self.federated

    @property
    def federated(self) -> tuple[str, ...]:
        """The methods one ``simulate()`` call runs (all but the centralised one)."""
        return tuple(m for m in self.methods if m != CENTRALISED)

    def cells(self) -> list[Cell]:
        """Every cell, nodes-per-role-major, then label budget, split, seed."""
        return [
            Cell(budget, split, seed, npr)
            for npr in self.nodes_per_role
            for budget in self.label_budgets
            for split in range(self.splits)
            for seed in range(self.seeds)
        ]

    def config_for(
        self, cell: Cell, methods: Sequence[str] | None = None, budgets: Sequence[int] = ()
    ) -> RunConfig:
        """The run config of ``cell`` (``methods``: the federated ones to run).

        ``budgets``: more label budgets the same run fine-tunes and evaluates from its
        aligned models (cells that differ only in their budget share one simulation).
        """
        run_methods = tuple(self.federated if methods is None else methods) or ("mmbind",)
        values: dict[str, Any] = {
            **self.overrides,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "seed": cell.seed,
            "split": cell.split,
            "nodes_per_role": cell.nodes_per_role,
            "protocol": self.protocol,
            "label_budget": cell.label_budget,
            "label_budgets": tuple(budgets),
            "methods": run_methods,
        }
        return RunConfig.from_mapping(values)

    def recipe(self) -> dict[str, Any]:
        """The run-config values every cell shares (Flower form, kebab-case keys)."""
        return recipe_of(self.config_for(self.cells()[0]))

    def to_dict(self) -> dict[str, Any]:
        """The grid spec for results.json."""
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "methods": list(self.methods),
            "label_budgets": list(self.label_budgets),
            "splits": list(range(self.splits)),
            "seeds": list(range(self.seeds)),
            "nodes_per_role": list(self.nodes_per_role),
            "overrides": {k.replace("_", "-"): v for k, v in self.overrides.items()},
            "cells": len(self.cells()),
        }


def recipe_of(config: RunConfig) -> dict[str, Any]:
    """``config`` without the cell coordinates and the values that change no result."""
    return {k: v for k, v in config.to_flower().items() if k not in CELL_KEYS + VOLATILE_KEYS}


def _default_flower_value(key: str) -> Any:
    info = RunConfig.model_fields.get(key.replace("-", "_"))
    if info is None:
        return None
    value = info.get_default(call_default_factory=True)
    return ",".join(value) if isinstance(value, tuple) else value


def recipe_mismatch(recorded: Mapping[str, Any], asked: Mapping[str, Any]) -> list[str]:
    """Keys whose asked value differs from the recorded one, as ``key: recorded -> asked``.

    A key the record lacks (a run-config value added since) is compared with its
    default; a recorded key the code no longer knows is ignored.
    """
    diffs = []
    for key, value in asked.items():
        before = recorded[key] if key in recorded else _default_flower_value(key)
        if before != value:
            diffs.append(f"{key}: {before!r} -> {value!r}")
    return diffs


@dataclass
class ExperimentOutcome:
    """What :func:`run_experiment` did.

    Attributes
    ----------
    results : dict
        The results.json document.
    cells : list[dict]
        Every cell's document, in grid order.
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


def _merge(doc: dict[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
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


def _centralised_part(result: Mapping[str, Any], seconds: float) -> dict[str, Any]:
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


def _budget_part(doc: Mapping[str, Any], budget: int, methods: Sequence[str]) -> dict[str, Any]:
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


def run_group(
    grid: Grid,
    cells: Sequence[Cell],
    missing: Mapping[Cell, Sequence[str]],
    *,
    num_cpus: int = 0,
    progress: Progress | None = None,
    simulate_fn: SimulateFn | None = None,
    centralised_fn: CentralisedFn | None = None,
) -> dict[Cell, dict[str, Any]]:
    """Run the ``missing`` methods of cells that differ only in their label budget.

    One simulation serves every budget: pretraining, binding and alignment do not
    depend on labels, so each budget is fine-tuned and evaluated from the same aligned
    models (``RunConfig.label_budgets``). The centralised run is separate. Returns a
    cell-document fragment per cell.
    """
    federated = [m for m in grid.federated if any(m in missing[c] for c in cells)]
    budgets = [c.label_budget for c in cells if any(m in federated for m in missing[c])]
    parts: dict[Cell, dict[str, Any]] = {}
    if federated and budgets:
        sim = simulate_fn or _default_simulate
        lead = next(c for c in cells if c.label_budget == budgets[0])
        config = grid.config_for(lead, federated, budgets if len(budgets) > 1 else ())
        doc = dict(sim(config, num_cpus=num_cpus, progress=progress))
        share = len(budgets)
        for c in cells:
            if c.label_budget in budgets:
                part = _budget_part(doc, c.label_budget, [m for m in federated if m in missing[c]])
                part["wall_seconds"] = round(float(doc.get("wall_seconds", 0.0)) / share, 3)
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
        part = _centralised_part(result, time.perf_counter() - start)
        merged = _merge(parts.get(c), part)
        merged["centralised"] = part["centralised"]
        if "dataset" not in merged:
            merged.update(dataset=grid.dataset, engine="simulation")
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
    plan: list[tuple[Cell, dict[str, Any] | None, list[str]]] = []
    for cell in cells:
        doc = None if fresh else load_cell(cell_path(folder, cell), cell)
        if doc is not None:
            diffs = recipe_mismatch(doc["recipe"], recipe)
            if diffs:
                raise ConfigError(
                    f"cell {cell.key} in {folder} was recorded with another recipe "
                    f"({'; '.join(diffs)}); use another --output, or --fresh to run "
                    "every cell again"
                )
        missing = [m for m in grid.methods_for(cell) if doc is None or m not in doc["methods"]]
        plan.append((cell, doc, missing))

    # Cells that differ only in their label budget share one simulation.
    groups: dict[tuple[int, int, int], list[Cell]] = {}
    for cell, _, missing in plan:
        if missing:
            groups.setdefault((cell.nodes_per_role, cell.split, cell.seed), []).append(cell)
    recorded = {cell: doc for cell, doc, _ in plan}
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
            merged = _merge(recorded[cell], part)
            if "centralised" in part:
                merged["centralised"] = part["centralised"]
            merged["cell"] = cell.to_dict()
            merged["recipe"] = recipe
            write_json_atomic(merged, cell_path(folder, cell))
            recorded[cell] = merged
            ran.append(cell.key)
        if progress is not None:
            progress(label, index + 1, todo)
    reused = [cell.key for cell, _, missing in plan if not missing]
    docs = [recorded[cell] or {} for cell, _, _ in plan]

    results = aggregate(grid, docs)
    if baseline is not None:
        results["comparison"] = compare_cells(docs, baseline, grid.methods)
    results["elapsed_seconds"] = round(time.perf_counter() - started, 3)
    results["cells_run"] = list(ran)
    path = write_json_atomic(results, folder / "results.json")
    if report:
        from mmbind.lab.report import write_report

        write_report(results, docs, folder)
    return ExperimentOutcome(results=results, cells=docs, ran=ran, reused=reused, path=path)


# ---------------------------------------------------------------- comparison
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
