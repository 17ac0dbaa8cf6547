"""The six phases of one federated MMBind run (DESIGN.md), driven over a Flower ``Grid``.

1. manifest – nodes report modalities, counts, shapes, labels and channel moments;
2. pretrain – one autoencoder per modality, FedAvg over that modality's holders;
3. binding – shared-modality embeddings uploaded and bound across nodes;
4. partner features – partners embed their private modality for bound samples,
   routed by the coordinator;
5. align – weighted multi-view contrastive rounds, aggregated per modality with
   weights sample count x binding confidence;
6. fine-tune on the labelled paired node(s), evaluate on the test node(s).

The baselines reuse the same machinery: the lower bound skips phases 2–5; the
upper bound replaces binding by the naturally paired data (simulation only).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from numpy.typing import NDArray

from mmbind import wire
from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.encoders import SensorEncoder
from mmbind.binding.fusion import FusionModel
from mmbind.binding.weights import get_weighting
from mmbind.client.data.normalization import ChannelMoments
from mmbind.errors import BindingError, FederationError
from mmbind.modalities import REGISTRY
from mmbind.run_config import RunConfig
from mmbind.server.aggregation import average_modality, weighted_average
from mmbind.server.binding_service import (
    BindingService,
    NodeBinding,
    NodeManifest,
    binding_report,
    check_bindable,
    tuple_weights,
)
from mmbind.server.results import metrics_from_confusion
from mmbind.server.store import BindingStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(label, step, total)``: called as phases and rounds advance."""

State = dict[str, torch.Tensor]


