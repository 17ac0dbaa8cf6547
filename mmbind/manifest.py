"""What a node reported in phase 1, as the coordinator and its binding service keep it.

Nodes build theirs with :meth:`mmbind.client.node.LocalNode.manifest` (sent as
:class:`mmbind.wire.ManifestReply`); the coordinator adds the node id the SuperLink
gave the node. It lives in ``mmbind`` so the coordinator imports no node code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmbind.moments import ChannelMoments


@dataclass(frozen=True)
class NodeManifest:
    """What a node reported in phase 1."""

    node_id: int
    role: str
    modalities: tuple[str, ...]
    num_samples: int
    labelled: bool
    trains: bool
    num_classes: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeManifest:
        return cls(
            node_id=int(data["node_id"]),
            role=str(data["role"]),
            modalities=tuple(str(m) for m in data["modalities"]),
            num_samples=int(data["num_samples"]),
            labelled=bool(data["labelled"]),
            trains=bool(data["trains"]),
            num_classes=int(data["num_classes"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "role": self.role,
            "modalities": list(self.modalities),
            "num_samples": self.num_samples,
            "labelled": self.labelled,
            "trains": self.trains,
            "num_classes": self.num_classes,
        }


@dataclass(frozen=True)
class NodeReport:
    """What a node reports in phase 1 (:meth:`~mmbind.client.node.LocalNode.manifest`).

    Its manifest (less the node id, which the SuperLink assigns), where its data comes
    from, and the per-channel moments of each modality it holds, from which the
    coordinator merges the run's normalisation.
    """

    role: str
    modalities: tuple[str, ...]
    num_samples: int
    labelled: bool
    trains: bool
    num_classes: int
    dataset: str | None = None
    """The data set the node holds (absent in reports of older nodes)."""
    paired_data: bool = True
    """Whether the node holds naturally paired data (the upper bound needs it)."""
    moments: dict[str, ChannelMoments] = field(default_factory=dict)

    def manifest(self, node_id: int) -> NodeManifest:
        """The manifest of the node as ``node_id``."""
        return NodeManifest(
            node_id=node_id,
            role=self.role,
            modalities=self.modalities,
            num_samples=self.num_samples,
            labelled=self.labelled,
            trains=self.trains,
            num_classes=self.num_classes,
        )
