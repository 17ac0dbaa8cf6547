"""Build a node's :class:`LocalNode` from the run config and Flower's node config.

In simulation a node knows only its ``partition-id``; the role layout of the
paper (A / B / C / test, subject-disjoint) decides its modalities and subjects.
Nodes are cached per process: Flower's simulation engine reuses its actors, so
data is read and windowed once per node, not once per message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from mmbind.client.data.dataset import MultimodalDataset
from mmbind.client.data.folder_reader import load_dataset_folder, subjects_of
from mmbind.client.data.layout import NodeLayout
from mmbind.client.data.partition import (
    NodePlan,
    node_dataset,
    plan_protocol,
    protocol_subjects,
)
from mmbind.client.data.synthetic import make_synthetic
from mmbind.client.data.utd_mhad import load_utd_mhad
from mmbind.client.node import LocalNode
from mmbind.dataset_manifest import DatasetManifest, activate_dataset, dataset_folder
from mmbind.errors import ConfigError
from mmbind.modalities import parse_modalities
from mmbind.run_config import RunConfig

log = logging.getLogger(__name__)

ALL_MODALITIES = ("acc", "gyro", "skeleton")
SUBJECTS = tuple(range(1, 9))


def dataset_subjects(config: RunConfig) -> tuple[int, ...]:
    """Every subject of the run's data set: 1..8 for the built-ins, a folder's own otherwise."""
    folder = dataset_folder(config.dataset)
    return SUBJECTS if folder is None else subjects_of(folder)


def dataset_modalities(config: RunConfig) -> tuple[str, ...]:
    """Every modality of the run's data set, in its order (a folder's: its manifest's)."""
    folder = dataset_folder(config.dataset)
    return ALL_MODALITIES if folder is None else DatasetManifest.read(folder).modality_names


def load_dataset(config: RunConfig, subjects: Sequence[int] | None = None) -> MultimodalDataset:
    """The dataset of a simulated federation (each node then keeps its own share).

    ``subjects``: only these (a data set folder then reads only their files); ``None``: the
    subjects of the run's protocol.
    """
    folder = dataset_folder(config.dataset)
    if config.dataset == "synthetic":
        full = make_synthetic(
            num_classes=config.synthetic_classes,
            subjects=SUBJECTS,
            trials=config.synthetic_trials,
            seed=config.seed,
            modalities=ALL_MODALITIES,
        )
        return full if subjects is None else full.for_subjects(subjects)
    if subjects is None:
        subjects = protocol_subjects(config.protocol, dataset_subjects(config))
    if folder is not None:
        return load_dataset_folder(folder, subjects=subjects)
    if not config.data_dir:
        raise ConfigError(
            "dataset 'utd-mhad' needs a data directory: pass --data-dir DIR "
            "(the folder holding Inertial/ and Skeleton/)"
        )
    return load_utd_mhad(Path(config.data_dir), subjects=subjects, modalities=ALL_MODALITIES)


def simulation_plan(config: RunConfig) -> list[NodePlan]:
    """The node layout of a simulated federation: the run's layout file, or the paper's roles
    x ``nodes_per_role`` with subjects assigned by the run's protocol and split.

    Raises
    ------
    ConfigError, BindingError
        A layout that cannot run (:meth:`NodeLayout.check`), before any data is read.
    """
    if config.layout:
        layout = NodeLayout.read(config.layout)
        layout.check(dataset_modalities(config), dataset_subjects(config))
        return layout.plans()
    return plan_protocol(
        config.protocol,
        dataset_subjects(config),
        split=config.split,
        nodes_per_role=config.nodes_per_role,
    )


def _plan_node(config: RunConfig, plan: NodePlan, full: MultimodalDataset) -> LocalNode:
    """The :class:`LocalNode` of one planned node, cut out of the whole dataset ``full``."""
    own = node_dataset(plan, full)
    # The same samples with every modality: the upper bound's naturally paired data.
    every = dataset_modalities(config)
    oracle = node_dataset(replace(plan, role=replace(plan.role, modalities=every)), full)
    log.debug("node %d: role %s, %d samples", plan.node, plan.role.name, len(own))
    # Node names are unique within a run: A, B, ... or A1, A2, ... with several nodes per role.
    n = config.nodes_per_role
    name = plan.role.name if n == 1 else f"{plan.role.name}{plan.node % n + 1}"
    return LocalNode(
        name,
        own,
        config,
        labelled=plan.role.labelled,
        trains=plan.role.trains,
        oracle=oracle,
    )


