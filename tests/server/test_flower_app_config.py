"""The Flower app's run config in pyproject.toml mirrors RunConfig, key for key."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mmbind.run_config import RunConfig

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_pyproject_run_config_matches_run_config_defaults() -> None:
    flower = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    defaults = RunConfig().to_flower()
    assert set(flower) == set(defaults)
    for key, value in defaults.items():
        if key in {"min-nodes"}:
            continue  # the Flower app waits for the 4 simulated nodes of `flwr run .`
        assert flower[key] == value, key
    assert RunConfig.from_flower(flower).min_nodes == 4
