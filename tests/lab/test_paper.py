"""The paper's figures are data (lab/paper.toml), read once and shown by the report."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mmbind.lab.paper import PAPER, PAPER_LABEL_BUDGETS, PAPER_SECTIONS
from mmbind.lab.report import render_report

ROOT = Path(__file__).resolve().parents[2]


def test_paper_figures_are_the_toml_file() -> None:
    # Prepare
    data = tomllib.loads((ROOT / "lab" / "paper.toml").read_text())

    # Execute
    recorded = {key: data[key] for key in PAPER_SECTIONS}

    # Assert
    assert recorded == PAPER
    assert data["protocol"]["label_budgets"] == list(PAPER_LABEL_BUDGETS)


def test_every_paper_figure_is_a_fraction() -> None:
    # Prepare
    tables = [PAPER["table3"], PAPER["table4_label_binding"]]

    # Execute
    values = [v for table in tables for row in table.values() for v in row.values()]

    # Assert
    assert values and all(0.0 < v < 1.0 for v in values)


def test_the_report_shows_the_paper_figures() -> None:
    # Prepare
    results = {"dataset": "utd-mhad", "methods": {}, "label_budgets": {}}

    # Execute
    text = render_report(results, [])

    # Assert
    mmbind = PAPER["table3"]["mmbind"]
    assert f"{100 * mmbind['accuracy']:.2f}" in text
    assert f"{mmbind['macro_f1']:.3f}" in text
    assert f"{100 * PAPER['table4_label_binding']['upper_bound']['accuracy']:.2f}" in text