@dataclass
class RunResult:
    """What one run measured; :mod:`mmbind.server.results` turns it into results.json."""

    methods: dict[str, dict[str, float]] = field(default_factory=dict)
    binding: dict[str, float | int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    nodes: list[dict[str, object]] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


class Workflow:
    """Drives one run's phases over ``grid`` and collects a :class:`RunResult`."""

    def __init__(
        self,
        grid: Grid,
        config: RunConfig,
        store: BindingStore,
        *,
        run_id: str,
        progress: Progress | None = None,
        evaluation_labels: bool = True,
        timeout: float | None = None,
    ) -> None:
        self.grid = grid
        self.config = config
        self.progress = progress or (lambda label, step, total: None)
        self.evaluation_labels = evaluation_labels
        self.timeout = timeout
        self.service = BindingService(store, run_id)
        self.weighting = get_weighting(config.weighting)
        self.result = RunResult()
        self._norm: ArrayRecord | None = None
        self._modalities: tuple[str, ...] = ()
        self._num_classes = 0

    # ------------------------------------------------------------ messaging
    def _send(self, message_type: str, contents: Mapping[int, RecordDict]) -> dict[int, RecordDict]:
        """Send one message per node and return the replies' contents by node id."""
        messages = [
            Message(content, dst_node_id=node_id, message_type=message_type)
            for node_id, content in contents.items()
        ]
        if not messages:
            return {}
        replies = list(self.grid.send_and_receive(messages, timeout=self.timeout))
        out: dict[int, RecordDict] = {}
        failed: dict[int, str] = {}
        for reply in replies:
            src = reply.metadata.src_node_id
            if reply.has_error():
                failed[src] = reply.error.reason or f"error code {reply.error.code}"
            else:
                out[src] = reply.content
        for node_id in set(contents) - set(out) - set(failed):
            failed[node_id] = "no reply"
        if failed:
            detail = "; ".join(f"{self._describe(n)}: {why}" for n, why in sorted(failed.items()))
            raise FederationError(f"{message_type} failed on {len(failed)} node(s): {detail}")
        return out

    def _describe(self, node_id: int) -> str:
        known = {n.node_id: n.role for n in self.service.nodes}
        return f"node {node_id} ({known[node_id]})" if node_id in known else f"node {node_id}"

    def _content(self, config: Mapping[str, Any], **arrays: ArrayRecord) -> RecordDict:
        content = RecordDict({wire.CONFIG: ConfigRecord(dict(config))})
        if self._norm is not None:
            content[wire.NORMALIZATION] = self._norm
        for key, record in arrays.items():
            content[key] = record
        return content

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.result.phases[name] += time.perf_counter() - start

    # ---------------------------------------------------------------- model
    def _new_model(self, seed_offset: int = 0) -> FusionModel:
        torch.manual_seed(self.config.seed * 1000 + seed_offset)
        cfg = self.config
        return FusionModel(self._modalities, cfg.embed_dim, cfg.proj_dim, self._num_classes)

    def _model_config(self, **extra: Any) -> dict[str, Any]:
        return {"modalities": ",".join(self._modalities), **extra}

    # -------------------------------------------------------------- phase 1
    def _wait_for_nodes(self) -> list[int]:
        """Node ids once ``min_nodes`` are connected; a FederationError after ``wait_seconds``."""
        cfg = self.config
        deadline = time.monotonic() + cfg.wait_seconds
        while True:
            node_ids = sorted(self.grid.get_node_ids())
            if len(node_ids) >= cfg.min_nodes:
                return node_ids
            if time.monotonic() > deadline:
                raise FederationError(
                    f"only {len(node_ids)} of {cfg.min_nodes} nodes connected within "
                    f"{cfg.wait_seconds:.0f} s; start more nodes or lower min-nodes"
                )
            time.sleep(0.2)

    def manifest(self) -> list[NodeManifest]:
        """Phase 1: gather manifests, check compatibility, build normalisation stats."""
        node_ids = self._wait_for_nodes()
        self.progress("manifest", 0, 1)
        replies = self._send(wire.MANIFEST, {n: RecordDict() for n in node_ids})
        moments: dict[str, list[ChannelMoments]] = defaultdict(list)
        classes: set[int] = set()
        for node_id, content in replies.items():
            info = content.config_records[wire.MANIFEST_KEY]
            manifest = NodeManifest(
                node_id=node_id,
                role=wire.get_str(info, "role"),
                modalities=tuple(wire.get_str(info, "modalities").split(",")),
                num_samples=wire.get_int(info, "num-samples"),
                labelled=wire.get_bool(info, "labelled"),
                trains=wire.get_bool(info, "trains"),
                num_classes=wire.get_int(info, "num-classes"),
            )
            self.service.register(manifest)
            classes.add(manifest.num_classes)
            if manifest.trains:
                arrays = wire.record_to_arrays(content.array_records[wire.MOMENTS])
                for m in manifest.modalities:
                    moments[m].append(
                        ChannelMoments(
                            count=int(arrays[f"{m}.count"][0]),
                            total=np.asarray(arrays[f"{m}.total"], np.float64),
                            total_sq=np.asarray(arrays[f"{m}.total-sq"], np.float64),
                        )
                    )
        nodes = sorted(self.service.nodes, key=lambda n: n.node_id)
        self.result.nodes = [n.to_dict() for n in nodes]
        if len(classes) != 1:
            raise FederationError(f"nodes disagree on the number of classes: {sorted(classes)}")
        self._num_classes = classes.pop()
        held = {m for n in nodes for m in n.modalities}
        self._modalities = tuple(m for m in REGISTRY if m in held)
        if not any(n.labelled for n in nodes):
            raise BindingError("no labelled node: fine-tuning needs at least one labelled node")
        if not any(not n.trains for n in nodes):
            raise BindingError("no test node: evaluation needs a node with trains=False")
        missing = {m for n in nodes if not n.trains for m in n.modalities} - set(moments)
        if missing:
            raise BindingError(
                f"test nodes hold {sorted(missing)}, which no training node holds: "
                "the model could never learn them"
            )
        if "mmbind" in self.config.methods:
            check_bindable(nodes, self.config.shared_modality)
        stats: dict[str, NDArray[np.float32]] = {}
        for m, parts in moments.items():
            merged = ChannelMoments.sum(parts)
            stats[f"{m}.mean"] = merged.mean.astype(np.float32)
            stats[f"{m}.std"] = merged.std.astype(np.float32)
        self._norm = wire.arrays_to_record(stats)
        self.progress("manifest", 1, 1)
        return nodes

    def _training_nodes(self, *, holding: str | None = None) -> list[NodeManifest]:
        return [
            n
            for n in self.service.nodes
            if n.trains and (holding is None or holding in n.modalities)
        ]

    # -------------------------------------------------------------- phase 2
    def pretrain(self, *, oracle: bool, label: str) -> FusionModel:
        """Phase 2: federated unimodal autoencoders, averaged per modality over holders."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        aes = {m: Autoencoder(SensorEncoder(m, cfg.embed_dim)) for m in self._modalities}
        states: dict[str, State] = {m: dict(ae.state_dict()) for m, ae in aes.items()}
        nodes = self._training_nodes()
        for rnd in range(cfg.pretrain_rounds):
            self.progress(f"{label}: pretrain", rnd, cfg.pretrain_rounds)
            contents = {}
            for n in nodes:
                held = self._modalities if oracle else n.modalities
                records = {wire.autoencoder_key(m): wire.state_to_record(states[m]) for m in held}
                contents[n.node_id] = self._content(
                    {
                        "epochs": cfg.pretrain_epochs,
                        "seed": cfg.seed * 1000 + rnd,
                        "oracle": oracle,
                    },
                    **records,
                )
            replies = self._send(wire.PRETRAIN, contents)
            for m in self._modalities:
                got = [
                    (
                        wire.record_to_state(c.array_records[wire.autoencoder_key(m)]),
                        wire.get_float(c.metric_records[wire.METRICS], f"{m}.num-samples"),
                    )
                    for c in replies.values()
                    if wire.autoencoder_key(m) in c.array_records
                ]
                if got:
                    states[m] = weighted_average([s for s, _ in got], [w for _, w in got])
                    losses = [
                        wire.get_float(c.metric_records[wire.METRICS], f"{m}.loss")
                        for c in replies.values()
                        if wire.autoencoder_key(m) in c.array_records
                    ]
                    self.result.history[f"{label}.pretrain.{m}"].append(float(np.mean(losses)))
        self.progress(f"{label}: pretrain", cfg.pretrain_rounds, cfg.pretrain_rounds)
        model = self._new_model()
        for m in self._modalities:
            aes[m].load_state_dict(states[m])
            model.encoders[m].load_state_dict(aes[m].encoder.state_dict())
        return model

    # -------------------------------------------------------------- phase 3
    def bind(self, model: FusionModel) -> list[NodeBinding]:
        """Phase 3: upload shared-modality embeddings and bind across nodes."""
        cfg = self.config
        shared = cfg.shared_modality
        requests = check_bindable(self.service.nodes, shared)
        uploaders = sorted(
            {r.node_id for r in requests} | {p for r in requests for p in r.partners}
        )
        by_label = cfg.binding == "label"
        self.progress("binding", 0, 1)
        record = wire.state_to_record(model.state_dict())
        replies = self._send(
            wire.EMBED,
            {
                n: self._content(
                    self._model_config(
                        modality=shared,
                        labels=by_label,
                        **{"evaluation-labels": self.evaluation_labels},
                    ),
                    **{wire.MODEL: record},
                )
                for n in uploaders
            },
        )
        eval_labels: dict[int, NDArray[np.int64]] = {}
        for node_id, content in replies.items():
            arrays = wire.record_to_arrays(content.array_records[wire.EMBEDDINGS])
            labels = arrays.get("labels")
            self.service.upload(
                node_id,
                np.asarray(arrays[wire.EMBEDDINGS], np.float32),
                None if labels is None else np.asarray(labels, np.int64),
            )
            if wire.EVAL_LABELS in arrays:
                eval_labels[node_id] = np.asarray(arrays[wire.EVAL_LABELS], np.int64)
        bindings = self.service.bind(requests, by=cfg.binding, seed=cfg.seed)
        self.result.binding = binding_report(bindings, eval_labels)
        self.progress("binding", 1, 1)
        return bindings

    # -------------------------------------------------------------- phase 4
    def partner_features(
        self, model: FusionModel, bindings: Sequence[NodeBinding]
    ) -> dict[int, dict[str, NDArray[np.generic]]]:
        """Phase 4: partners embed their private modality for bound rows; route to requesters.

        Returns, per requesting node, the arrays of its ``partner`` record:
        ``<m>.index`` (its own rows), ``<m>.features`` and ``weights``.
        """
        wanted: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        for b in bindings:
            for p, row in zip(b.partner_node_ids, b.bindings.partner_index, strict=True):
                wanted[int(p)][b.request.modality].add(int(row))
        requests = {
            p: {m: np.asarray(sorted(rows), dtype=np.int64) for m, rows in mods.items()}
            for p, mods in wanted.items()
        }
        record = wire.state_to_record(model.state_dict())
        replies = self._send(
            wire.FEATURES,
            {
                p: self._content(
                    self._model_config(),
                    **{wire.MODEL: record, wire.PARTNER: wire.arrays_to_record(req)},
                )
                for p, req in requests.items()
            },
        )
        features = {
            p: wire.record_to_arrays(c.array_records[wire.FEATURES_KEY]) for p, c in replies.items()
        }
        routed: dict[int, dict[str, NDArray[np.generic]]] = {}
        for n in self._training_nodes():
            arrays: dict[str, NDArray[np.generic]] = {
                "weights": tuple_weights(n.num_samples, n.node_id, bindings, self.weighting)
            }
            for b in bindings:
                if b.request.node_id != n.node_id:
                    continue
                m = b.request.modality
                dim = self.config.proj_dim
                feats = np.zeros((len(b.bindings), dim), dtype=np.float32)
                for p in np.unique(b.partner_node_ids):
                    sel = b.partner_node_ids == p
                    rows = requests[int(p)][m]
                    pos = np.searchsorted(rows, b.bindings.partner_index[sel])
                    feats[sel] = np.asarray(features[int(p)][m], np.float32)[pos]
                arrays[f"{m}.index"] = b.bindings.query_index.astype(np.int64)
                arrays[f"{m}.features"] = feats
            routed[n.node_id] = arrays
        return routed

    # -------------------------------------------------------------- phase 5
    def align(
        self,
        model: FusionModel,
        *,
        label: str,
        bindings: Sequence[NodeBinding] | None,
        oracle: bool,
    ) -> FusionModel:
        """Phase 5: weighted contrastive rounds; per-modality FedAvg (n x confidence)."""
        cfg = self.config
        nodes = self._training_nodes()
        routed: dict[int, dict[str, NDArray[np.generic]]] = {
            n.node_id: {"weights": np.ones(n.num_samples, np.float32)} for n in nodes
        }
        for rnd in range(cfg.align_rounds):
            if bindings and rnd % cfg.refresh_every == 0:
                with self._phase("partner_features"):
                    self.progress(f"{label}: partner features", rnd, cfg.align_rounds)
                    routed = self.partner_features(model, bindings)
            with self._phase("align" if label == "mmbind" else f"{label}.align"):
                self.progress(f"{label}: align", rnd, cfg.align_rounds)
                record = wire.state_to_record(model.state_dict())
                replies = self._send(
                    wire.ALIGN,
                    {
                        n.node_id: self._content(
                            self._model_config(
                                epochs=cfg.align_epochs, seed=cfg.seed * 1000 + rnd, oracle=oracle
                            ),
                            **{
                                wire.MODEL: record,
                                wire.PARTNER: wire.arrays_to_record(routed[n.node_id]),
                            },
                        )
                        for n in nodes
                    },
                )
                state: State = dict(model.state_dict())
                losses = []
                for m in self._modalities:
                    got: list[tuple[State, float]] = []
                    for c in replies.values():
                        trained = wire.get_str(c.config_records[wire.CONFIG], "trained").split(",")
                        if m not in trained:
                            continue
                        metrics = c.metric_records[wire.METRICS]
                        weight = wire.get_float(metrics, "num-samples") * wire.get_float(
                            metrics, "confidence"
                        )
                        got.append((wire.record_to_state(c.array_records[wire.MODEL]), weight))
                    if got and sum(w for _, w in got) > 0:
                        state = average_modality(state, [s for s, _ in got], [w for _, w in got], m)
                for c in replies.values():
                    losses.append(float(c.metric_records[wire.METRICS]["loss"]))  # type: ignore[arg-type]
                model.load_state_dict(state)
                self.result.history[f"{label}.align.loss"].append(float(np.mean(losses)))
        self.progress(f"{label}: align", cfg.align_rounds, cfg.align_rounds)
        return model

    # -------------------------------------------------------------- phase 6
    def finetune_and_evaluate(self, model: FusionModel, *, label: str) -> dict[str, float]:
        """Phase 6: fine-tune on labelled nodes (FedAvg over rounds), evaluate on test nodes."""
        cfg = self.config
        labelled = [n for n in self._training_nodes() if n.labelled]
        with self._phase("finetune" if label == "mmbind" else f"{label}.finetune"):
            for rnd in range(cfg.finetune_rounds):
                self.progress(f"{label}: fine-tune", rnd, cfg.finetune_rounds)
                record = wire.state_to_record(model.state_dict())
                epochs = max(1, cfg.finetune_epochs // cfg.finetune_rounds)
                replies = self._send(
                    wire.FINETUNE,
                    {
                        n.node_id: self._content(
                            self._model_config(epochs=epochs, seed=cfg.seed * 1000 + rnd),
                            **{wire.MODEL: record},
                        )
                        for n in labelled
                    },
                )
                states = [
                    wire.record_to_state(c.array_records[wire.MODEL]) for c in replies.values()
                ]
                weights = [
                    wire.get_float(c.metric_records[wire.METRICS], "num-samples")
                    for c in replies.values()
                ]
                model.load_state_dict(weighted_average(states, weights))
        with self._phase("evaluate" if label == "mmbind" else f"{label}.evaluate"):
            self.progress(f"{label}: evaluate", 0, 1)
            tests = [n for n in self.service.nodes if not n.trains]
            record = wire.state_to_record(model.state_dict())
            replies = self._send(
                wire.EVALUATE,
                {
                    n.node_id: self._content(self._model_config(), **{wire.MODEL: record})
                    for n in tests
                },
            )
            cm = sum(
                (c.array_records[wire.CONFUSION].to_numpy_ndarrays()[0] for c in replies.values()),
                np.zeros((self._num_classes, self._num_classes), dtype=np.int64),
            )
            self.progress(f"{label}: evaluate", 1, 1)
        return metrics_from_confusion(np.asarray(cm))

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """All requested methods, sharing phase 1."""
        start = time.perf_counter()
        with self._phase("manifest"):
            self.manifest()
        for method in self.config.methods:
            t0 = time.perf_counter()
            if method == "lower_bound":
                model = self._new_model()
                metrics = self.finetune_and_evaluate(model, label=method)
            elif method == "mmbind":
                with self._phase("pretrain"):
                    model = self.pretrain(oracle=False, label=method)
                with self._phase("binding"):
                    bindings = self.bind(model)
                model = self.align(model, label=method, bindings=bindings, oracle=False)
                metrics = self.finetune_and_evaluate(model, label=method)
            else:
                with self._phase(f"{method}.pretrain"):
                    model = self.pretrain(oracle=True, label=method)
                model = self.align(model, label=method, bindings=None, oracle=True)
                metrics = self.finetune_and_evaluate(model, label=method)
            metrics["seconds"] = time.perf_counter() - t0
            self.result.methods[method] = metrics
            log.info(
                "%s: accuracy %.4f, macro-F1 %.4f", method, metrics["accuracy"], metrics["macro_f1"]
            )
        self.result.phases["total"] = time.perf_counter() - start
        return self.result
