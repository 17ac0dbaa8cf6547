"""Build a node's :class:`LocalNode` from the run config and Flower's node config.

In simulation a node knows only its ``partition-id``; the role layout of the
paper (A / B / C / test, subject-disjoint) decides its modalities and subjects.
Nodes are cached per process: Flower's simulation engine reuses its actors, so
data is read and windowed once per node, not once per message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from mmbind.client.data.dataset import MultimodalDataset
from mmbind.client.data.partition import NodePlan, node_dataset, plan_nodes
from mmbind.client.data.synthetic import make_synthetic
from mmbind.client.data.utd_mhad import load_utd_mhad
from mmbind.client.node import LocalNode
from mmbind.errors import ConfigError
from mmbind.run_config import RunConfig

log = logging.getLogger(__name__)

ALL_MODALITIES = ("acc", "gyro", "skeleton")
SUBJECTS = tuple(range(1, 9))


def load_dataset(config: RunConfig) -> MultimodalDataset:
    """The whole dataset of a simulated federation (each node then keeps its own share)."""
    if config.dataset == "synthetic":
        return make_synthetic(
            num_classes=config.synthetic_classes,
            subjects=SUBJECTS,
            trials=config.synthetic_trials,
            seed=config.seed,
            modalities=ALL_MODALITIES,
        )
    if not config.data_dir:
        raise ConfigError(
            "dataset 'utd-mhad' needs a data directory: pass --data-dir DIR "
            "(the folder holding Inertial/ and Skeleton/)"
        )
    return load_utd_mhad(Path(config.data_dir), modalities=ALL_MODALITIES)


def simulation_plan(config: RunConfig) -> list[NodePlan]:
    """The node layout of a simulated federation: the paper's roles x ``nodes_per_role``."""
    return plan_nodes(SUBJECTS, split=config.split, nodes_per_role=config.nodes_per_role)


@lru_cache(maxsize=16)
def _simulated_node(config: RunConfig, partition_id: int) -> LocalNode:
    plans = simulation_plan(config)
    if not 0 <= partition_id < len(plans):
        raise ConfigError(
            f"partition-id {partition_id} is outside the federation's {len(plans)} nodes "
            f"(4 roles x nodes-per-role {config.nodes_per_role}); run the simulation "
            f"with {len(plans)} nodes"
        )
    plan = plans[partition_id]
    full = load_dataset(config)
    own = node_dataset(plan, full)
    # The same samples with every modality: the upper bound's naturally paired data.
    oracle = node_dataset(replace(plan, role=replace(plan.role, modalities=ALL_MODALITIES)), full)
    log.debug("node %d: role %s, %d samples", partition_id, plan.role.name, len(own))
    return LocalNode(
        plan.role.name,
        own,
        config,
        labelled=plan.role.labelled,
        trains=plan.role.trains,
        oracle=oracle,
    )


def node_from_context(config: RunConfig, node_config: Mapping[str, object]) -> LocalNode:
    """The node this ClientApp process serves, from Flower's node config."""
    if "partition-id" in node_config:
        pid = node_config["partition-id"]
        if not isinstance(pid, int):
            raise ConfigError(f"partition-id must be an integer; got {pid!r}")
        return _simulated_node(config, pid)
    raise ConfigError(
        "this node has no partition-id: deployment nodes are started with mmbind-client, "
        "which sets their modalities and data in the node config"
    )
