"""The workflow: one run's schedule of phases over the node channel, resumable step by step.

:class:`Workflow` keeps the run's roster (nodes, dropouts), sends each phase's requests
(:mod:`.phases`, :mod:`.binding`, :mod:`.routing`) over its
:class:`~.channel.NodeChannel`, folds the replies into the global models, checkpoints
every finished step (:mod:`.checkpoint`) and collects a :class:`~.result.RunResult`.
"""

from __future__ import annotations

import copy
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
    BindRequest,
    NodeBinding,
    check_bindable,
    check_layout,
)
from mmbind.server.store import BindingStore
from mmbind.server.workflow import binding, checkpoint, phases, routing
from mmbind.server.workflow.channel import NodeChannel
from mmbind.server.workflow.phases import Routed, RoutedGrads, State
from mmbind.server.workflow.result import Clock, RunResult
from mmbind.server.workflow.schedule import Step, plan, resume_index

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(label, step, total)``: called as phases and rounds advance."""


R = TypeVar("R")


class BindingServiceAPI(Protocol):
    """What the workflow needs of a binding service: in-process or over gRPC."""

    def register(self, manifest: NodeManifest) -> None: ...

    @property
    def nodes(self) -> list[NodeManifest]: ...

    def upload(
        self, node_id: int, embeddings: NDArray[np.float32], labels: NDArray[np.int64] | None = None
    ) -> None: ...

    def bind(
        self, requests: Sequence[BindRequest], *, by: str = "modality", seed: int = 0
    ) -> list[NodeBinding]: ...


class Workflow:
    """Drives one run's phases over ``grid`` and collects a :class:`RunResult`.

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
        self.service: BindingServiceAPI = service or BindingService(store, run_id)
        self._progress = progress or (lambda label, step, total: None)
        self.evaluation_labels = evaluation_labels
        self.weighting = get_weighting(config.weighting)
        self.result = RunResult()
        self.clock = Clock(self.result, config.attempt)
        self.nodes: dict[int, NodeManifest] = {}
        """Every node that reported a manifest, by node id (dropped ones included)."""
        self.dropped: dict[int, str] = {}
        """Nodes dropped from the run, with the reason."""
        self.channel = NodeChannel(
            grid,
            timeout=config.reply_timeout or None,
            grace_seconds=config.node_grace_seconds,
            role=lambda n: self.nodes[n].role if n in self.nodes else None,
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
    def _active(self) -> list[NodeManifest]:
        return [n for i, n in sorted(self.nodes.items()) if i not in self.dropped]

    def _training_nodes(self) -> list[NodeManifest]:
        return [n for n in self._active() if n.trains]

    def _order(self, node_id: int) -> tuple[str, int]:
        node = self.nodes.get(node_id)
        return (node.role if node else "", node_id)

    def _drop(self, node_id: int, message_type: str, reason: str) -> None:
        if node_id in self.dropped:
            return
        self.dropped[node_id] = reason
        node = self.nodes.get(node_id)
        record = {
            "node_id": node_id,
            "role": node.role if node else "?",
            "phase": self.clock.phase,
            "message": message_type,
            "reason": reason[:500],
        }
        self.result.dropouts.append(record)
        self.event({"kind": "dropout", **record})
        who = self.channel.describe(node_id)
        log.warning("dropping %s in %s: %s", who, self.clock.phase, reason)
        active = self._active()
        if not any(n.labelled and n.trains for n in active):
            raise FederationError(
                f"the last labelled node dropped out ({who}: {reason}); fine-tuning cannot go on"
            )
        if not any(not n.trains for n in active):
            raise FederationError(
                f"the last test node dropped out ({who}: {reason}); evaluation cannot go on"
            )

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
                self._drop(node_id, message_type, why)
        # Replies in node-name order, not arrival order: averages of three or more states
        # are sums in floating point, and their order must not depend on timing or on the
        # ids a SuperLink hands out (simulation and deployment then agree bit for bit).
        return {n: out[n] for n in sorted(out, key=self._order)}

    def _ask(
        self, message_type: str, requests: Mapping[int, Any], reply: Callable[[RecordDict], R]
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
            self._drop(node_id, wire.MANIFEST, why)
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
        bindings = {kind: self.service.bind(requests, by=kind, seed=cfg.seed) for kind in kinds}
        self.result.binding = binding.report(
            bindings[kinds[0]], kinds[0], requests, embeddings, eval_labels, self._num_classes
        )
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
            models, tracks, by_track, self.dropped, self._modalities, self._norm
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
                    t, replies, self._sources[t.name], self.dropped
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

    # ------------------------------------------------------------ the steps
    def _tracks(self) -> list[MethodSpec]:
        """The methods this run trains, in the config's order (unrunnable ones skipped)."""
        tracks = []
        for method in self.config.methods:
            spec = SPECS[method]
            if spec.oracle and self._unpaired:
                reason = (
                    f"nodes {', '.join(sorted(self._unpaired))} hold no naturally paired data "
                    "(start them with mmbind-client --paired-data)"
                )
                self.result.skipped[method] = reason
                self.event({"kind": "skipped", "method": method, "reason": reason})
                log.warning("skipping %s: %s", method, reason)
                continue
            tracks.append(spec)
        return tracks

    def _binding_kinds(self, tracks: Sequence[MethodSpec]) -> list[str]:
        kinds = [t.binding_kind(self.config.binding) for t in tracks]
        return list(dict.fromkeys(k for k in kinds if k))

    def _save(
        self,
        step: str,
        models: Mapping[str, FusionModel],
        bindings: Mapping[str, Sequence[NodeBinding]] | None,
    ) -> None:
        """Checkpoint a finished step (only while this attempt still owns the run)."""
        self.check_owner()
        attempts = [*self._earlier, self.clock.attempt_record(step)]
        cp = self.result.checkpoint(step, attempts, self.nodes, self.config.to_flower())
        names = {i: n.role for i, n in self.nodes.items()}
        checkpoint.save(self.store, self.run_id, cp, models, self._pretrained, bindings, names)

    def _restore(self) -> checkpoint.Checkpoint | None:
        """The run's checkpoint, with results so far restored into ``self.result``."""
        cp = checkpoint.load(self.store, self.run_id)
        if cp is not None:
            self._earlier = self.result.restore(cp)
        return cp

    def _run_step(
        self,
        step: Step,
        tracks: Sequence[MethodSpec],
        models: dict[str, FusionModel],
        bindings: dict[str, list[NodeBinding]],
        routed: dict[str, Routed] | None,
    ) -> dict[str, Routed] | None:
        """Run one step; return the partner records the align rounds use (refreshed or not)."""
        cfg = self.config
        if step.phase == "pretrain":
            self._pretrained = self.pretrain()
            random_align = cfg.align_init == "random"
            for t in tracks:
                if t.pretrain and not (t.align and random_align):
                    for m, state in self._pretrained.items():
                        models[t.name].encoders[m].load_state_dict(state)
        elif step.phase == "binding":
            first = next(t for t in tracks if t.binding)
            bindings.update(self.bind(self._binding_model(first), self._binding_kinds(tracks)))
        elif step.phase == "align":
            rnd = int(step.number or 0)
            aligning = [t for t in tracks if t.align]
            binders = [t for t in aligning if t.binding]
            if binders and (routed is None or rnd % cfg.refresh_every == 0):
                with self._phase("partner_features"):
                    routed = self.partner_features(models, binders, bindings)
            self.align_round(models, aligning, rnd, routed or {})
        elif step.phase == "budget":
            # Another label budget, from a copy of the aligned models.
            twins = {name: copy.deepcopy(m) for name, m in models.items()}
            self.finetune(twins, tracks, budget=step.number)
            self.result.budgets[str(step.number)] = self.evaluate(twins, tracks)
        elif step.phase == "finetune":
            self.finetune(models, tracks)
        else:
            for name, metrics in self.evaluate(models, tracks).items():
                metrics["seconds"] = self.clock.elapsed()
                self.result.methods[name] = metrics
                log.info(
                    "%s: accuracy %.4f, macro-F1 %.4f",
                    name,
                    metrics["accuracy"],
                    metrics["macro_f1"],
                )
            if self.result.budgets:
                own = str(cfg.label_budget)
                self.result.budgets[own] = dict(self.result.methods)
        return routed

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Every requested method, in lockstep; resumable step by step."""
        self.clock.restart()
        checkpoint.claim(self.store, self.run_id, self.config.attempt)
        cp = self._restore() if self.config.resume else None
        if self.config.resume and cp is None:
            raise FederationError(
                f"run {self.run_id!r} has no checkpoint to resume from; start it without --resume"
            )
        with self._phase("manifest"):
            self.manifest()
        tracks = self._tracks()
        steps = plan(self.config, tracks)
        kinds = self._binding_kinds(tracks)
        models = {t.name: self._new_model(t) for t in tracks}
        bindings: dict[str, list[NodeBinding]] = {}
        done = -1 if cp is None else resume_index(steps, cp.step)
        if done >= 0 and cp is not None:
            self._pretrained = checkpoint.restore_models(self.store, self.run_id, models)
            bound = Step("binding") in steps and done >= steps.index(Step("binding"))
            if bound:
                ids = {n.role: i for i, n in self.nodes.items()}
                bindings = checkpoint.restore_bindings(self.store, self.run_id, kinds, ids)
            log.info("resuming after step %s", cp.step)
        routed: dict[str, Routed] | None = None
        for index, step in enumerate(steps):
            if index <= done:
                continue
            with self._phase(step.phase):
                routed = self._run_step(step, tracks, models, bindings, routed)
            self._save(str(step), models, bindings if step.phase == "binding" else None)
        record = self.clock.attempt_record(str(steps[-1]))
        self.result.finish([*self._earlier, record], self.channel.traffic, self.nodes)
        return self.result
