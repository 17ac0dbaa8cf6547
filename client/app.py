"""The Flower ClientApp of an mmbind node.

Each handler decodes one message of :mod:`mmbind.wire`, runs the matching
:class:`~mmbind.client.node.LocalNode` step and encodes the reply. Errors that
mmbind raises on purpose are logged as one line and re-raised, so Flower returns
an error reply that the coordinator turns into a :class:`FederationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mmbind import wire
from mmbind.binding.fusion import FusionModel
from mmbind.client.local_data import node_from_context
from mmbind.client.node import LocalNode, PartnerView
from mmbind.errors import MMBindError
from mmbind.run_config import RunConfig

log = logging.getLogger(__name__)

Handler = Callable[[Message, Context], Message]


@dataclass(frozen=True)
class _Request:
    """One decoded message: the node it is for, the run config and the message config."""

    message: Message
    node: LocalNode
    config: RunConfig
    cfg: ConfigRecord

    def model(self, track: str | None = None) -> FusionModel:
        """The global model the message carries (``track``'s, in a lockstep message)."""
        key = wire.MODEL if track is None else wire.track_key(track, wire.MODEL)
        record = self.message.content.array_records[key]
        modalities = tuple(wire.get_str(self.cfg, "modalities").split(","))
        mask = track is not None and self.flag(wire.track_key(track, "mask-vector"))
        model = FusionModel(
            modalities,
            self.config.embed_dim,
            self.config.proj_dim,
            self.node.data.num_classes,
            mask_vector=mask,
            encoder=self.config.encoder_spec(),
        )
        model.load_state_dict(wire.record_to_state(record))
        return model

    def tracks(self) -> list[str]:
        """The methods a lockstep message carries."""
        return wire.names(self.cfg, wire.TRACKS)

    def int(self, key: str) -> int:
        return wire.get_int(self.cfg, key)

    def flag(self, key: str) -> bool:
        return wire.get_bool(self.cfg, key)

    def arrays(self, key: str) -> dict[str, np.ndarray]:
        return wire.record_to_arrays(self.message.content.array_records[key])

    def reply(self, content: RecordDict) -> Message:
        return Message(content, reply_to=self.message)


def _open(message: Message, context: Context, overrides: Mapping[str, Any]) -> _Request:
    """Decode a message: find this node, install the coordinator's normalisation."""
    config = RunConfig.from_flower({**dict(context.run_config), **overrides})
    node = node_from_context(config, dict(context.node_config))
    record = message.content.array_records.get(wire.NORMALIZATION)
    if record is not None:
        arrays = wire.record_to_arrays(record)
        node.set_normalization(
            {
                k.removesuffix(".mean"): (
                    np.asarray(arrays[k], np.float32),
                    np.asarray(arrays[k.removesuffix(".mean") + ".std"], np.float32),
                )
                for k in arrays
                if k.endswith(".mean")
            }
        )
    cfg = message.content.config_records.get(wire.CONFIG, ConfigRecord())
    return _Request(message, node, config, cfg)


def make_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """Build the ClientApp; ``overrides`` are run-config values set by ``mmbind simulate``."""
    extra = dict(overrides or {})
    app = ClientApp()

    def guarded(fn: Handler) -> Handler:
        @wraps(fn)
        def run(message: Message, context: Context) -> Message:
            torch.set_num_threads(1)
            try:
                return fn(message, context)
            except MMBindError as exc:
                log.error("%s: %s", message.metadata.message_type, exc)
                raise

        return run

    @app.query("manifest")
    @guarded
    def manifest(message: Message, context: Context) -> Message:
        req = _open(message, context, extra)
        info, moments = req.node.manifest()
        arrays: dict[str, np.ndarray] = {}
        for m, mo in moments.items():
            arrays[f"{m}.count"] = np.asarray([mo.count], dtype=np.int64)
            arrays[f"{m}.total"] = mo.total
            arrays[f"{m}.total-sq"] = mo.total_sq
        content = RecordDict(
            {
                wire.MANIFEST_KEY: ConfigRecord(info),  # type: ignore[arg-type]
                wire.MOMENTS: wire.arrays_to_record(arrays),
            }
        )
        return req.reply(content)

    @app.train("pretrain")
    @guarded
    def pretrain(message: Message, context: Context) -> Message:
        req = _open(message, context, extra)
        prefix = wire.autoencoder_key("")
        states = {
            key.removeprefix(prefix): wire.record_to_state(rec)
            for key, rec in message.content.array_records.items()
            if key.startswith(prefix)
        }
        new_states, metrics = req.node.pretrain(
            states, epochs=req.int("epochs"), seed=req.int("seed")
        )
        content = RecordDict(
            {wire.autoencoder_key(m): wire.state_to_record(s) for m, s in new_states.items()}
        )
        content[wire.METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
        return req.reply(content)

    @app.query("embed")
    @guarded
    def embed(message: Message, context: Context) -> Message:
        req = _open(message, context, extra)
        modality = wire.get_str(req.cfg, "modality")
        arrays: dict[str, np.ndarray] = {wire.EMBEDDINGS: req.node.embed(req.model(), modality)}
        if req.flag("evaluation-labels"):
            arrays[wire.EVAL_LABELS] = req.node.evaluation_labels()
        if req.flag("labels"):
            # Label binding shares label ids (DESIGN.md), never the windows.
            arrays["labels"] = req.node.label_ids()
        return req.reply(RecordDict({wire.EMBEDDINGS: wire.arrays_to_record(arrays)}))

    @app.query("features")
    @guarded
    def features(message: Message, context: Context) -> Message:
        req = _open(message, context, extra)
        content = RecordDict()
        for track in req.tracks():
            model = req.model(track)
            out: dict[str, np.ndarray] = {
                modality: req.node.features(model, modality, np.asarray(index, dtype=np.int64))
                for modality, index in req.arrays(wire.track_key(track, wire.PARTNER)).items()
            }
            content[wire.track_key(track, wire.FEATURES_KEY)] = wire.arrays_to_record(out)
        return req.reply(content)

    @app.train("align")
    @guarded
    def align(message: Message, context: Context) -> Message:
        req = _open(message, context, extra)
        node = req.node
        content = RecordDict()
        metrics: dict[str, float] = {"num-samples": float(len(node.data))}
        trained: dict[str, str] = {}
        for track in req.tracks():
            model = req.model(track)
            partner = req.arrays(wire.track_key(track, wire.PARTNER))
            views = {
                key.removesuffix(".features"): PartnerView(
                    index=np.asarray(partner[key.removesuffix(".features") + ".index"], np.int64),
                    features=np.asarray(partner[key], np.float32),
                )
                for key in partner
                if key.endswith(".features")
            }
            weights = np.asarray(partner["weights"], np.float32)
            oracle = req.flag(wire.track_key(track, "oracle"))
            loss = node.align(
                model, views, weights, epochs=req.int("epochs"), seed=req.int("seed"), oracle=oracle
            )
            content[wire.track_key(track, wire.MODEL)] = wire.state_to_record(model.state_dict())
            metrics[f"{track}.loss"] = loss
            metrics[f"{track}.confidence"] = float(weights.mean()) if weights.size else 0.0
            trained[f"{track}.trained"] = ",".join(node.held(oracle))
        content[wire.METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
        content[wire.CONFIG] = ConfigRecord(trained)  # type: ignore[arg-type]
        return req.reply(content)

    @app.train("finetune")
    @guarded
    def tune(message: Message, context: Context) -> Message:
        req = _open(message, context, extra)
        node = req.node
        content = RecordDict()
        budget = wire.get_int(req.cfg, "label-budget", req.config.label_budget)
        metrics: dict[str, float] = {"num-samples": float(len(node.labelled_subset(budget)))}
        for track in req.tracks():
            model = req.model(track)
            metrics[f"{track}.loss"] = node.finetune(
                model, epochs=req.int("epochs"), seed=req.int("seed"), budget=budget
            )
            content[wire.track_key(track, wire.MODEL)] = wire.state_to_record(model.state_dict())
        content[wire.METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
        return req.reply(content)

    @app.evaluate("test")
    @guarded
    def evaluate(message: Message, context: Context) -> Message:
        req = _open(message, context, extra)
        content = RecordDict()
        for track in req.tracks():
            cm = req.node.confusion(req.model(track))
            content[wire.track_key(track, wire.CONFUSION)] = ArrayRecord(numpy_ndarrays=[cm])
        return req.reply(content)

    return app


app = make_client_app()
