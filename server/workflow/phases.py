"""The training phases as configure/aggregate pairs, in the shape of Flower's ``Strategy``.

Each ``configure_*`` returns, per node id, the typed request (:mod:`mmbind.wire`) of one
round, as ``Strategy.configure_train`` returns a round's messages; each ``aggregate_*``
takes the typed replies by node id, in the fixed order the workflow hands them over
(node names, not arrival), and returns the new global state and the round's metrics,
as ``Strategy.aggregate_train`` does. None of them sends anything: the workflow does
(:class:`~mmbind.server.workflow.channel.NodeChannel`), so each is tested with fake
replies.

Phases 3 and 4 (binding, partner features) are in :mod:`.binding` and :mod:`.routing`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from mmbind import wire
from mmbind.errors import FederationError
from mmbind.manifest import NodeManifest, NodeReport
from mmbind.methods import MethodSpec
from mmbind.moments import ChannelMoments, merge_normalization
from mmbind.partners import PartnerView
from mmbind.run_config import RunConfig
from mmbind.server.aggregation import average_modality, weighted_average
from mmbind.server.results import metrics_from_confusion

State = dict[str, torch.Tensor]
Routed = dict[int, wire.Partners]
"""Per node id, its partner record (tuple weights, routed features) for one method."""
RoutedGrads = dict[int, dict[str, PartnerView]]
"""Per partner node id and modality, the gradients routed back to its own rows."""


def lockstep(
    models: Mapping[str, torch.nn.Module], tracks: Sequence[MethodSpec], modalities: Sequence[str]
) -> wire.Models:
    """The models part of a lockstep message: every track's current model."""
    return wire.Models(
        tuple(modalities),
        tuple(wire.Track(t.name, oracle=t.oracle, mask_vector=t.mask_vector) for t in tracks),
        {t.name: models[t.name].state_dict() for t in tracks},
    )


# ------------------------------------------------------------------ phase 1
def normalization(
    reports: Iterable[NodeReport], scheme: str
) -> dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]:
    """The run's normalisation: the training nodes' moments merged per modality.

    ``reports`` in node-id order (the order of the floating-point sums).
    """
    moments: dict[str, list[ChannelMoments]] = defaultdict(list)
    for r in reports:
        if not r.trains:
            continue
        for m in r.modalities:
            if m not in r.moments:
                raise FederationError(f"node {r.role!r} reported no channel moments of {m!r}")
            moments[m].append(r.moments[m])
    return merge_normalization(moments, scheme)


# ------------------------------------------------------------------ phase 2
def configure_pretrain(
    states: Mapping[str, State],
    nodes: Sequence[NodeManifest],
    config: RunConfig,
    rnd: int,
    norm: wire.Normalization | None,
) -> dict[int, wire.PretrainRequest]:
    """Round ``rnd``: each training node gets the global autoencoder of each modality it holds."""
    return {
        n.node_id: wire.PretrainRequest(
            {m: states[m] for m in n.modalities},
            epochs=config.pretrain_epochs,
            seed=config.seed * 1000 + rnd,
            normalization=norm,
        )
        for n in nodes
    }


def aggregate_pretrain(
    states: Mapping[str, State],
    modalities: Sequence[str],
    replies: Mapping[int, wire.PretrainReply],
) -> tuple[dict[str, State], dict[str, float]]:
    """FedAvg of each modality's autoencoder over its holders (weights: sample counts).

    Returns the new states and, per modality some node trained, its mean loss.
    """
    out = dict(states)
    losses: dict[str, float] = {}
    for m in modalities:
        holders = [r for r in replies.values() if m in r.states]
        if not holders:
            continue
        out[m] = weighted_average(
            [r.states[m] for r in holders], [r.num_samples[m] for r in holders]
        )
        losses[m] = float(np.mean([r.losses[m] for r in holders]))
    return out, losses


