"""Simulated nodes built from the run config."""

from __future__ import annotations

from mmbind.client.local_data import simulated_nodes
from mmbind.run_config import RunConfig


def test_several_nodes_per_role_get_unique_names() -> None:
    # Prepare
    config = RunConfig(nodes_per_role=2, synthetic_trials=2)
    # Execute
    names = [node.role for node in simulated_nodes(config)]
    # Assert: the coordinator refuses repeated names; each keeps its role as prefix
    assert names == ["A1", "A2", "B1", "B2", "C1", "C2", "test1", "test2"]


def test_one_node_per_role_keeps_the_role_name() -> None:
    names = [node.role for node in simulated_nodes(RunConfig(synthetic_trials=2))]
    assert names == ["A", "B", "C", "test"]
