"""The Flower ClientApp of an mmbind node.

Each handler decodes one message of :mod:`mmbind.wire`, runs the matching
:class:`~mmbind.client.node.LocalNode` step and encodes the reply. Errors that
mmbind raises on purpose are logged as one line and re-raised, so Flower returns
an error reply that the coordinator turns into a :class:`FederationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
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


def _node(context: Context, overrides: Mapping[str, Any]) -> tuple[LocalNode, RunConfig]:
    config = RunConfig.from_flower({**dict(context.run_config), **overrides})
    return node_from_context(config, dict(context.node_config)), config


def _config(message: Message) -> ConfigRecord:
    return message.content.config_records.get(wire.CONFIG, ConfigRecord())


def _model(message: Message, config: RunConfig, num_classes: int) -> FusionModel:
    record = message.content.array_records[wire.MODEL]
    state = wire.record_to_state(record)
    modalities = tuple(wire.get_str(_config(message), "modalities").split(","))
    model = FusionModel(modalities, config.embed_dim, config.proj_dim, num_classes)
    model.load_state_dict(state)
    return model


def _normalization(message: Message, node: LocalNode) -> None:
    record = message.content.array_records.get(wire.NORMALIZATION)
    if record is None:
        return
    arrays = wire.record_to_arrays(record)
    stats = {
        k.removesuffix(".mean"): (arrays[k], arrays[k.removesuffix(".mean") + ".std"])
        for k in arrays
        if k.endswith(".mean")
    }
    node.set_normalization(stats)  # type: ignore[arg-type]


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
        node, _ = _node(context, extra)
        info, moments = node.manifest()
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
        return Message(content, reply_to=message)

    @app.train("pretrain")
    @guarded
    def pretrain(message: Message, context: Context) -> Message:
        node, _ = _node(context, extra)
        _normalization(message, node)
        cfg = _config(message)
        states = {
            key.removeprefix("ae."): wire.record_to_state(rec)
            for key, rec in message.content.array_records.items()
            if key.startswith("ae.")
        }
        new_states, metrics = node.pretrain(
            states,
            epochs=wire.get_int(cfg, "epochs"),
            seed=wire.get_int(cfg, "seed"),
            oracle=wire.get_bool(cfg, "oracle"),
        )
        content = RecordDict(
            {wire.autoencoder_key(m): wire.state_to_record(s) for m, s in new_states.items()}
        )
        content[wire.METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
        return Message(content, reply_to=message)

    @app.query("embed")
    @guarded
    def embed(message: Message, context: Context) -> Message:
        node, config = _node(context, extra)
        _normalization(message, node)
        cfg = _config(message)
        model = _model(message, config, node.data.num_classes)
        modality = wire.get_str(cfg, "modality")
        arrays: dict[str, np.ndarray] = {wire.EMBEDDINGS: node.embed(model, modality)}
        if wire.get_bool(cfg, "evaluation-labels"):
            arrays[wire.EVAL_LABELS] = node.evaluation_labels()
        if wire.get_bool(cfg, "labels"):
            # Label binding shares label ids (DESIGN.md), never the windows.
            arrays["labels"] = node.label_ids()
        return Message(
            RecordDict({wire.EMBEDDINGS: wire.arrays_to_record(arrays)}), reply_to=message
        )

    @app.query("features")
    @guarded
    def features(message: Message, context: Context) -> Message:
        node, config = _node(context, extra)
        _normalization(message, node)
        cfg = _config(message)
        model = _model(message, config, node.data.num_classes)
        requests = wire.record_to_arrays(message.content.array_records[wire.PARTNER])
        out: dict[str, np.ndarray] = {}
        for key, index in requests.items():
            out[key] = node.features(model, key, np.asarray(index, dtype=np.int64))
        del cfg
        return Message(
            RecordDict({wire.FEATURES_KEY: wire.arrays_to_record(out)}), reply_to=message
        )

    @app.train("align")
    @guarded
    def align(message: Message, context: Context) -> Message:
        node, config = _node(context, extra)
        _normalization(message, node)
        cfg = _config(message)
        model = _model(message, config, node.data.num_classes)
        partner = wire.record_to_arrays(message.content.array_records[wire.PARTNER])
        views = {
            key.removesuffix(".features"): PartnerView(
                index=np.asarray(partner[key.removesuffix(".features") + ".index"], np.int64),
                features=np.asarray(partner[key], np.float32),
            )
            for key in partner
            if key.endswith(".features")
        }
        weights = np.asarray(partner["weights"], np.float32)
        oracle = wire.get_bool(cfg, "oracle")
        loss = node.align(
            model,
            views,
            weights,
            epochs=wire.get_int(cfg, "epochs"),
            seed=wire.get_int(cfg, "seed"),
            oracle=oracle,
        )
        content = RecordDict(
            {
                wire.MODEL: wire.state_to_record(model.state_dict()),
                wire.METRICS: MetricRecord(
                    {
                        "loss": loss,
                        "num-samples": len(node.data),
                        "confidence": float(weights.mean()) if weights.size else 0.0,
                    }
                ),
                wire.CONFIG: ConfigRecord({"trained": ",".join(node.held(oracle))}),
            }
        )
        return Message(content, reply_to=message)

    @app.train("finetune")
    @guarded
    def tune(message: Message, context: Context) -> Message:
        node, config = _node(context, extra)
        _normalization(message, node)
        cfg = _config(message)
        model = _model(message, config, node.data.num_classes)
        loss = node.finetune(
            model,
            epochs=wire.get_int(cfg, "epochs"),
            seed=wire.get_int(cfg, "seed"),
        )
        content = RecordDict(
            {
                wire.MODEL: wire.state_to_record(model.state_dict()),
                wire.METRICS: MetricRecord(
                    {"loss": loss, "num-samples": len(node.labelled_subset())}
                ),
            }
        )
        return Message(content, reply_to=message)

    @app.evaluate("test")
    @guarded
    def evaluate(message: Message, context: Context) -> Message:
        node, config = _node(context, extra)
        _normalization(message, node)
        model = _model(message, config, node.data.num_classes)
        cm = node.confusion(model)
        content = RecordDict({wire.CONFUSION: ArrayRecord(numpy_ndarrays=[cm])})
        return Message(content, reply_to=message)

    return app


app = make_client_app()
