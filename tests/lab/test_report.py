"""The experiment report: robust to absent data, figures grouped as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmbind.lab.report import phase_of, render_report, write_report


@pytest.mark.parametrize(
    ("key", "phase"),
    [
        ("own.pretrain.acc", "pretrain"),
        ("mmbind.align.loss", "align"),
        ("centralised.finetune.loss", "finetune"),
        ("mmbind.custom.loss", "custom"),
        ("loss", "other"),
    ],
)
def test_history_keys_are_grouped_by_phase(key: str, phase: str) -> None:
    assert phase_of(key) == phase


def test_a_nearly_empty_results_document_still_renders() -> None:
    # Prepare
    results: dict[str, Any] = {"dataset": "synthetic", "methods": {}, "label_budgets": {}}
    # Execute
    text = render_report(results, [])
    # Assert
    assert text.startswith("# mmbind experiment — synthetic")
    assert "## Ours vs the paper" in text and "78.86" in text  # the paper's rows stay
    assert "Not measured: `mmbind_centralised`" in text


def test_malformed_binding_matrices_are_skipped_with_a_note(tmp_path: Path) -> None:
    # Prepare: a ragged similarity matrix, a confusion matrix with a string in it
    results: dict[str, Any] = {
        "dataset": "synthetic",
        "methods": {"mmbind": {"accuracy": 0.5, "macro_f1": 0.4, "runs": 1}},
        "label_budgets": {"6": {"methods": {"mmbind": {"accuracy": 0.5, "runs": 1}}}},
    }
    cells = [
        {
            "cell": {"key": "budget6_split0_seed0_npr1"},
            "binding": {"class_similarity": [[1.0, 0.0], [0.5]], "pairing_confusion": [["x"]]},
        }
    ]
    # Execute
    path = write_report(results, cells, tmp_path)
    # Assert
    text = path.read_text()
    assert "`class_similarity.png` skipped" in text
    assert "`pairing_confusion.png` skipped" in text
    assert (tmp_path / "accuracy_vs_budget.png").exists()
