"""Metrics from confusion matrices and the run config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmbind.errors import ConfigError
from mmbind.run_config import RunConfig
from mmbind.server.results import build_results, check_output, metrics_from_confusion
from mmbind.server.workflow import RunResult


def test_metrics_from_confusion_by_hand() -> None:
    # 3 classes; class 2 never occurs and is never predicted.
    cm = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 0]])
    m = metrics_from_confusion(cm)
    assert m["accuracy"] == pytest.approx(5 / 8)
    f1_0 = 2 * 3 / (4 + 5)
    f1_1 = 2 * 2 / (4 + 3)
    assert m["macro_f1"] == pytest.approx((f1_0 + f1_1) / 2)


def test_run_config_round_trips_through_flower_form() -> None:
    cfg = RunConfig.from_mapping({"seed": 4, "methods": "mmbind,lower_bound"})
    again = RunConfig.from_flower(cfg.to_flower())
    assert again == cfg
    assert again.methods == ("mmbind", "lower_bound")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shared_modality": "accel"}, "unknown modality 'accel'.*acc, gyro, mag, skeleton"),
        ({"methods": "mmbind,foo"}, "methods"),
        ({"batch_size": 1}, "batch-size=1"),
        ({"nope": 1}, "nope"),
        ({"methods": ","}, "methods=.*give at least one method of lower_bound, unimodal"),
        ({"weighting": "foo"}, "weighting='foo': weighting must be one of .*similarity.*uniform"),
        ({"weighting": "power"}, "weighting='power'.*without parameters"),
        ({"seed": -1}, "seed=-1"),
        ({"nodes_per_role": 0}, "nodes-per-role=0"),
        ({"split": -1}, "split=-1"),
    ],
)
def test_run_config_errors_name_the_value(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_mapping(values)


def test_label_budgets_parse_from_flower_form_and_round_trip() -> None:
    # Prepare / Execute
    config = RunConfig.from_flower({"label-budgets": "54,108,54", "label-budget": 216})
    # Assert: duplicates dropped, order kept, Flower form is a comma list again
    assert config.label_budgets == (54, 108)
    assert config.to_flower()["label-budgets"] == "54,108"
    assert RunConfig.from_flower(config.to_flower()) == config


def test_negative_label_budget_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="label-budgets"):
        RunConfig.from_flower({"label-budgets": "54,-1"})


def test_check_output_creates_the_folder_and_refuses_an_existing_results_json(
    tmp_path: Path,
) -> None:
    # Prepare
    folder = tmp_path / "a" / "b"
    # Execute
    assert check_output(folder) == folder
    (folder / "results.json").write_text("{}")
    # Assert
    assert folder.is_dir()
    with pytest.raises(ConfigError, match=r"results\.json already exists; pass --overwrite"):
        check_output(folder)
    assert check_output(folder, overwrite=True) == folder
    assert (folder / "results.json").read_text() == "{}"  # checking writes nothing


def test_check_output_refuses_a_folder_it_cannot_create_or_a_file(tmp_path: Path) -> None:
    # Prepare
    a_file = tmp_path / "hostname"
    a_file.write_text("x")
    # Execute, Assert
    with pytest.raises(ConfigError, match="--output '/proc/mmbind-x' cannot be created"):
        check_output("/proc/mmbind-x")
    with pytest.raises(ConfigError, match=f"--output '{a_file}' is a file"):
        check_output(a_file)


def test_results_json_keeps_the_search_and_the_late_nodes_of_the_binding() -> None:
    # Prepare: a binding report as the workflow makes it, with an approximate search
    search = {"method": "approximate", "ann_threshold": 0, "recall_at_1": 0.98}
    late = [{"node_id": 4, "role": "B2", "round": 1, "pairs": 12}]
    binding = {"pairs": 36, "mean_similarity": 0.5, "search": search, "late_joiners": late}
    # Execute
    doc = build_results(
        config=RunConfig(),
        engine="simulation",
        result=RunResult(binding=binding),
        wall_seconds=1.0,
    ).to_json()
    # Assert
    assert (doc["binding"]["search"], doc["binding"]["late_joiners"]) == (search, late)


def test_results_json_of_a_resumed_run_keeps_its_keys_order_and_rounding() -> None:
    # Prepare: what a resumed run with two label budgets measured
    result = RunResult(
        methods={"mmbind": {"accuracy": 0.12345678, "macro_f1": 0.3333333, "seconds": 1.23456}},
        budgets={
            "12": {"mmbind": {"accuracy": 0.1111111, "macro_f1": 0.2, "seconds": 3.0}},
            "6": {"mmbind": {"accuracy": 0.5, "macro_f1": 0.25}},
        },
        binding={"pairs": 36, "pairing_accuracy": float("nan"), "mean_similarity": 0.5555556},
        phases={"pretrain": 1.23456},
        history={"mmbind.align.loss": [0.1234567891]},
        dropouts=[{"node_id": 2, "role": "B", "phase": "align", "message": "t", "reason": "x"}],
        skipped={"mpm": "no node holds the second modality"},
        dataset="synthetic",
        traffic={"A": {"received": 1, "sent": 2}},
        resumed_from="align.1",
        attempts=[
            {
                "attempt": "2",
                "resumed_from": "align.1",
                "last_step": "done",
                "seconds": 1.23456,
                "phases": {"align": 2.34567},
            }
        ],
    )
    # Execute
    doc = build_results(
        config=RunConfig(), engine="simulation", result=result, wall_seconds=3.14159, run_id="r1"
    ).to_json()
    # Assert: the README's order; metrics to 6 decimals, seconds to 3; budgets by number
    assert list(doc) == [
        "dataset", "engine", "methods", "binding", "phases", "wall_seconds", "nodes",
        "history", "config", "run_id", "dropouts", "label_budgets", "skipped", "traffic",
        "resumed_from", "attempts",
    ]  # fmt: skip
    assert doc["dataset"] == "synthetic"  # what the nodes hold, not the config's
    assert doc["methods"] == {
        "mmbind": {"accuracy": 0.123457, "macro_f1": 0.333333, "seconds": 1.235}
    }
    assert doc["binding"] == {"pairs": 36, "pairing_accuracy": None, "mean_similarity": 0.555556}
    assert (doc["phases"], doc["wall_seconds"]) == ({"pretrain": {"seconds": 1.235}}, 3.142)
    assert list(doc["label_budgets"]) == ["6", "12"]
    assert doc["label_budgets"]["12"] == {"mmbind": {"accuracy": 0.111111, "macro_f1": 0.2}}
    assert doc["attempts"][0]["phases"] == {"align": {"seconds": 2.346}}
    assert doc["attempts"][0]["seconds"] == 1.235


def test_a_run_without_budgets_skips_or_resumption_leaves_those_keys_out() -> None:
    # Prepare
    result = RunResult(binding={"pairs": 0}, attempts=[])
    # Execute
    doc = build_results(
        config=RunConfig(), engine="simulation", result=result, wall_seconds=1.0
    ).to_json()
    # Assert
    assert not {"run_id", "label_budgets", "skipped", "resumed_from"} & set(doc)
    assert (doc["dropouts"], doc["traffic"], doc["attempts"]) == ([], {}, [])
