"""The report's PNG figures, drawn with matplotlib's object API on the Agg canvas."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbind.lab.report.format import (
    first_with,
    in_report_order,
    method_title,
    number,
    pct,
    trace_share,
)
from mmbind.methods import CENTRALISED

log = logging.getLogger(__name__)

#: The figures' file names, in report order.
FIGURES = (
    "accuracy_vs_budget.png",
    "class_similarity.png",
    "pairing_confusion.png",
    "training_curves.png",
    "nodes_per_role.png",
)
PHASES = ("pretrain", "align", "finetune")
#: Resolution of the report figures.
FIGURE_DPI = 110


def _save(fig: Any, path: Path) -> Path:
    """Lay out ``fig`` (a matplotlib Figure, no pyplot state) and write it to ``path`` as PNG."""
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    return path


def _heatmap(
    path: Path,
    matrix: list[list[float]],
    *,
    title: str,
    cbar: str,
    counts: bool,
    xlabel: str,
) -> Path:
    from matplotlib.figure import Figure

    k = len(matrix)
    size = min(12.0, 3.5 + 0.3 * k)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=cbar)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("true class of the query-node sample")
    ax.set_title(title, fontsize=10)
    ticks = list(range(k))
    ax.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=7 if k > 12 else 9)
    ax.set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=7 if k > 12 else 9)
    if k <= 12:
        low = min(min(r) for r in matrix)
        span = max(max(r) for r in matrix) - low
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                text = f"{int(v)}" if counts else f"{v:.2f}"
                color = "black" if span and (v - low) > 0.6 * span else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    return _save(fig, path)


def _history_of(doc: Mapping[str, Any]) -> dict[str, list[float]]:
    history: dict[str, list[float]] = {}
    for key, values in (doc.get("history") or {}).items():
        if isinstance(values, list):
            history[str(key)] = [float(v) for v in values if number(v) is not None]
    central = (doc.get("centralised") or {}).get("history") or {}
    for key, values in central.items():
        name = key if "centralised" in str(key).split(".")[0] else f"{CENTRALISED}.{key}"
        if isinstance(values, list):
            history[name] = [float(v) for v in values if number(v) is not None]
    return {k: v for k, v in history.items() if v}


def phase_of(key: str) -> str:
    """The phase of a history key like ``"mmbind.pretrain.acc"`` (``"pretrain"``)."""
    parts = key.split(".")
    for part in parts:
        if part in PHASES:
            return part
    return parts[1] if len(parts) > 1 else "other"


def _curves(path: Path, history: Mapping[str, list[float]], cell: str) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    groups: dict[str, list[str]] = {}
    for key in sorted(history):
        groups.setdefault(phase_of(key), []).append(key)
    order = [p for p in PHASES if p in groups] + sorted(set(groups) - set(PHASES))
    fig = Figure(figsize=(5.0 * len(order), 4.0))
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    for ax, phase in zip(axes, order, strict=True):
        for key in groups[phase]:
            values = history[key]
            label = ".".join(p for p in key.split(".") if p != phase)
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
        ax.set_title(f"{phase} ({cell})")
        longest = max(len(history[key]) for key in groups[phase])
        if longest <= 12:
            ax.set_xticks(range(1, longest + 1))
            ax.set_xlim(0.5, longest + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    return _save(fig, path)


def _budget_plot(path: Path, results: Mapping[str, Any]) -> Path | None:
    from matplotlib.figure import Figure

    budgets = results.get("label_budgets") or {}
    if not budgets:
        return None
    xs = sorted(int(b) for b in budgets)
    names = in_report_order(list(results.get("methods", {})))
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    for name in names:
        points = [
            (x, budgets[str(x)]["methods"].get(name, {}))
            for x in xs
            if number(budgets[str(x)]["methods"].get(name, {}).get("accuracy")) is not None
        ]
        if not points:
            continue
        ax.errorbar(
            [x for x, _ in points],
            [100 * float(m["accuracy"]) for _, m in points],
            yerr=[100 * (number(m.get("accuracy_std")) or 0.0) for _, m in points],
            marker="o",
            capsize=3,
            label=method_title(name),
        )
    ax.set_xlabel("label budget (labelled samples per labelled node)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(xs)
    ax.set_title("Accuracy vs label budget (mean ± std over seeds × splits)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _npr_plot(path: Path, results: Mapping[str, Any]) -> Path | None:
    from matplotlib.figure import Figure

    by_npr = results.get("nodes_per_role") or {}
    if len(by_npr) < 2:
        return None
    budget = str(results.get("headline", {}).get("label_budget", ""))
    xs = sorted(int(n) for n in by_npr)
    fig = Figure(figsize=(11.0, 4.2))
    left, right = fig.subplots(1, 2)
    groups = {x: by_npr[str(x)]["label_budgets"].get(budget, {}) for x in xs}
    for name in in_report_order(list(results.get("methods", {}))):
        ys = [number(groups[x].get("methods", {}).get(name, {}).get("accuracy")) for x in xs]
        if any(y is not None for y in ys):
            left.plot(
                xs, [100 * y if y is not None else math.nan for y in ys], marker="o", label=name
            )
    left.set_xlabel("nodes per role")
    left.set_ylabel("test accuracy (%)")
    left.set_xticks(xs)
    left.set_title(f"Accuracy vs nodes per role (label budget {budget})")
    left.legend(fontsize=7)
    pair = [number(groups[x].get("binding", {}).get("pairing_accuracy")) for x in xs]
    right.plot(xs, [100 * p if p is not None else math.nan for p in pair], marker="o")
    right.set_xlabel("nodes per role")
    right.set_ylabel("pairing accuracy (%)")
    right.set_xticks(xs)
    right.set_title("Binding pairing accuracy vs nodes per role")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def draw_figures(
    results: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], folder: Path
) -> dict[str, str]:
    """Draw every figure whose data is present; return ``{file name: note}``.

    The note is ``""`` for a drawn figure and says why it was skipped otherwise.
    A figure that fails to draw is skipped with the error as its note.
    """
    notes: dict[str, str] = {}
    for name in FIGURES:
        (folder / name).unlink(missing_ok=True)  # no stale figure from an earlier report
    tasks: dict[str, Any] = {}
    tasks["accuracy_vs_budget.png"] = lambda p: (
        _budget_plot(p, results) or ("no label budget has results")
    )
    sim = first_with(cells, "class_similarity")
    tasks["class_similarity.png"] = lambda p: (
        _heatmap(
            p,
            sim[1],
            title=f"Binding: mean cosine similarity by class pair\n({sim[0]})",
            cbar="mean cosine similarity",
            counts=False,
            xlabel="true class of the partner-node sample",
        )
        if sim
        else "no cell recorded binding.class_similarity (the binding was not run, "
        "or this version's workflow does not report it)"
    )
    conf = first_with(cells, "pairing_confusion")
    tasks["pairing_confusion.png"] = lambda p: (
        _heatmap(
            p,
            conf[1],
            title=f"Pairing confusion, pairing accuracy "
            f"{pct(trace_share(conf[1]), digits=1)} %\n({conf[0]})",
            cbar="bound pairs",
            counts=True,
            xlabel="true class of its bound partner",
        )
        if conf
        else "no cell recorded binding.pairing_confusion (the binding was not run, "
        "or this version's workflow does not report it)"
    )
    with_history = next(((d, _history_of(d)) for d in cells if _history_of(d)), None)
    tasks["training_curves.png"] = lambda p: (
        _curves(p, with_history[1], str((with_history[0].get("cell") or {}).get("key", "?")))
        if with_history
        else "no cell recorded a training history"
    )
    tasks["nodes_per_role.png"] = lambda p: (
        _npr_plot(p, results)
        or ("one nodes-per-role value; pass --nodes-per-role 1,2,4 to draw it")
    )
    for name in FIGURES:
        try:
            outcome = tasks[name](folder / name)
        except Exception as exc:  # a figure must never sink the report
            log.warning("figure %s failed: %s", name, exc)
            outcome = f"drawing failed: {type(exc).__name__}: {exc}"
        notes[name] = outcome if isinstance(outcome, str) else ""
    return notes
