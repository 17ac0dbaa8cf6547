"""RunConfig's recipe (what decides the figures) against its operational options."""

from __future__ import annotations

from typing import Any

import pytest

from mmbind.run_config import RunConfig

#: A value other than the default for every operational field.
OPERATIONAL_VALUES: dict[str, Any] = {
    "data_dir": "/elsewhere",
    "output": "/tmp/out",
    "run_id": "run-7",
    "resume": True,
    "attempt": "a2",
    "binding_service": "127.0.0.1:29250",
    "reply_timeout": 30.0,
    "min_nodes": 3,
    "wait_seconds": 5.0,
    "node_grace_seconds": 0.0,
}


def test_the_operational_fields_are_the_ones_named() -> None:
    assert set(RunConfig.operational_fields()) == set(OPERATIONAL_VALUES)


@pytest.mark.parametrize(("name", "value"), sorted(OPERATIONAL_VALUES.items()))
def test_an_operational_option_leaves_the_recipe_unchanged(name: str, value: Any) -> None:
    # Prepare
    default = RunConfig()

    # Execute
    changed = RunConfig.from_mapping({name: value})

    # Assert
    assert changed.to_flower() != default.to_flower()
    assert changed.recipe() == default.recipe()


@pytest.mark.parametrize(
    ("name", "value"), [("align_epochs", 3), ("seed", 4), ("normalization", "channel")]
)
def test_a_recipe_value_changes_the_recipe(name: str, value: Any) -> None:
    # Execute
    changed = RunConfig.from_mapping({name: value})

    # Assert
    assert changed.recipe() != RunConfig().recipe()
    assert changed.recipe()[name.replace("_", "-")] == value
