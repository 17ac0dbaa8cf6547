"""report.md's sections, each a list of Markdown lines from results.json's document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmbind.lab.experiment.grid import METHOD_ORDER
from mmbind.lab.paper import PAPER
from mmbind.lab.report.format import (
    dec,
    figure_lines,
    in_report_order,
    md_table,
    method_title,
    number,
    pct,
)
from mmbind.methods import CENTRALISED

#: Paper rows with no method of ours: (key in PAPER["table3"], title).
PAPER_ONLY = (
    ("cmg", "CMG (paper only)"),
    ("dcm", "DCM (paper only)"),
    ("imagebind", "ImageBind-style (paper only)"),
)


# ---------------------------------------------------------------------- report
def comparison_section(results: Mapping[str, Any]) -> list[str]:
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
                    method_title(name),
                    label,
                    pct(e["this"]) if metric == "accuracy" else dec(e["this"]),
                    pct(e["baseline"]) if metric == "accuracy" else dec(e["baseline"]),
                    fmt.format(e["mean"] * scale) + std,
                    f"{e['wins']} / {e['losses']} / {e['ties']}",
                    str(e["runs"]),
                )
            )
    lines += md_table(
        ("method", "metric", "this", "baseline", "paired difference", "wins/losses/ties", "runs"),
        rows,
    )
    return lines


def _layout_section(results: Mapping[str, Any], layout: str) -> list[str]:
    """The protocol of an experiment on a layout file: its nodes, as the file gives them."""
    from mmbind.client.data.layout import NodeLayout

    parsed = NodeLayout.read(layout)
    lines = [
        "## Protocol",
        "",
        f"Dataset: **{results.get('dataset', '?')}** on Flower's simulation engine, nodes "
        f"from the layout `{layout}` ({parsed.name}):",
        "",
    ]
    rows = [
        (
            n.name,
            "+".join(n.modalities),
            "{" + ", ".join(map(str, n.subjects)) + "}",
            "yes" if n.labelled else ("for scoring only" if n.test else "no"),
            "no (evaluation only)" if n.test else "yes",
        )
        for n in parsed.nodes
    ]
    lines += md_table(("node", "modalities", "subjects", "labels used", "trains"), rows)
    binding = (
        f"Shared modality: `{parsed.shared_modality}`."
        if parsed.binding == "modality"
        else "Label binding."
    )
    return [*lines, binding + " Only model weights, metrics and embeddings leave a node.", ""]


def protocol_section(results: Mapping[str, Any]) -> list[str]:
    from mmbind.client.data.partition import PAPER_ROLES, plan_protocol
    from mmbind.client.local_data import SUBJECTS

    grid = results.get("grid", {})
    splits = [int(s) for s in grid.get("splits", [0])]
    seeds = [int(s) for s in grid.get("seeds", [0])]
    budgets = [int(b) for b in grid.get("label_budgets", [])]
    nprs = [int(n) for n in grid.get("nodes_per_role", [1])]
    layout = str(results.get("config", {}).get("layout", "") or "")
    if layout:
        return _layout_section(results, layout)
    lines = [
        "## Protocol",
        "",
        f"Dataset: **{results.get('dataset', '?')}** on Flower's simulation engine "
        "(one process, one Ray actor per node). The paper's roles (docs/design.md, "
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
    lines += md_table(("role", "modalities", "labels used", "trains"), role_rows)
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
    from mmbind.client.data.folder_reader import subjects_of
    from mmbind.dataset_manifest import dataset_folder

    folder = dataset_folder(str(results.get("config", {}).get("dataset", "synthetic")))
    subjects = SUBJECTS if folder is None or not folder.is_dir() else subjects_of(folder)
    rows = []
    for k in splits:
        plans = plan_protocol(protocol, subjects, split=k)
        by_role = {p.role.name: p.subjects for p in plans}
        rows.append(
            (str(k), *("{" + ", ".join(map(str, by_role[r.name])) + "}" for r in PAPER_ROLES))
        )
    lines += md_table(("split", *(r.name for r in PAPER_ROLES)), rows)
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
    lines += md_table(("key", "value"), [(f"`{k}`", f"`{v}`") for k, v in config.items()])
    return lines


def ours_vs_paper_section(results: Mapping[str, Any]) -> list[str]:
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
        "epochs, 3 seeds (docs/design.md).",
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
                method_title(name) + ("" if ours is not None else " (not run)"),
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
    lines += md_table(
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


def budgets_section(results: Mapping[str, Any], notes: Mapping[str, str]) -> list[str]:
    budgets = results.get("label_budgets", {})
    keys = list(budgets)
    lines = [
        "## Accuracy by label budget",
        "",
        "Accuracy % / macro-F1, mean ± std (runs).",
        "",
    ]
    names = in_report_order(list(results.get("methods", {})))
    rows = []
    for name in names:
        row = [method_title(name)]
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
    lines += md_table(("method", *(f"budget {k}" for k in keys)), rows)
    lines += figure_lines(
        "accuracy_vs_budget.png", notes, "Test accuracy vs label budget (mean ± std)"
    )
    return lines


def centralised_section(results: Mapping[str, Any]) -> list[str]:
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
        fa, ca = number(fed.get("accuracy")), number(cen.get("accuracy"))
        ff, cf = number(fed.get("macro_f1")), number(cen.get("macro_f1"))
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
    lines += md_table(
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


def nodes_per_role_section(results: Mapping[str, Any], notes: Mapping[str, str]) -> list[str]:
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
    names = in_report_order(list(results.get("methods", {})))
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
    lines += md_table(
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
    lines += figure_lines(
        "nodes_per_role.png", notes, "Accuracy and pairing accuracy vs nodes per role"
    )
    return lines


def binding_section(notes: Mapping[str, str]) -> list[str]:
    lines = [
        "## Binding",
        "",
        "From the first cell that recorded them (named in each title).",
        "",
    ]
    lines += figure_lines(
        "class_similarity.png",
        notes,
        "Mean cosine similarity between query and partner shared-modality embeddings, by "
        "true class pair",
    )
    lines += figure_lines(
        "pairing_confusion.png",
        notes,
        "Pairing confusion: true class of the query sample vs true class of its bound partner",
    )
    return lines


def curves_section(notes: Mapping[str, str]) -> list[str]:
    return [
        "## Training curves",
        "",
        *figure_lines(
            "training_curves.png", notes, "Per-round training losses of one cell, by phase"
        ),
    ]


def walls_section(results: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> list[str]:
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
            seconds = number((value or {}).get("seconds") if isinstance(value, dict) else value)
            if seconds is not None:
                phases.setdefault(phase, []).append(seconds)
    lines += md_table(("cell", "wall s", "run by"), rows)
    if phases:
        lines += ["Seconds per phase, mean over cells:", ""]
        lines += md_table(
            ("phase", "seconds"),
            [(p, f"{sum(v) / len(v):.1f}") for p, v in phases.items()],
        )
    return lines
