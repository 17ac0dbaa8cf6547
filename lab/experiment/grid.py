"""The grid of ``mmbind experiment``: its methods, cells and each cell's run config."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmbind.client.data.partition import protocol_folds
from mmbind.errors import ConfigError
from mmbind.lab.paper import PAPER_LABEL_BUDGETS
from mmbind.methods import ALL_METHODS, CENTRALISED, REPORT_ORDER, TITLES
from mmbind.run_config import METHODS as RUN_CONFIG_METHODS
from mmbind.run_config import RunConfig

CENTRALISED_MODULE = "mmbind.lab.centralised"

#: Every method name the grid knows, in the order of the paper's tables.
METHOD_ORDER: tuple[str, ...] = REPORT_ORDER

METHOD_TITLES: dict[str, str] = {
    **TITLES,
    "mmbind_label": "MMBind, label binding (federated)",
}

#: UTD-MHAD label budgets of the paper (216 = all of C's labelled samples).

#: Run-config keys that are the cell's coordinates (set by the grid, not the recipe).
CELL_KEYS = ("seed", "split", "nodes-per-role", "label-budget", "label-budgets", "methods")
#: Run-config keys that do not change what a cell computes (RunConfig's operational fields).
VOLATILE_KEYS = tuple(name.replace("_", "-") for name in RunConfig.operational_fields())
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
    return {k: v for k, v in config.recipe().items() if k not in CELL_KEYS}


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
