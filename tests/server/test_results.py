"""Metrics from confusion matrices and the run config."""

from __future__ import annotations

import numpy as np
import pytest

from mmbind.errors import ConfigError
from mmbind.run_config import RunConfig
from mmbind.server.results import metrics_from_confusion


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
