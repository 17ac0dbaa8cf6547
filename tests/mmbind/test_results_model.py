"""The typed results documents: every recorded document loads, and writes back unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmbind.errors import DataError
from mmbind.results_model import CellDocument, ExperimentResults, RunResults

ROOT = Path(__file__).resolve().parents[2]
CELLS = sorted((ROOT / "docs" / "results").glob("*/cells/*.json"))
EXPERIMENTS = sorted((ROOT / "docs" / "results").glob("*/results.json"))


def _text(doc: dict[str, Any]) -> str:
    """A document as ``write_results``/``write_json_atomic`` write it."""
    return json.dumps(doc, indent=2) + "\n"


def _run_doc() -> dict[str, Any]:
    """A run's results.json as the coordinator writes it (a resumed run with a late node)."""
    return {
        "dataset": "synthetic",
        "engine": "deployment",
        "methods": {"mmbind": {"accuracy": 0.5, "macro_f1": 0.4, "seconds": 1.25}},
        "binding": {
            "pairs": 36,
            "pairing_accuracy": None,
            "mean_similarity": 0.5,
            "by": "modality",
            "search": {
                "method": "approximate",
                "ann_threshold": 0,
                "recall_at_1": 0.98,
                "recall_sample": 64,
                "requests": [
                    {
                        "node_id": 2,
                        "modality": "acc",
                        "method": "hnsw",
                        "pairs": 36,
                        "recall_at_1": 0.98,
                        "recall_stderr": 0.01,
                    }
                ],
            },
            "late_joiners": [{"node_id": 4, "role": "B2", "round": 1, "pairs": 12}],
        },
        "phases": {"manifest": {"seconds": 0.0}, "total": {"seconds": 3.5}},
        "wall_seconds": 4,
        "nodes": [
            {
                "node_id": 1,
                "role": "A",
                "modalities": ["acc", "skeleton"],
                "num_samples": 24,
                "labelled": True,
                "trains": True,
                "num_classes": 3,
            }
        ],
        "history": {"mmbind.align.loss": [5.0, 4.5]},
        "config": {"dataset": "synthetic", "seed": 0},
        "run_id": "r1",
        "dropouts": [
            {"node_id": 3, "role": "B", "phase": "align", "message": "train", "reason": "gone"}
        ],
        "label_budgets": {"6": {"mmbind": {"accuracy": 0.3, "macro_f1": 0.2}}},
        "skipped": {"mpm": "no node trains on the second modality"},
        "traffic": {"A": {"received": 10, "sent": 20}},
        "resumed_from": "align.1",
        "attempts": [
            {
                "attempt": "2",
                "resumed_from": "align.1",
                "last_step": "finetune",
                "seconds": 2.0,
                "phases": {"align": {"seconds": 1.0}},
            }
        ],
        "submit_wall_seconds": 5.0,
    }


@pytest.mark.parametrize("path", CELLS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_every_recorded_cell_loads_and_writes_back_byte_for_byte(path: Path) -> None:
    # Prepare
    text = path.read_text()

    # Execute
    doc = CellDocument.read(path)

    # Assert: the typed fields, and nothing lost or reordered on the way back
    assert doc.cell.key == path.stem and doc.methods and doc.recipe
    assert doc.model_extra == {}
    assert _text(doc.to_json()) == text


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.parent.name)
def test_every_recorded_experiment_results_loads_and_writes_back_byte_for_byte(
    path: Path,
) -> None:
    # Prepare
    text = path.read_text()

    # Execute
    doc = ExperimentResults.read(path)

    # Assert
    assert doc.kind == "experiment" and doc.cells and doc.model_extra == {}
    assert _text(doc.to_json()) == text


def test_recorded_documents_are_there_to_check() -> None:
    # Assert: the two tests above ran on something
    assert len(CELLS) >= 10 and len(EXPERIMENTS) >= 3


def test_a_run_document_with_every_field_round_trips_and_is_typed() -> None:
    # Prepare
    raw = _run_doc()

    # Execute
    doc = RunResults.from_json(raw, "results.json")

    # Assert: numbers keep their kind (4 stays 4), optional parts are typed, nothing moves
    assert _text(doc.to_json()) == _text(raw)
    assert isinstance(doc.wall_seconds, int)
    assert doc.binding.search is not None and doc.binding.search.recall_at_1 == 0.98
    assert doc.binding.late_joiners is not None
    assert doc.binding.late_joiners[0].model_extra == {"pairs": 12}
    assert doc.attempts is not None and doc.attempts[-1].attempt == "2"


def test_optional_fields_not_given_are_left_out_and_unknown_keys_kept() -> None:
    # Prepare: a run without budgets, resumption or search, and a key from elsewhere
    raw = _run_doc()
    for key in ("label_budgets", "skipped", "resumed_from", "submit_wall_seconds"):
        del raw[key]
    del raw["binding"]["search"]
    raw["newer_field"] = {"x": 1}

    # Execute
    out = RunResults.from_json(raw, "results.json").to_json()

    # Assert
    assert out == raw and list(out) == list(raw)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: d["methods"]["mmbind"].pop("accuracy"),
            "methods.mmbind.accuracy: Field required",
        ),
        (lambda d: d["methods"]["mmbind"].update(accuracy="0.5"), "methods.mmbind.accuracy"),
        (lambda d: d["binding"].update(pairs=True), "binding.pairs"),
        (lambda d: d.pop("binding"), "binding: Field required"),
        (lambda d: d["nodes"][0].update(labelled="yes"), "nodes.0.labelled"),
    ],
)
def test_a_document_of_the_wrong_shape_is_one_line_naming_it_and_the_field(
    change: Any, problem: str
) -> None:
    # Prepare
    raw = _run_doc()
    change(raw)

    # Execute
    with pytest.raises(DataError) as caught:
        RunResults.from_json(raw, "/x/results.json")

    # Assert
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("/x/results.json is not a run's results document (")
    assert problem in message


def test_a_file_that_is_not_json_is_corrupt_and_named(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "cell.json"
    path.write_text('{"methods": {"mmbind": {"accur')

    # Execute, Assert
    with pytest.raises(DataError, match=rf"^{path} is corrupt \("):
        CellDocument.read(path)
