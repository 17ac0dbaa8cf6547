"""Checkpoints of a run: what the coordinator needs to resume after a restart.

A checkpoint is a JSON document (finished methods and their metrics, the last
finished step of the current method, timings, dropouts, the node names) plus
binary blobs: the current model's state and the bindings. Node ids change when
the SuperLink restarts, so bindings are stored by node *name* and mapped back
to the new ids on resume.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mmbind.binding.pairing import Bindings
from mmbind.errors import StoreError
from mmbind.server.binding_service import BindRequest, NodeBinding

MODEL_BLOB = "model"
BINDINGS_BLOB = "bindings"


def bindings_blob(kind: str) -> str:
    """Blob name of the bindings made by ``kind`` (``"modality"`` or ``"label"``)."""
    return f"{BINDINGS_BLOB}.{kind}"


OWNER_BLOB = "owner"
"""The attempt that currently owns the run; checkpoints are fenced by it."""


@dataclass
class Checkpoint:
    """The JSON part of a checkpoint."""

    step: str = ""
    """Last finished step, ``"<phase>[.<round>]"`` (all methods in lockstep); empty before any."""
    methods: dict[str, dict[str, float]] = field(default_factory=dict)
    budgets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Per extra label budget (as a string), its methods' metrics."""
    binding: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    dropouts: list[dict[str, Any]] = field(default_factory=list)
    node_names: dict[str, str] = field(default_factory=dict)
    """Node id (as a string) to node name, as of the run that wrote the checkpoint."""
    config: dict[str, Any] = field(default_factory=dict)
    """The run config (Flower form) the run started with; a resumed run keeps it."""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """Every attempt so far, the one that wrote the checkpoint last (its record as of now)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def state_to_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    return buffer.getvalue()


def state_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt archives
        raise StoreError(f"the checkpointed model state is unreadable: {exc}") from None
    if not isinstance(state, dict):
        raise StoreError("the checkpointed model state is not a state dict")
    return state


def bindings_to_bytes(bindings: Sequence[NodeBinding], names: Mapping[int, str]) -> bytes:
    """Serialise bindings with node names instead of ids (``.npz`` + JSON header)."""
    arrays: dict[str, np.ndarray] = {}
    header = []
    for i, b in enumerate(bindings):
        header.append(
            {
                "node": names[b.request.node_id],
                "modality": b.request.modality,
                "partners": [names[p] for p in b.request.partners],
            }
        )
        arrays[f"{i}.query_index"] = b.bindings.query_index
        arrays[f"{i}.partner_node"] = b.bindings.partner_node
        arrays[f"{i}.partner_index"] = b.bindings.partner_index
        arrays[f"{i}.similarity"] = b.bindings.similarity
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def bindings_from_bytes(data: bytes, ids: Mapping[str, int]) -> list[NodeBinding]:
    """Inverse of :func:`bindings_to_bytes`, mapping names to the current node ids.

    Raises
    ------
    StoreError
        When a bound node has not come back (its name has no current id).
    """
    with np.load(io.BytesIO(data)) as npz:
        header = json.loads(bytes(npz["header"]).decode())
        out = []
        for i, h in enumerate(header):
            missing = [n for n in [h["node"], *h["partners"]] if n not in ids]
            if missing:
                raise StoreError(
                    f"cannot resume the binding: node(s) {missing} did not reconnect; "
                    f"connected: {sorted(ids)}"
                )
            request = BindRequest(
                ids[h["node"]], h["modality"], tuple(ids[p] for p in h["partners"])
            )
            bindings = Bindings(
                query_index=npz[f"{i}.query_index"],
                partner_node=npz[f"{i}.partner_node"],
                partner_index=npz[f"{i}.partner_index"],
                similarity=npz[f"{i}.similarity"],
            )
            out.append(NodeBinding(request, bindings))
    return out
