"""Each phase's rounds over the node channel: configure, send, decode the typed replies,
aggregate.

:class:`Rounds` holds what the phases share (the roster, the channel, the run's layout
and normalisation, the pretrained encoders) and runs one phase (or one round of it) per
method: the requests come from :mod:`.phases`, :mod:`.binding` and :mod:`.routing`, the
replies are folded into the global models and the run's :class:`~.result.RunResult`.
:class:`~.run.Workflow` puts them on the run's schedule.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from flwr.app import RecordDict
from flwr.serverapp import Grid
from numpy.typing import NDArray

from mmbind import wire
from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.fusion import FusionModel
from mmbind.binding.weights import get_weighting
from mmbind.errors import FederationError
from mmbind.manifest import NodeManifest
from mmbind.methods import SPECS, MethodSpec
from mmbind.run_config import RunConfig
from mmbind.server.binding_service import (
    BindingService,
    NodeBinding,
    check_bindable,
    check_layout,
)
from mmbind.server.store import BindingStore
from mmbind.server.workflow import binding, checkpoint, phases, routing
from mmbind.server.workflow.binding import BindingServiceAPI
from mmbind.server.workflow.channel import NodeChannel
from mmbind.server.workflow.joining import Joins
from mmbind.server.workflow.phases import Routed, RoutedGrads, State
from mmbind.server.workflow.result import Clock, RunResult
from mmbind.server.workflow.roster import Roster

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(label, step, total)``: called as phases and rounds advance."""


R = TypeVar("R")


class Request(Protocol):
    """A request of :mod:`mmbind.wire`."""

    def to_record(self) -> RecordDict: ...


