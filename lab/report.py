"""The human report of ``mmbind experiment``: ``report.md`` and its PNG figures.

:func:`write_report` takes the experiment's results.json document and the cells'
documents (see :mod:`mmbind.lab.experiment`) and writes, into the experiment
folder, ``report.md`` with the protocol, the tables (ours beside the paper's
figures) and these figures, each skipped with a note in the report when its data
is absent:

* ``accuracy_vs_budget.png`` — accuracy (mean ± std) per method per label budget;
* ``class_similarity.png`` — mean cosine similarity of the binding by class pair;
* ``pairing_confusion.png`` — true class of each query sample vs its bound partner's;
* ``training_curves.png`` — the per-round losses of one cell, one panel per phase;
* ``nodes_per_role.png`` — accuracy and pairing accuracy vs nodes per role.

Figures are drawn with matplotlib's object API on the Agg canvas (no display).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbind.lab.experiment import CENTRALISED, METHOD_ORDER, METHOD_TITLES, PAPER

log = logging.getLogger(__name__)

__all__ = ["FIGURES", "render_report", "write_report"]

#: The figures' file names, in report order.
FIGURES = (
    "accuracy_vs_budget.png",
    "class_similarity.png",
    "pairing_confusion.png",
    "training_curves.png",
    "nodes_per_role.png",
)
PHASES = ("pretrain", "align", "finetune")
#: Paper rows with no method of ours: (key in PAPER["table3"], title).
PAPER_ONLY = (
    ("cmg", "CMG (paper only)"),
    ("dcm", "DCM (paper only)"),
    ("imagebind", "ImageBind-style (paper only)"),
)
#: Resolution of the report figures.
FIGURE_DPI = 110


# ------------------------------------------------------------------ formatting
def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def pct(value: Any, std: Any = None, digits: int = 2) -> str:
    """A fraction as a percentage, ``"78.86"`` or ``"78.86 ± 1.20"``; ``"—"`` when absent."""
    v = _num(value)
    if v is None:
        return "—"
    s = _num(std)
    return f"{100 * v:.{digits}f}" + ("" if s is None else f" ± {100 * s:.{digits}f}")


def dec(value: Any, std: Any = None, digits: int = 3) -> str:
    """A number with ``digits`` decimals, ``"0.763"`` or ``"0.763 ± 0.010"``."""
    v = _num(value)
    if v is None:
        return "—"
    s = _num(std)
    return f"{v:.{digits}f}" + ("" if s is None else f" ± {s:.{digits}f}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    right = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _title(name: str) -> str:
    return METHOD_TITLES.get(name, name)


def _ordered(names: Sequence[str]) -> list[str]:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(names, key=lambda m: rank.get(m, len(rank)))


# --------------------------------------------------------------------- figures
def _square(matrix: Any) -> list[list[float]] | None:
    """``matrix`` as a K×K list of floats, or ``None`` when it is not one."""
    if not isinstance(matrix, list) or not matrix:
        return None
    k = len(matrix)
    rows: list[list[float]] = []
    for row in matrix:
        if not isinstance(row, list) or len(row) != k:
            return None
        values = [_num(v) for v in row]
        if any(v is None for v in values):
            return None
        rows.append([float(v) for v in values if v is not None])
    return rows


def _first_with(
    cells: Sequence[Mapping[str, Any]], key: str
) -> tuple[str, list[list[float]]] | None:
    for doc in cells:
        matrix = _square((doc.get("binding") or {}).get(key))
        if matrix is not None:
            return str((doc.get("cell") or {}).get("key", "?")), matrix
    return None


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
            history[str(key)] = [float(v) for v in values if _num(v) is not None]
    central = (doc.get("centralised") or {}).get("history") or {}
    for key, values in central.items():
        name = key if "centralised" in str(key).split(".")[0] else f"{CENTRALISED}.{key}"
        if isinstance(values, list):
            history[name] = [float(v) for v in values if _num(v) is not None]
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
    names = _ordered(list(results.get("methods", {})))
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    for name in names:
        points = [
            (x, budgets[str(x)]["methods"].get(name, {}))
            for x in xs
            if _num(budgets[str(x)]["methods"].get(name, {}).get("accuracy")) is not None
        ]
        if not points:
            continue
        ax.errorbar(
            [x for x, _ in points],
            [100 * float(m["accuracy"]) for _, m in points],
            yerr=[100 * (_num(m.get("accuracy_std")) or 0.0) for _, m in points],
            marker="o",
            capsize=3,
            label=_title(name),
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
    for name in _ordered(list(results.get("methods", {}))):
        ys = [_num(groups[x].get("methods", {}).get(name, {}).get("accuracy")) for x in xs]
        if any(y is not None for y in ys):
            left.plot(
                xs, [100 * y if y is not None else math.nan for y in ys], marker="o", label=name
            )
    left.set_xlabel("nodes per role")
    left.set_ylabel("test accuracy (%)")
    left.set_xticks(xs)
    left.set_title(f"Accuracy vs nodes per role (label budget {budget})")
    left.legend(fontsize=7)
    pair = [_num(groups[x].get("binding", {}).get("pairing_accuracy")) for x in xs]
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
    sim = _first_with(cells, "class_similarity")
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
    conf = _first_with(cells, "pairing_confusion")
    tasks["pairing_confusion.png"] = lambda p: (
        _heatmap(
            p,
            conf[1],
            title=f"Pairing confusion, pairing accuracy "
            f"{pct(_trace_share(conf[1]), digits=1)} %\n({conf[0]})",
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


def _trace_share(matrix: list[list[float]]) -> float | None:
    total = sum(sum(r) for r in matrix)
    return sum(matrix[i][i] for i in range(len(matrix))) / total if total else None


def _figure(name: str, notes: Mapping[str, str], caption: str) -> list[str]:
    note = notes.get(name)
    if note is None:
        return []
    if note:
        return [f"*Figure `{name}` skipped: {note}.*", ""]
    return [f"![{caption}]({name})", "", f"*{caption}*", ""]


# ---------------------------------------------------------------------- report
def _comparison(results: Mapping[str, Any]) -> list[str]:
    comparison = results.get("comparison")
    if not comparison:
        return []
    lines = [
        "## Against another recipe",
        "",
        f"Paired differences (this experiment minus `{comparison.get('against')}`) over the "
        "cells both ran (same split, seed, label budget and nodes per role). Wins / losses / "
        "ties count the cells. Recipe differences: "
        + ("; ".join(f"`{d}`" for d in comparison.get("recipe_differences", [])) or "none")
        + ".",
        "",
    ]
    rows = []
    for name, entry in comparison.get("methods", {}).items():
        for metric, label in (("accuracy", "acc %"), ("macro_f1", "macro-F1")):
            e = entry.get(metric)
            if not e:
                continue
            scale = 100 if metric == "accuracy" else 1
            fmt = "{:+.2f}" if metric == "accuracy" else "{:+.3f}"
            std = "" if e.get("std") is None else f" ± {abs(e['std']) * scale:.2f}"
            rows.append(
                (
                    _title(name),
                    label,
                    pct(e["this"]) if metric == "accuracy" else dec(e["this"]),
                    pct(e["baseline"]) if metric == "accuracy" else dec(e["baseline"]),
                    fmt.format(e["mean"] * scale) + std,
                    f"{e['wins']} / {e['losses']} / {e['ties']}",
                    str(e["runs"]),
                )
            )
    lines += _table(
        ("method", "metric", "this", "baseline", "paired difference", "wins/losses/ties", "runs"),
        rows,
    )
    return lines


def _protocol(results: Mapping[str, Any]) -> list[str]:
    from mmbind.client.data.partition import PAPER_ROLES, plan_protocol
    from mmbind.client.local_data import SUBJECTS

    grid = results.get("grid", {})
    splits = [int(s) for s in grid.get("splits", [0])]
    seeds = [int(s) for s in grid.get("seeds", [0])]
    budgets = [int(b) for b in grid.get("label_budgets", [])]
    nprs = [int(n) for n in grid.get("nodes_per_role", [1])]
    lines = [
        "## Protocol",
        "",
        f"Dataset: **{results.get('dataset', '?')}** on Flower's simulation engine "
        "(one process, one Ray actor per node). The paper's roles (DESIGN.md, "
        '"The reference protocol"):',
        "",
    ]
    role_rows = [
        (
            r.name,
            "+".join(r.modalities),
            "yes" if r.labelled and r.trains else ("for scoring only" if r.labelled else "no"),
            "yes" if r.trains else "no (evaluation only)",
        )
        for r in PAPER_ROLES
    ]
    lines += _table(("role", "modalities", "labels used", "trains"), role_rows)
    lines += [
        "Shared modality: `" + str(results.get("config", {}).get("shared-modality", "acc")) + "`. "
        "Only model weights, metrics and shared-modality embeddings leave a node.",
        "",
    ]
    protocol = str(grid.get("protocol", "paper"))
    if protocol == "dev-loso":
        lines += [
            "**Subjects: the development protocol (`--protocol dev-loso`).** Leave one subject "
            "out over subjects 1-6: split *k* tests on subject *k + 1*; the other five, "
            "rotated by *k*, go two to A, two to B and one to C. Subjects 7 and 8, the test "
            "subjects of the paper protocol's split 0, are never loaded: recipes are chosen "
            "here. Splits in this experiment:",
            "",
        ]
    else:
        lines += [
            "**Subjects.** The 8 subjects are sorted and cut into 4 groups of 2; split *k* "
            "gives role *i* (A, B, C, test) group *(i + k) mod 4*, so every subject is in "
            "exactly one role and `--splits K` rotates the groups over K assignments (split 4 "
            "would repeat split 0). Splits in this experiment:",
            "",
        ]
    rows = []
    for k in splits:
        plans = plan_protocol(protocol, SUBJECTS, split=k)
        by_role = {p.role.name: p.subjects for p in plans}
        rows.append(
            (str(k), *("{" + ", ".join(map(str, by_role[r.name])) + "}" for r in PAPER_ROLES))
        )
    lines += _table(("split", *(r.name for r in PAPER_ROLES)), rows)
    if nprs != [1]:
        lines += [
            f"**Nodes per role** ({', '.join(map(str, nprs))}): each role's subjects are "
            "spread over that many nodes (by subject while a role has enough subjects, else "
            "the nodes sharing a subject split its trials round-robin); samples stay "
            "disjoint and the binding runs across all A and B nodes.",
            "",
        ]
    lines += [
        f"**Label budgets** ({', '.join(map(str, budgets))}): a stratified, seeded subset of "
        "the labelled node's samples (round-robin over classes); a budget at or above the "
        "node's size uses all of them (on UTD-MHAD split 0, C holds 215 samples, "
        "`a23_s6_t4` is missing, so 216 means *all*). The budget applies per labelled node: "
        "with several C nodes each keeps up to the budget. Labelled samples actually used "
        "are listed per budget below.",
        "",
        "**Test score.** Each method's *final* model, after its last fine-tuning epoch, is "
        "evaluated once on the test subjects (confusion matrices summed over test nodes; "
        "accuracy and macro-F1 from it). No epoch, checkpoint or hyperparameter is chosen "
        "on the test set. The paper's code instead reports the mean test accuracy over the "
        "late fine-tuning epochs.",
        "",
        f"**Seeds** {', '.join(map(str, seeds))} (each seeds model initialisation, data "
        "order, the label-budget subset and, for synthetic data, the data). Every "
        "(label budget, split, seed, nodes per role) cell runs all federated methods in one "
        "simulation; numbers are the mean ± the sample standard deviation (ddof = 1) over "
        "seeds × splits (no ± for a single run).",
        "",
        "**Recipe** (run-config values shared by every cell):",
        "",
    ]
    config = results.get("config", {})
    lines += _table(("key", "value"), [(f"`{k}`", f"`{v}`") for k, v in config.items()])
    return lines


def _ours_vs_paper(results: Mapping[str, Any]) -> list[str]:
    methods = results.get("methods", {})
    head = results.get("headline", {})
    table3 = PAPER["table3"]
    table4 = PAPER["table4_label_binding"]
    code = PAPER["paper_code_split0"]
    lines = [
        "## Ours vs the paper",
        "",
        f"Ours: label budget {head.get('label_budget', '?')}, nodes per role "
        f"{head.get('nodes_per_role', '?')}, accuracy % and macro-F1 as mean ± std over "
        "seeds × splits. Paper: Table 3 (Table 4 for label binding), five seeds, its own "
        "unpublished subject split. Paper's code: run on split 0 on 2 CPU cores with cut "
        "epochs, 3 seeds (DESIGN.md).",
        "",
    ]
    rows = []
    for name in METHOD_ORDER:
        ours = methods.get(name)
        paper = table4.get(name) if name == "mmbind_label" else table3.get(name)
        if ours is None and paper is None:
            continue
        code_row = code.get(name, {})
        rows.append(
            (
                _title(name) + ("" if ours is not None else " (not run)"),
                pct(ours.get("accuracy"), ours.get("accuracy_std")) if ours else "—",
                dec(ours.get("macro_f1"), ours.get("macro_f1_std")) if ours else "—",
                str(ours.get("runs", "")) if ours else "",
                pct((paper or {}).get("accuracy")),
                dec((paper or {}).get("macro_f1")),
                (
                    f"{pct(code_row.get('accuracy'), code_row.get('accuracy_std'), 1)} / "
                    f"{dec(code_row.get('macro_f1'))}"
                )
                if code_row
                else "—",
            )
        )
    for key, title in PAPER_ONLY:
        rows.append(
            (title, "—", "—", "", pct(table3[key]["accuracy"]), dec(table3[key]["macro_f1"]), "—")
        )
    rows.append(
        (
            "Upper bound, Table 4 setting (paper only)",
            "—",
            "—",
            "",
            pct(table4["upper_bound"]["accuracy"]),
            dec(table4["upper_bound"]["macro_f1"]),
            "—",
        )
    )
    lines += _table(
        (
            "method",
            "ours acc %",
            "ours macro-F1",
            "runs",
            "paper acc %",
            "paper macro-F1",
            "paper's code, split 0 (acc % / F1)",
        ),
        rows,
    )
    b = results.get("binding", {})
    lines += [
        "Binding, ours (both directions pooled, A→B and B→A): pairing accuracy "
        f"{pct(b.get('pairing_accuracy'), b.get('pairing_accuracy_std'), 1)} %, mean cosine "
        f"similarity {dec(b.get('mean_similarity'), b.get('mean_similarity_std'))}, "
        f"{dec(b.get('pairs'), digits=0)} pairs per run. Paper's code on split 0: "
        f"{pct(code['pairing_accuracy_a_reference'], digits=1)} % (A as reference) and "
        f"{pct(code['pairing_accuracy_b_reference'], digits=1)} % (B as reference), mean "
        f"similarity ≈ {code['mean_similarity']} (similarities of different encoders are not "
        "directly comparable).",
        "",
    ]
    return lines


def _by_budget(results: Mapping[str, Any], notes: Mapping[str, str]) -> list[str]:
    budgets = results.get("label_budgets", {})
    keys = list(budgets)
    lines = [
        "## Accuracy by label budget",
        "",
        "Accuracy % / macro-F1, mean ± std (runs).",
        "",
    ]
    names = _ordered(list(results.get("methods", {})))
    rows = []
    for name in names:
        row = [_title(name)]
        for key in keys:
            m = budgets[key]["methods"].get(name, {})
            row.append(
                f"{pct(m.get('accuracy'), m.get('accuracy_std'))} / "
                f"{dec(m.get('macro_f1'), m.get('macro_f1_std'))} ({m.get('runs', 0)})"
            )
        rows.append(row)
    used = []
    for key in keys:
        counts = budgets[key].get("labelled_samples") or []
        used.append(", ".join(map(str, counts)) if counts else "—")
    rows.append(["*labelled samples used*", *used])
    lines += _table(("method", *(f"budget {k}" for k in keys)), rows)
    lines += _figure("accuracy_vs_budget.png", notes, "Test accuracy vs label budget (mean ± std)")
    return lines


def _centralised(results: Mapping[str, Any]) -> list[str]:
    lines = ["## Federated vs centralised MMBind", ""]
    budgets = results.get("label_budgets", {})
    if CENTRALISED not in results.get("methods", {}):
        return [
            *lines,
            f"Not measured: `{CENTRALISED}` was not among the methods of this experiment.",
            "",
        ]
    rows = []
    for key, group in budgets.items():
        fed = group["methods"].get("mmbind", {})
        cen = group["methods"].get(CENTRALISED, {})
        fa, ca = _num(fed.get("accuracy")), _num(cen.get("accuracy"))
        ff, cf = _num(fed.get("macro_f1")), _num(cen.get("macro_f1"))
        fb = group.get("binding", {})
        cb = group.get("binding_centralised", {})
        rows.append(
            (
                key,
                pct(fa, fed.get("accuracy_std")),
                pct(ca, cen.get("accuracy_std")),
                "—" if fa is None or ca is None else f"{100 * (fa - ca):+.2f}",
                "—" if ff is None or cf is None else f"{ff - cf:+.3f}",
                pct(fb.get("pairing_accuracy"), digits=1),
                pct(cb.get("pairing_accuracy"), digits=1),
            )
        )
    lines += _table(
        (
            "label budget",
            "federated acc %",
            "centralised acc %",
            "gap (pp)",
            "macro-F1 gap",
            "pairing acc % (fed.)",
            "pairing acc % (central.)",
        ),
        rows,
    )
    lines += ["Gap = federated − centralised (negative: federation costs accuracy).", ""]
    return lines


def _nodes_per_role(results: Mapping[str, Any], notes: Mapping[str, str]) -> list[str]:
    lines = ["## More than two nodes: nodes per role", ""]
    by_npr = results.get("nodes_per_role")
    if not by_npr:
        n = results.get("headline", {}).get("nodes_per_role", 1)
        return [
            *lines,
            f"Only one value ({n}) was run; `--nodes-per-role 1,2,4` spreads each role over "
            "several nodes and fills this section.",
            "",
        ]
    budget = str(results.get("headline", {}).get("label_budget", ""))
    names = _ordered(list(results.get("methods", {})))
    rows = []
    for npr, entry in by_npr.items():
        group = entry["label_budgets"].get(budget, {})
        b = group.get("binding", {})
        methods = group.get("methods", {})
        rows.append(
            (
                npr,
                str(4 * int(npr)),
                *(
                    pct(methods.get(m, {}).get("accuracy"), methods.get(m, {}).get("accuracy_std"))
                    for m in names
                ),
                pct(b.get("pairing_accuracy"), b.get("pairing_accuracy_std"), 1),
                dec(b.get("mean_similarity")),
                dec((group.get("wall_seconds") or 0.0) / max(1, group.get("runs") or 1), digits=1),
            )
        )
    lines += [f"Label budget {budget}; accuracy % mean ± std.", ""]
    lines += _table(
        (
            "nodes per role",
            "nodes",
            *(f"{m} acc %" for m in names),
            "pairing acc %",
            "mean similarity",
            "wall s / cell",
        ),
        rows,
    )
    lines += _figure("nodes_per_role.png", notes, "Accuracy and pairing accuracy vs nodes per role")
    return lines


def _binding(notes: Mapping[str, str]) -> list[str]:
    lines = [
        "## Binding",
        "",
        "From the first cell that recorded them (named in each title).",
        "",
    ]
    lines += _figure(
        "class_similarity.png",
        notes,
        "Mean cosine similarity between query and partner shared-modality embeddings, by "
        "true class pair",
    )
    lines += _figure(
        "pairing_confusion.png",
        notes,
        "Pairing confusion: true class of the query sample vs true class of its bound partner",
    )
    return lines


def _curves_section(notes: Mapping[str, str]) -> list[str]:
    return [
        "## Training curves",
        "",
        *_figure("training_curves.png", notes, "Per-round training losses of one cell, by phase"),
    ]


def _walls(results: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> list[str]:
    ran = set(results.get("cells_run", []))
    code = PAPER["paper_code_split0"]
    lines = [
        "## Wall time",
        "",
        f"{len(cells)} cells, {dec(results.get('wall_seconds'), digits=1)} s of simulation "
        f"in total ({dec(results.get('wall_seconds_per_cell'), digits=1)} s per cell); this "
        f"invocation ran {len(ran)} of them in {dec(results.get('elapsed_seconds'), digits=1)} "
        f"s. The paper's code: {code['wall_seconds']:.0f} s for {code['seeds']} seeds on "
        "split 0 (2 CPU cores, cut epochs).",
        "",
    ]
    rows = []
    phases: dict[str, list[float]] = {}
    for doc in cells:
        cell = doc.get("cell") or {}
        key = str(cell.get("key", "?"))
        rows.append(
            (
                key,
                dec(doc.get("wall_seconds"), digits=1),
                "this run" if key in ran else "recorded",
            )
        )
        for phase, value in (doc.get("phases") or {}).items():
            seconds = _num((value or {}).get("seconds") if isinstance(value, dict) else value)
            if seconds is not None:
                phases.setdefault(phase, []).append(seconds)
    lines += _table(("cell", "wall s", "run by"), rows)
    if phases:
        lines += ["Seconds per phase, mean over cells:", ""]
        lines += _table(
            ("phase", "seconds"),
            [(p, f"{sum(v) / len(v):.1f}") for p, v in phases.items()],
        )
    return lines


def render_report(
    results: Mapping[str, Any],
    cells: Sequence[Mapping[str, Any]],
    notes: Mapping[str, str] | None = None,
) -> str:
    """report.md's text; ``notes`` maps figure names to ``""`` (drawn) or why not drawn."""
    notes = dict(notes or {})
    grid = results.get("grid", {})
    lines = [
        f"# mmbind experiment — {results.get('dataset', '?')}",
        "",
        f"{grid.get('cells', len(cells))} cells: methods {', '.join(grid.get('methods', []))}; "
        f"label budgets {grid.get('label_budgets', [])}; splits {grid.get('splits', [])}; "
        f"seeds {grid.get('seeds', [])}; nodes per role {grid.get('nodes_per_role', [])}. "
        "Numbers: `results.json`; per cell: `cells/<key>.json`.",
        "",
    ]
    lines += _ours_vs_paper(results)
    lines += _comparison(results)
    lines += _by_budget(results, notes)
    lines += _centralised(results)
    lines += _nodes_per_role(results, notes)
    lines += _binding(notes)
    lines += _curves_section(notes)
    lines += _protocol(results)
    lines += _walls(results, cells)
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    results: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], folder: str | Path
) -> Path:
    """Draw the figures and write ``report.md`` into ``folder``; return its path.

    Parameters
    ----------
    results : Mapping
        The experiment's results.json document.
    cells : sequence of Mapping
        The cells' documents, in grid order.
    folder : str or Path
        The experiment folder.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    notes = draw_figures(results, cells, out)
    path = out / "report.md"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(results, cells, notes))
    tmp.replace(path)
    return path
