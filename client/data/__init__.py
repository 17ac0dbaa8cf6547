"""Local datasets of a node: UTD-MHAD, the synthetic generator and the role partitioner."""

from .dataset import MultimodalDataset
from .normalization import ChannelMoments, dataset_moments, normalize
from .partition import PAPER_ROLES, NodePlan, Role, node_dataset, plan_nodes, role_by_name
from .synthetic import make_synthetic
from .utd_mhad import UTD_MHAD_ACTIONS, clear_utd_mhad_cache, load_utd_mhad

__all__ = [
    "PAPER_ROLES",
    "UTD_MHAD_ACTIONS",
    "ChannelMoments",
    "MultimodalDataset",
    "NodePlan",
    "Role",
    "clear_utd_mhad_cache",
    "dataset_moments",
    "load_utd_mhad",
    "make_synthetic",
    "node_dataset",
    "normalize",
    "plan_nodes",
    "role_by_name",
]
