"""Checkpoints of a run: what the coordinator needs to resume after a restart.

A checkpoint is a JSON document (finished methods and their metrics, the last
finished step of the current method, timings, dropouts, the node names) plus
binary blobs: the current model's state and the bindings. Node ids change when
the SuperLink restarts, so bindings are stored by node *name* and mapped back
to the new ids on resume. Checkpoints are fenced: only the attempt that owns the
run (:func:`claim`) writes them.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mmbind.binding.pairing import Bindings
from mmbind.errors import FederationError, StoreError
from mmbind.server.binding_service import BindRequest, NodeBinding
from mmbind.server.store import BindingStore

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


PRETRAINED = "pretrained:"
"""Key prefix of the pretrained encoders in the checkpointed model blob."""


# ------------------------------------------------------------------ fencing
def claim(store: BindingStore, run_id: str, attempt: str) -> None:
    """Make ``attempt`` the run's owner; a stale attempt still running will stop."""
    if attempt:
        store.put_blob(run_id, OWNER_BLOB, attempt.encode())


def check_owner(store: BindingStore, run_id: str, attempt: str) -> None:
    """Raise a FederationError when another attempt has taken the run over."""
    if not attempt:
        return
    owner = store.blob(run_id, OWNER_BLOB)
    if owner is not None and owner.decode() != attempt:
        raise FederationError(
            f"run {run_id} was taken over by attempt {owner.decode()}; "
            f"this attempt ({attempt}) stops"
        )


# ------------------------------------------------------------------ save and restore
def save(
    store: BindingStore,
    run_id: str,
    checkpoint: Checkpoint,
    models: Mapping[str, torch.nn.Module],
    pretrained: Mapping[str, Mapping[str, torch.Tensor]],
    bindings: Mapping[str, Sequence[NodeBinding]] | None,
    names: Mapping[int, str],
) -> None:
    """Write a checkpoint: its model blob (every track's model and the pretrained encoders),
    the bindings made in the step (by node name), then the JSON part."""
    flat = {f"{t}/{k}": v for t, model in models.items() for k, v in model.state_dict().items()}
    for m, state in pretrained.items():  # the autoencoders' encoders (binding)
        flat.update({f"{PRETRAINED}{m}/{k}": v for k, v in state.items()})
    store.put_blob(run_id, MODEL_BLOB, state_to_bytes(flat))
    for kind, bound in (bindings or {}).items():
        store.put_blob(run_id, bindings_blob(kind), bindings_to_bytes(bound, names))
    store.put_checkpoint(run_id, checkpoint.to_dict())


def load(store: BindingStore, run_id: str) -> Checkpoint | None:
    """The run's checkpoint (its JSON part), or None."""
    data = store.checkpoint(run_id)
    return None if data is None else Checkpoint.from_dict(data)


def restore_models(
    store: BindingStore, run_id: str, models: Mapping[str, torch.nn.Module]
) -> dict[str, dict[str, torch.Tensor]]:
    """Load the checkpointed models into ``models``; return the pretrained encoders' states."""
    blob = store.blob(run_id, MODEL_BLOB)
    if blob is None:
        raise FederationError("the checkpoint lacks the model state it refers to")
    flat = state_from_bytes(blob)
    pretrained: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in flat.items():
        if key.startswith(PRETRAINED):
            m, _, k = key[len(PRETRAINED) :].partition("/")
            pretrained[m][k] = value
    for name, model in models.items():
        prefix = f"{name}/"
        model.load_state_dict(
            {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
        )
    return dict(pretrained)


def restore_bindings(
    store: BindingStore, run_id: str, kinds: Sequence[str], ids: Mapping[str, int]
) -> dict[str, list[NodeBinding]]:
    """The checkpointed bindings of each of ``kinds``, mapped to the current node ids."""
    bindings = {}
    for kind in kinds:
        data = store.blob(run_id, bindings_blob(kind))
        if data is None:
            raise FederationError(f"the checkpoint lacks the {kind} bindings it refers to")
        bindings[kind] = bindings_from_bytes(data, ids)
    return bindings


def legacy_attempt(cp: Checkpoint) -> dict[str, Any]:
    """The earlier attempts of a checkpoint written before checkpoints kept ``attempts``."""
    top = {k: v for k, v in cp.phases.items() if k != "partner_features"}  # nested in align
    return {
        "attempt": "",
        "resumed_from": "",
        "last_step": cp.step,
        "seconds": sum(top.values()),
        "phases": dict(cp.phases),
    }