# ------------------------------------------------------------------ phase 5
def configure_align(
    models: Mapping[str, torch.nn.Module],
    tracks: Sequence[MethodSpec],
    nodes: Sequence[NodeManifest],
    modalities: Sequence[str],
    config: RunConfig,
    rnd: int,
    routed: Mapping[str, Routed],
    routed_grads: Mapping[str, RoutedGrads],
    norm: wire.Normalization | None,
) -> dict[int, wire.AlignRequest]:
    """Round ``rnd`` of phase 5 for every aligning track, to every training node.

    A node no binding routed features to trains on its own modalities with weight 1;
    the gradients other nodes' losses sent back last round go with the message
    (end-to-end alignment).
    """
    models_part = lockstep(models, tracks, modalities)
    out: dict[int, wire.AlignRequest] = {}
    for n in nodes:
        partners: dict[str, wire.Partners] = {}
        for t in tracks:
            mine = routed.get(t.name, {}).get(n.node_id)
            partners[t.name] = (
                mine if mine is not None else wire.Partners(np.ones(n.num_samples, np.float32))
            )
        grads = {}
        for t in tracks:  # last round's gradients of other nodes' losses (end to end)
            pushed = routed_grads.get(t.name, {}).get(n.node_id)
            if pushed:
                grads[t.name] = pushed
        out[n.node_id] = wire.AlignRequest(
            models_part,
            epochs=config.align_epochs,
            seed=config.seed * 1000 + rnd,
            partners=partners,
            routed_grads=grads,
            normalization=norm,
        )
    return out


def aggregate_align(
    models: Mapping[str, torch.nn.Module],
    tracks: Sequence[MethodSpec],
    modalities: Sequence[str],
    replies: Mapping[int, wire.AlignReply],
) -> tuple[dict[str, State], dict[str, float]]:
    """Each track's model averaged per modality over the nodes that trained it.

    Weights are sample count x binding confidence (a modality no node trained, or
    trained with zero weight, keeps its state). Returns the new state and the mean
    loss of each track.
    """
    states: dict[str, State] = {}
    losses: dict[str, float] = {}
    for t in tracks:
        state: State = dict(models[t.name].state_dict())
        for m in modalities:
            got = [
                (r.states[t.name], r.num_samples * r.confidence[t.name])
                for r in replies.values()
                if m in r.trained[t.name]
            ]
            if got and sum(w for _, w in got) > 0:
                state = average_modality(state, [s for s, _ in got], [w for _, w in got], m)
        states[t.name] = state
        if replies:
            losses[t.name] = float(np.mean([r.losses[t.name] for r in replies.values()]))
    return states, losses


# ------------------------------------------------------------------ phase 6
def configure_finetune(
    models: Mapping[str, torch.nn.Module],
    tracks: Sequence[MethodSpec],
    nodes: Sequence[NodeManifest],
    modalities: Sequence[str],
    config: RunConfig,
    rnd: int,
    budget: int,
    norm: wire.Normalization | None,
) -> dict[int, wire.FinetuneRequest]:
    """Round ``rnd`` of fine-tuning every track on the labelled training nodes."""
    models_part = lockstep(models, tracks, modalities)
    epochs = max(1, config.finetune_epochs // config.finetune_rounds)
    return {
        n.node_id: wire.FinetuneRequest(
            models_part, epochs, config.seed * 1000 + rnd, label_budget=budget, normalization=norm
        )
        for n in nodes
    }


def aggregate_finetune(
    tracks: Sequence[MethodSpec], replies: Mapping[int, wire.FinetuneReply]
) -> tuple[dict[str, State], dict[str, float]]:
    """FedAvg of each track's model (weights: labelled sample counts); mean losses."""
    if not replies:
        raise FederationError("no labelled node answered the fine-tuning round")
    counts = [r.num_samples for r in replies.values()]
    states = {
        t.name: weighted_average([r.states[t.name] for r in replies.values()], counts)
        for t in tracks
    }
    losses = {t.name: float(np.mean([r.losses[t.name] for r in replies.values()])) for t in tracks}
    return states, losses


def configure_evaluate(
    models: Mapping[str, torch.nn.Module],
    tracks: Sequence[MethodSpec],
    nodes: Sequence[NodeManifest],
    modalities: Sequence[str],
    norm: wire.Normalization | None,
) -> dict[int, wire.EvaluateRequest]:
    """Every track's final model to every test node."""
    request = wire.EvaluateRequest(lockstep(models, tracks, modalities), normalization=norm)
    return {n.node_id: request for n in nodes}


def aggregate_evaluate(
    tracks: Sequence[MethodSpec], replies: Mapping[int, wire.EvaluateReply], num_classes: int
) -> dict[str, dict[str, float]]:
    """Each track's metrics from the test nodes' summed confusion matrices."""
    if not replies:
        raise FederationError("no test node answered the evaluation")
    out: dict[str, dict[str, float]] = {}
    for t in tracks:
        cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        for r in replies.values():
            cm += r.confusion[t.name]
        out[t.name] = metrics_from_confusion(cm)
    return out
