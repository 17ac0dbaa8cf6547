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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmbind.lab.report.figures import FIGURES, draw_figures, phase_of
from mmbind.lab.report.format import dec, pct
from mmbind.lab.report.sections import (
    binding_section,
    budgets_section,
    centralised_section,
    comparison_section,
    curves_section,
    nodes_per_role_section,
    ours_vs_paper_section,
    protocol_section,
    walls_section,
)

__all__ = ["FIGURES", "dec", "draw_figures", "pct", "phase_of", "render_report", "write_report"]


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
    lines += ours_vs_paper_section(results)
    lines += comparison_section(results)
    lines += budgets_section(results, notes)
    lines += centralised_section(results)
    lines += nodes_per_role_section(results, notes)
    lines += binding_section(notes)
    lines += curves_section(notes)
    lines += protocol_section(results)
    lines += walls_section(results, cells)
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