def simulated_nodes(config: RunConfig) -> list[LocalNode]:
    """Every node of a simulated federation, in partition-id order.

    The dataset is loaded once; the nodes are fresh objects (not the per-process cache the
    simulated ClientApps share), so a caller may install its own normalisation on them.
    """
    full = load_dataset(config)
    return [_plan_node(config, plan, full) for plan in simulation_plan(config)]


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
    # A data set folder: read only this node's subjects (their files alone).
    subjects = plan.subjects if dataset_folder(config.dataset) is not None else None
    return _plan_node(config, plan, load_dataset(config, subjects))


@dataclass(frozen=True)
class NodeSpec:
    """A deployment node's data, as ``mmbind-client`` puts it in Flower's node config.

    Attributes
    ----------
    modalities : tuple of str
        What the node holds and may train on.
    subjects : tuple of int
        Whose recordings it holds (empty: every subject of the dataset).
    labelled : bool
        Its labels may train the classifier (fine-tuning).
    test : bool
        It only evaluates (held-out data).
    role : str
        A name for logs and reports.
    paired_data : bool
        It may use every modality of its files for the upper-bound baseline.
    dataset, data_dir : str
        Where the node's own files are (they never leave it).
    """

    modalities: tuple[str, ...]
    subjects: tuple[int, ...] = ()
    labelled: bool = False
    test: bool = False
    role: str = "node"
    paired_data: bool = False
    dataset: str = "synthetic"
    data_dir: str = ""

    def to_node_config(self) -> dict[str, str | bool]:
        """Flower node-config entries (what ``flower-supernode --node-config`` carries)."""
        return {
            "modalities": ",".join(self.modalities),
            "subjects": ",".join(str(s) for s in self.subjects),
            "labelled": self.labelled,
            "test": self.test,
            "role": self.role,
            "paired-data": self.paired_data,
            "dataset": self.dataset,
            "data-dir": self.data_dir,
        }

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, object]) -> NodeSpec:
        def text(key: str, default: str = "") -> str:
            value = node_config.get(key, default)
            return str(value)

        def flag(key: str) -> bool:
            value = node_config.get(key, False)
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes"}
            return bool(value)

        subjects_text = text("subjects").strip()
        try:
            subjects = tuple(int(s) for s in subjects_text.split(",") if s.strip())
        except ValueError:
            raise ConfigError(
                f"node config subjects={subjects_text!r} must be a comma list of integers"
            ) from None
        dataset = text("dataset", "synthetic")
        activate_dataset(dataset)  # a data set folder's modalities, before they are parsed
        return cls(
            modalities=parse_modalities(text("modalities")),
            subjects=subjects,
            labelled=flag("labelled"),
            test=flag("test"),
            role=text("role", "node") or "node",
            paired_data=flag("paired-data"),
            dataset=dataset,
            data_dir=text("data-dir"),
        )


def build_node(config: RunConfig, spec: NodeSpec) -> LocalNode:
    """A deployment node: its own files, subjects and modalities."""
    local = RunConfig.from_mapping(
        {**config.model_dump(), "dataset": spec.dataset, "data_dir": spec.data_dir}
    )
    folder = dataset_folder(local.dataset)
    if folder is not None:
        # Only this node's subjects and modalities: its own files and arrays.
        modalities = dataset_modalities(local) if spec.paired_data else spec.modalities
        data = load_dataset_folder(folder, subjects=spec.subjects or None, modalities=modalities)
    elif local.dataset == "utd-mhad" and spec.subjects:
        # Read only this node's files (a ClientApp process starts for every message).
        data = load_utd_mhad(
            Path(local.data_dir), subjects=spec.subjects, modalities=ALL_MODALITIES
        )
    else:
        full = load_dataset(local)
        data = full.for_subjects(spec.subjects) if spec.subjects else full
    own = data.with_modalities(spec.modalities)
    oracle = data.with_modalities(dataset_modalities(local)) if spec.paired_data else None
    return LocalNode(
        spec.role, own, local, labelled=spec.labelled, trains=not spec.test, oracle=oracle
    )


@lru_cache(maxsize=4)
def _deployed_node(config: RunConfig, spec: NodeSpec) -> LocalNode:
    return build_node(config, spec)


def node_from_context(config: RunConfig, node_config: Mapping[str, object]) -> LocalNode:
    """The node this ClientApp process serves, from Flower's node config.

    Simulated nodes carry only ``partition-id``; deployment nodes carry a
    :class:`NodeSpec` written by ``mmbind-client``.
    """
    if "modalities" in node_config:
        return _deployed_node(config, NodeSpec.from_node_config(node_config))
    if "partition-id" in node_config:
        pid = node_config["partition-id"]
        if not isinstance(pid, int):
            raise ConfigError(f"partition-id must be an integer; got {pid!r}")
        return _simulated_node(config, pid)
    raise ConfigError(
        "this node's config has neither modalities nor partition-id: start deployment "
        "nodes with mmbind-client, which writes their modalities and data into it"
    )