class Rounds:
    """Each phase's rounds over ``grid``: configure, send, decode, aggregate.

    :class:`~mmbind.server.workflow.run.Workflow` runs them on the run's schedule.

    Parameters
    ----------
    grid : Grid
        Flower's grid of connected nodes.
    config : RunConfig
        The run's configuration.
    store : BindingStore
        Where events, checkpoints and results of the run go.
    run_id : str
        The run's namespace in the store.
    service : BindingServiceAPI, optional
        The binding service (default: in-process over ``store``).
    progress : callable, optional
        ``progress(label, step, total)``; events go to the store as well.
    evaluation_labels : bool
        Ask nodes for labels used only to score the binding.
    """

    def __init__(
        self,
        grid: Grid,
        config: RunConfig,
        store: BindingStore,
        *,
        run_id: str,
        service: BindingServiceAPI | None = None,
        progress: Progress | None = None,
        evaluation_labels: bool = True,
    ) -> None:
        self.config = config
        self.store = store
        self.run_id = run_id
        self.service: BindingServiceAPI = service or BindingService(
            store, run_id, ann_threshold=config.ann_threshold
        )
        self._progress = progress or (lambda label, step, total: None)
        self.evaluation_labels = evaluation_labels
        self.weighting = get_weighting(config.weighting)
        self.result = RunResult()
        self.clock = Clock(self.result, config.attempt)
        self.roster = Roster(self.result, self.event, lambda: self.clock.phase)
        self.channel = NodeChannel(
            grid,
            timeout=config.reply_timeout or None,
            grace_seconds=config.node_grace_seconds,
            role=self.roster.role,
            event=self.event,
            phase=lambda: self.clock.phase,
        )
        self._norm: wire.Normalization | None = None
        self._modalities: tuple[str, ...] = ()
        self._num_classes = 0
        self._unpaired: list[str] = []
        self._pretrained: dict[str, State] = {}
        # End-to-end alignment: per method, where each routed partner feature came from,
        # and the gradients waiting to go to each partner with its next align message.
        self._sources: dict[str, routing.Sources] = defaultdict(dict)
        self._routed_grads: dict[str, RoutedGrads] = {}
        self._earlier: list[dict[str, Any]] = []
        self._joins = Joins()

    # ------------------------------------------------------------ events
    def progress(self, label: str, step: int, total: int) -> None:
        self._progress(label, step, total)
        self.event({"kind": "progress", "label": label, "step": step, "total": total})

    def event(self, data: Mapping[str, Any]) -> None:
        """Append to the run's event log, tagged with this attempt."""
        self.store.append_event(self.run_id, {**data, "attempt": self.config.attempt})

    def check_owner(self) -> None:
        """Raise a FederationError when another attempt has taken the run over."""
        checkpoint.check_owner(self.store, self.run_id, self.config.attempt)

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        with self.clock.timing(name):
            yield

    # ------------------------------------------------------------ the roster
    @property
    def nodes(self) -> dict[int, NodeManifest]:
        """Every node that reported a manifest, by node id (dropped ones included)."""
        return self.roster.nodes

    def _active(self) -> list[NodeManifest]:
        return self.roster.active()

    def _training_nodes(self) -> list[NodeManifest]:
        return self.roster.training()

    def _send(
        self, message_type: str, contents: Mapping[int, RecordDict], *, tolerate: bool = True
    ) -> dict[int, RecordDict]:
        """Send one message per node; return the replies' contents by node id.

        A node that fails for good (see :meth:`NodeChannel.deliver`) is dropped from
        the rest of the run and the failure recorded, as long as the run can go on
        without it; otherwise (or with ``tolerate=False``) a :class:`FederationError`
        is raised.
        """
        out, failed = self.channel.deliver(message_type, contents)
        if failed:
            detail = "; ".join(
                f"{self.channel.describe(n)}: {why}" for n, why in sorted(failed.items())
            )
            if not tolerate or not self.nodes:
                raise FederationError(f"{message_type} failed on {len(failed)} node(s): {detail}")
            for node_id, why in failed.items():
                self.roster.drop(node_id, message_type, why)
        # Replies in node-name order, not arrival order: averages of three or more states
        # are sums in floating point, and their order must not depend on timing or on the
        # ids a SuperLink hands out (simulation and deployment then agree bit for bit).
        return {n: out[n] for n in sorted(out, key=self.roster.order)}

    def _ask(
        self,
        message_type: str,
        requests: Mapping[int, Request],
        reply: Callable[[RecordDict], R],
    ) -> dict[int, R]:
        """Send typed requests; return the typed replies, in node-name order."""
        contents = {n: r.to_record() for n, r in requests.items()}
        return {n: reply(c) for n, c in self._send(message_type, contents).items()}

    # ---------------------------------------------------------------- models
    def _new_model(self, spec: MethodSpec) -> FusionModel:
        torch.manual_seed(self.config.seed * 1000)
        cfg = self.config
        return FusionModel(
            self._modalities,
            cfg.embed_dim,
            cfg.proj_dim,
            self._num_classes,
            mask_vector=spec.mask_vector,
            encoder=cfg.encoder_spec(),
        )

    def _binding_model(self, spec: MethodSpec) -> FusionModel:
        """A model whose encoders are the pretrained autoencoders' (binding embeds with them)."""
        model = self._new_model(spec)
        for m, state in self._pretrained.items():
            model.encoders[m].load_state_dict(state)
        return model

    # -------------------------------------------------------------- phase 1
    def manifest(self) -> list[NodeManifest]:
        """Phase 1: gather manifests, check compatibility, build normalisation stats."""
        cfg = self.config
        node_ids = self.channel.wait_for_nodes(cfg.min_nodes, cfg.wait_seconds)
        self.progress("manifest", 0, 1)
        request = wire.ManifestRequest().to_record()
        replies, failed = self.channel.deliver(wire.MANIFEST, {n: request for n in node_ids})
        if failed and len(replies) < cfg.min_nodes:
            detail = "; ".join(
                f"{self.channel.describe(n)}: {why}" for n, why in sorted(failed.items())
            )
            raise FederationError(
                f"{wire.MANIFEST} failed on {len(failed)} node(s), leaving {len(replies)} of "
                f"min-nodes {cfg.min_nodes}: {detail}"
            )
        reports = {n: wire.ManifestReply.from_record(c).report for n, c in sorted(replies.items())}
        datasets: set[str] = set()
        for node_id, report in reports.items():
            manifest = report.manifest(node_id)
            self.service.register(manifest)
            self.nodes[node_id] = manifest
            if report.trains and not report.paired_data:
                self._unpaired.append(report.role)
            datasets.add(cfg.dataset if report.dataset is None else report.dataset)
        norm = phases.normalization(reports.values(), cfg.normalization)
        for node_id, why in sorted(failed.items()):
            self.roster.drop(node_id, wire.MANIFEST, why)
        nodes = self._active()
        self.result.nodes = [n.to_dict() for n in nodes]
        self.result.dataset = ",".join(sorted(datasets))
        self._check_layout(nodes)
        self._norm = norm
        self.progress("manifest", 1, 1)
        return nodes

    def _check_layout(self, nodes: Sequence[NodeManifest]) -> None:
        names = [n.role for n in nodes]
        duplicates = sorted({r for r in names if names.count(r) > 1})
        if duplicates:
            raise FederationError(
                f"node names must be unique within a run; repeated: {duplicates} "
                "(give each mmbind-client its own --name)"
            )
        binds = any(SPECS[m].binding for m in self.config.methods)
        layout = check_layout(nodes, self.config.shared_modality if binds else None)
        self._num_classes = layout.num_classes
        self._modalities = layout.modalities
        if binds and isinstance(self.service, BindingService):
            binding.check_search(nodes, self.config.shared_modality, self.service.ann_threshold)

    # -------------------------------------------------------------- phase 2
    def pretrain(self) -> dict[str, State]:
        """Phase 2: federated unimodal autoencoders, averaged per modality over holders.

        Returns the pretrained encoder state of each modality (the autoencoders' encoders).
        """
        cfg = self.config
        torch.manual_seed(cfg.seed)
        states: dict[str, State] = {
            m: dict(Autoencoder.build(m, cfg.encoder_spec()).state_dict()) for m in self._modalities
        }
        for rnd in range(cfg.pretrain_rounds):
            self.progress("pretrain", rnd, cfg.pretrain_rounds)
            requests = phases.configure_pretrain(
                states, self._training_nodes(), cfg, rnd, self._norm
            )
            replies = self._ask(wire.PRETRAIN, requests, wire.PretrainReply.from_record)
            states, losses = phases.aggregate_pretrain(states, self._modalities, replies)
            for m, loss in losses.items():
                self.result.history[f"pretrain.{m}"].append(loss)
        self.progress("pretrain", cfg.pretrain_rounds, cfg.pretrain_rounds)
        encoders: dict[str, State] = {}
        for m in self._modalities:
            ae = Autoencoder.build(m, cfg.encoder_spec())
            ae.load_state_dict(states[m])
            encoders[m] = dict(ae.encoder.state_dict())
        return encoders

    # -------------------------------------------------------------- phase 3
    def bind(self, model: FusionModel, kinds: Sequence[str]) -> dict[str, list[NodeBinding]]:
        """Phase 3: upload shared-modality embeddings once; bind them each way in ``kinds``.

        ``kinds`` holds ``"modality"`` and/or ``"label"``; the report of the first one goes
        into the results (with its class-similarity and pairing-confusion matrices).
        """
        cfg = self.config
        shared = cfg.shared_modality
        requests = check_bindable(self._active(), shared)
        uploaders = sorted(
            {r.node_id for r in requests} | {p for r in requests for p in r.partners}
        )
        self.progress("binding", 0, 1)
        asks = binding.configure_embed(
            model, uploaders, self._modalities, shared, kinds, self.evaluation_labels, self._norm
        )
        replies = self._ask(wire.EMBED, asks, wire.EmbedReply.from_record)
        embeddings: dict[int, NDArray[np.float32]] = {}
        eval_labels: dict[int, NDArray[np.int64]] = {}
        for node_id, reply in replies.items():
            embeddings[node_id] = reply.embeddings
            self.service.upload(node_id, reply.embeddings, reply.labels)
            if reply.evaluation_labels is not None:
                eval_labels[node_id] = reply.evaluation_labels
        if set(uploaders) - set(replies):
            requests = check_bindable(self._active(), shared)  # without the dropped nodes
        self._joins.embeddings, self._joins.eval_labels = embeddings, eval_labels
        bindings = {kind: self.service.bind(requests, by=kind, seed=cfg.seed) for kind in kinds}
        self.result.binding = binding.report(
            bindings[kinds[0]], kinds[0], requests, embeddings, eval_labels, self._num_classes
        ) | binding.search_report(bindings[kinds[0]], cfg.ann_threshold)
        self.progress("binding", 1, 1)
        return bindings

    # -------------------------------------------------------------- phase 4
    def partner_features(
        self,
        models: Mapping[str, FusionModel],
        tracks: Sequence[MethodSpec],
        bindings: Mapping[str, Sequence[NodeBinding]],
    ) -> dict[str, Routed]:
        """Phase 4: partners embed their private modality for bound rows; route to requesters.

        One message per partner carries the request of every binding method. Returns, per
        method and requesting node, its partner record. Rows bound to a partner that
        dropped out get no feature (the view is masked).
        """
        by_track = {t.name: bindings[t.binding_kind(self.config.binding) or ""] for t in tracks}
        wanted, requests = routing.configure_features(
            models, tracks, by_track, self.roster.dropped, self._modalities, self._norm
        )
        replies = self._ask(wire.FEATURES, requests, wire.FeaturesReply.from_record)
        routed: dict[str, Routed] = {}
        for t in tracks:
            features = {p: r.features[t.name] for p, r in replies.items() if t.name in r.features}
            routed[t.name] = routing.route(
                t,
                by_track[t.name],
                self._training_nodes(),
                wanted,
                features,
                self.weighting,
                self._sources[t.name],
            )
        return routed

    # -------------------------------------------------------------- phase 5
    def align_round(
        self,
        models: Mapping[str, FusionModel],
        tracks: Sequence[MethodSpec],
        rnd: int,
        routed: Mapping[str, Routed],
    ) -> None:
        """One round of phase 5 for every aligning method: weighted contrastive training.

        Each method's model is averaged per modality over the nodes that trained it,
        weighted by sample count x binding confidence. Methods without a binding train
        on their own modalities only (missing views masked).
        """
        cfg = self.config
        self.progress("align", rnd, cfg.align_rounds)
        requests = phases.configure_align(
            models,
            tracks,
            self._training_nodes(),
            self._modalities,
            cfg,
            rnd,
            routed,
            self._routed_grads,
            self._norm,
        )
        replies = self._ask(wire.ALIGN, requests, wire.AlignReply.from_record)
        if cfg.partner_grads:
            self._routed_grads = {
                t.name: routing.collect_partner_grads(
                    t, replies, self._sources[t.name], self.roster.dropped
                )
                for t in tracks
            }
        states, losses = phases.aggregate_align(models, tracks, self._modalities, replies)
        for t in tracks:
            models[t.name].load_state_dict(states[t.name])
            if t.name in losses:
                self.result.history[f"{t.name}.align.loss"].append(losses[t.name])

    # -------------------------------------------------------------- phase 6
    def finetune(
        self,
        models: Mapping[str, FusionModel],
        tracks: Sequence[MethodSpec],
        budget: int | None = None,
    ) -> None:
        """Phase 6a: fine-tune every method on the labelled nodes (FedAvg per method).

        ``budget`` overrides the run's ``label_budget`` (labelled samples per node).
        """
        cfg = self.config
        budget = cfg.label_budget if budget is None else budget
        label = "fine-tune" if budget == cfg.label_budget else f"fine-tune @{budget} labels"
        for rnd in range(cfg.finetune_rounds):
            self.progress(label, rnd, cfg.finetune_rounds)
            labelled = [n for n in self._training_nodes() if n.labelled]
            requests = phases.configure_finetune(
                models, tracks, labelled, self._modalities, cfg, rnd, budget, self._norm
            )
            replies = self._ask(wire.FINETUNE, requests, wire.FinetuneReply.from_record)
            states, losses = phases.aggregate_finetune(tracks, replies)
            for t in tracks:
                models[t.name].load_state_dict(states[t.name])
                if budget == cfg.label_budget:
                    self.result.history[f"{t.name}.finetune.loss"].append(losses[t.name])

    def evaluate(
        self, models: Mapping[str, FusionModel], tracks: Sequence[MethodSpec]
    ) -> dict[str, dict[str, float]]:
        """Phase 6b: every method's final model on the test nodes (summed confusion matrices)."""
        self.progress("evaluate", 0, 1)
        tests = [n for n in self._active() if not n.trains]
        requests = phases.configure_evaluate(models, tracks, tests, self._modalities, self._norm)
        replies = self._ask(wire.EVALUATE, requests, wire.EvaluateReply.from_record)
        out = phases.aggregate_evaluate(tracks, replies, self._num_classes)
        self.progress("evaluate", 1, 1)
        return out
