"""The experiment's cache key is the recipe: operational overrides reuse recorded cells."""

from __future__ import annotations

from mmbind.lab.experiment import Grid


def test_the_experiment_cache_key_ignores_operational_overrides() -> None:
    # Prepare
    plain = Grid(methods=("mmbind",), label_budgets=(6,))
    operational = Grid(
        methods=("mmbind",), label_budgets=(6,), overrides={"reply_timeout": 9.0, "output": "x"}
    )
    recipe = Grid(methods=("mmbind",), label_budgets=(6,), overrides={"align_epochs": 2})

    # Execute / Assert
    assert operational.recipe() == plain.recipe()
    assert recipe.recipe() != plain.recipe()
