"""The Flower ClientApp of an mmbind node.

Every handler takes one path: decode the message into its request of
:mod:`mmbind.wire`, install the coordinator's normalisation, run the matching
:class:`~mmbind.client.node.LocalNode` step and encode its reply. Errors that
mmbind raises on purpose are logged as one line and re-raised, so Flower returns
an error reply that the coordinator turns into a :class:`FederationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from mmbind import wire
from mmbind.binding.fusion import FusionModel
from mmbind.client.local_data import node_from_context
from mmbind.client.node import LocalNode
from mmbind.errors import MMBindError
from mmbind.run_config import RunConfig

log = logging.getLogger(__name__)

Handler = Callable[[Message, Context], Message]

NodeFactory = Callable[[RunConfig, Mapping[str, object]], LocalNode]
"""``factory(run_config, node_config)``: the :class:`LocalNode` a ClientApp process serves."""


class _Reply(Protocol):
    def to_record(self) -> RecordDict: ...


class _Request(Protocol):
    @property
    def normalization(self) -> wire.Normalization | None: ...


R = TypeVar("R", bound=_Request)


def _model(
    node: LocalNode,
    config: RunConfig,
    modalities: tuple[str, ...],
    state: wire.State,
    *,
    mask_vector: bool = False,
) -> FusionModel:
    """A fusion model of the run's layout holding ``state`` (a message's global model)."""
    model = FusionModel(
        modalities,
        config.embed_dim,
        config.proj_dim,
        node.data.num_classes,
        mask_vector=mask_vector,
        encoder=config.encoder_spec(),
    )
    model.load_state_dict(state)
    return model


def _track_model(
    node: LocalNode, config: RunConfig, models: wire.Models, track: wire.Track
) -> FusionModel:
    return _model(
        node, config, models.modalities, models.states[track.name], mask_vector=track.mask_vector
    )


# ------------------------------------------------------------------ the steps
def manifest(node: LocalNode, config: RunConfig, req: wire.ManifestRequest) -> wire.ManifestReply:
    return wire.ManifestReply(node.manifest())


def pretrain(node: LocalNode, config: RunConfig, req: wire.PretrainRequest) -> wire.PretrainReply:
    states, metrics = node.pretrain(req.states, epochs=req.epochs, seed=req.seed)
    return wire.PretrainReply(
        states=dict(states),
        losses={m: metrics[f"{m}.loss"] for m in states},
        num_samples={m: metrics[f"{m}.num-samples"] for m in states},
    )


def embed(node: LocalNode, config: RunConfig, req: wire.EmbedRequest) -> wire.EmbedReply:
    model = _model(node, config, req.modalities, req.state)
    return wire.EmbedReply(
        embeddings=node.embed(model, req.modality),
        evaluation_labels=node.evaluation_labels() if req.evaluation_labels else None,
        # Label binding shares label ids, never the windows.
        labels=node.label_ids() if req.labels else None,
    )


def features(node: LocalNode, config: RunConfig, req: wire.FeaturesRequest) -> wire.FeaturesReply:
    out: dict[str, dict[str, np.ndarray]] = {}
    for track in req.models.tracks:
        model = _track_model(node, config, req.models, track)
        out[track.name] = {
            modality: node.features(model, modality, index)
            for modality, index in req.rows[track.name].items()
        }
    return wire.FeaturesReply(out)


def align(node: LocalNode, config: RunConfig, req: wire.AlignRequest) -> wire.AlignReply:
    reply = wire.AlignReply(
        states={}, num_samples=float(len(node.data)), losses={}, confidence={}, trained={}
    )
    for track in req.models.tracks:
        model = _track_model(node, config, req.models, track)
        partners = req.partners[track.name]
        grads: dict[str, np.ndarray] | None = {} if config.partner_grads else None
        loss = node.align(
            model,
            partners.views,
            partners.weights,
            epochs=req.epochs,
            seed=req.seed,
            oracle=track.oracle,
            partner_grads=grads,
            injected=req.routed_grads.get(track.name, {}),
        )
        reply.states[track.name] = model.state_dict()
        if grads:
            reply.partner_grads[track.name] = grads
        reply.losses[track.name] = loss
        weights = partners.weights
        reply.confidence[track.name] = float(weights.mean()) if weights.size else 0.0
        reply.trained[track.name] = node.held(track.oracle)
    return reply


def finetune(node: LocalNode, config: RunConfig, req: wire.FinetuneRequest) -> wire.FinetuneReply:
    budget = config.label_budget if req.label_budget is None else req.label_budget
    reply = wire.FinetuneReply(
        states={}, num_samples=float(len(node.labelled_subset(budget))), losses={}
    )
    for track in req.models.tracks:
        model = _track_model(node, config, req.models, track)
        reply.losses[track.name] = node.finetune(
            model, epochs=req.epochs, seed=req.seed, budget=budget
        )
        reply.states[track.name] = model.state_dict()
    return reply


def evaluate(node: LocalNode, config: RunConfig, req: wire.EvaluateRequest) -> wire.EvaluateReply:
    return wire.EvaluateReply(
        {
            track.name: node.confusion(_track_model(node, config, req.models, track))
            for track in req.models.tracks
        }
    )


# ------------------------------------------------------------------ the app
def make_client_app(
    overrides: Mapping[str, Any] | None = None, *, node_factory: NodeFactory | None = None
) -> ClientApp:
    """Build the ClientApp.

    Parameters
    ----------
    overrides : mapping, optional
        Run-config values set by ``mmbind simulate`` (over ``context.run_config``).
    node_factory : callable, optional
        Finds the node a message is for; default
        :func:`~mmbind.client.local_data.node_from_context` (simulated nodes by partition id,
        deployment nodes from the node config ``mmbind-client`` writes).
    """
    extra = dict(overrides or {})
    factory = node_factory or node_from_context
    app = ClientApp()

    def serve(
        decode: Callable[[RecordDict], R],
        step: Callable[[LocalNode, RunConfig, R], _Reply],
    ) -> Handler:
        """Decode → install the normalisation → run the node's step → encode the reply."""

        def handle(message: Message, context: Context) -> Message:
            torch.set_num_threads(1)
            try:
                node_config = dict(context.node_config)
                values = {**dict(context.run_config), **extra}
                if "modalities" in node_config and "dataset" in node_config:
                    # A deployment node: its own data set (a folder's modalities) over the
                    # coordinator's, whose folder need not exist on this machine.
                    values["dataset"] = node_config["dataset"]
                config = RunConfig.from_flower(values)
                node = factory(config, node_config)
                request = decode(message.content)
                if request.normalization is not None:
                    node.set_normalization(request.normalization)
                reply = step(node, config, request)
                return Message(reply.to_record(), reply_to=message)
            except MMBindError as exc:
                log.error("%s: %s", message.metadata.message_type, exc)
                raise

        handle.__name__ = step.__name__
        return handle

    app.query("manifest")(serve(wire.ManifestRequest.from_record, manifest))
    app.train("pretrain")(serve(wire.PretrainRequest.from_record, pretrain))
    app.query("embed")(serve(wire.EmbedRequest.from_record, embed))
    app.query("features")(serve(wire.FeaturesRequest.from_record, features))
    app.train("align")(serve(wire.AlignRequest.from_record, align))
    app.train("finetune")(serve(wire.FinetuneRequest.from_record, finetune))
    app.evaluate("test")(serve(wire.EvaluateRequest.from_record, evaluate))
    return app


app = make_client_app()
