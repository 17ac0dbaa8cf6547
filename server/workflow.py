"""The six phases of one federated MMBind run (DESIGN.md), driven over a Flower ``Grid``.

1. manifest – nodes report modalities, counts, shapes, labels and channel moments;
2. pretrain – one autoencoder per modality, FedAvg over that modality's holders;
3. binding – shared-modality embeddings uploaded and bound across nodes;
4. partner features – partners embed their private modality for bound samples,
   routed by the coordinator;
5. align – weighted multi-view contrastive rounds, aggregated per modality with
   weights sample count x binding confidence;
6. fine-tune on the labelled paired node(s), evaluate on the test node(s).

Every method of :mod:`mmbind.methods` runs through the same phases, in lockstep:
one message per node and round carries every method's model (``<method>.model``),
so comparing seven methods costs the rounds of one, not seven times as many. Each
method that pretrains starts from the same federated autoencoders (one pretraining
per run).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from numpy.typing import NDArray

from mmbind import wire
from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.diagnostics import class_similarity, pairing_confusion
from mmbind.binding.fusion import FusionModel
from mmbind.binding.weights import get_weighting
from mmbind.client.data.normalization import ChannelMoments, merge_normalization
from mmbind.errors import FederationError
from mmbind.methods import SPECS, MethodSpec
from mmbind.run_config import RunConfig
from mmbind.server.aggregation import average_modality, weighted_average
from mmbind.server.binding_service import (
    BindingService,
    BindRequest,
    NodeBinding,
    NodeManifest,
    binding_report,
    check_bindable,
    check_layout,
    tuple_weights,
)
from mmbind.server.checkpoint import (
    MODEL_BLOB,
    OWNER_BLOB,
    Checkpoint,
    bindings_blob,
    bindings_from_bytes,
    bindings_to_bytes,
    state_from_bytes,
    state_to_bytes,
)
from mmbind.server.results import metrics_from_confusion
from mmbind.server.store import BindingStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(label, step, total)``: called as phases and rounds advance."""

State = dict[str, torch.Tensor]
Routed = dict[int, dict[str, NDArray[np.generic]]]
"""Per node id, the arrays of its ``partner`` record for one method."""

PRETRAINED = "pretrained:"
"""Key prefix of the pretrained encoders in the checkpointed model blob."""

POLL_SECONDS = 0.25
"""How often the coordinator asks the SuperLink for replies."""
NODE_POLL_SECONDS = 1.0
"""How often the coordinator asks the SuperLink which nodes are connected."""


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


@dataclass
class RunResult:
    """What one run measured; :mod:`mmbind.server.results` turns it into results.json."""

    methods: dict[str, dict[str, float]] = field(default_factory=dict)
    budgets: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Per label budget (as a string; the run's own included), each method's metrics."""
    binding: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    nodes: list[dict[str, object]] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    dropouts: list[dict[str, object]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    dataset: str = ""
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    resumed_from: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """One record per submission of the run (see :meth:`Workflow._attempt_record`)."""
    earlier_seconds: float = 0.0
    """Seconds the earlier attempts of a resumed run spent, through their last checkpoint."""


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
        self.grid = grid
        self.config = config
        self.store = store
        self.run_id = run_id
        self.service: BindingServiceAPI = service or BindingService(store, run_id)
        self._progress = progress or (lambda label, step, total: None)
        self.evaluation_labels = evaluation_labels
        self.timeout = config.reply_timeout or None
        self.weighting = get_weighting(config.weighting)
        self.result = RunResult()
        self._norm: ArrayRecord | None = None
        self._modalities: tuple[str, ...] = ()
        self._num_classes = 0
        self._nodes: dict[int, NodeManifest] = {}
        self._dropped: dict[int, str] = {}
        self._phase_name = "manifest"
        self._traffic: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self._unpaired: list[str] = []
        self._datasets: set[str] = set()
        self._pretrained: dict[str, State] = {}
        # End-to-end alignment: per method, node and modality, where each routed partner
        # feature came from ((partner ids, partner rows), parallel to its index), and the
        # gradients waiting to go to each partner with its next align message.
        self._sources: dict[
            str, dict[int, dict[str, tuple[NDArray[np.uint64], NDArray[np.int64]]]]
        ] = defaultdict(lambda: defaultdict(dict))
        self._routed_grads: dict[str, dict[int, dict[str, NDArray[np.generic]]]] = {}
        self._attempt_phases: dict[str, float] = defaultdict(float)
        self._attempt_start = time.perf_counter()
        self._earlier: list[dict[str, Any]] = []

    # ------------------------------------------------------------ messaging
    def progress(self, label: str, step: int, total: int) -> None:
        self._progress(label, step, total)
        self.event({"kind": "progress", "label": label, "step": step, "total": total})

    def event(self, data: Mapping[str, Any]) -> None:
        """Append to the run's event log, tagged with this attempt."""
        self.store.append_event(self.run_id, {**data, "attempt": self.config.attempt})

    def _claim(self) -> None:
        """Make this attempt the run's owner; a stale attempt still running will stop."""
        if self.config.attempt:
            self.store.put_blob(self.run_id, OWNER_BLOB, self.config.attempt.encode())

    def check_owner(self) -> None:
        if not self.config.attempt:
            return
        owner = self.store.blob(self.run_id, OWNER_BLOB)
        if owner is not None and owner.decode() != self.config.attempt:
            raise FederationError(
                f"run {self.run_id} was taken over by attempt {owner.decode()}; "
                f"this attempt ({self.config.attempt}) stops"
            )

    def _send(
        self, message_type: str, contents: Mapping[int, RecordDict], *, tolerate: bool = True
    ) -> dict[int, RecordDict]:
        """Send one message per node; return the replies' contents by node id.

        A node the SuperLink reports unavailable (it missed its heartbeats) gets
        ``node-grace-seconds`` to come back; when it does, it is sent its message
        again. A node that fails for good (an error reply, no reply within
        ``reply-timeout``, or still unavailable after the grace period) is dropped
        from the rest of the run and the failure recorded, as long as the run can
        go on without it; otherwise (or with ``tolerate=False``) a
        :class:`FederationError` is raised.
        """
        out: dict[int, RecordDict] = {}
        failed = self._deliver(message_type, contents, out)
        if failed:
            detail = "; ".join(f"{self._describe(n)}: {why}" for n, why in sorted(failed.items()))
            if not tolerate or not self._nodes:
                raise FederationError(f"{message_type} failed on {len(failed)} node(s): {detail}")
            for node_id, why in failed.items():
                self._drop(node_id, message_type, why)
        # Replies in node-name order, not arrival order: averages of three or more states
        # are sums in floating point, and their order must not depend on timing or on the
        # ids a SuperLink hands out (simulation and deployment then agree bit for bit).
        return {n: out[n] for n in sorted(out, key=self._order)}

    def _deliver(
        self, message_type: str, contents: Mapping[int, RecordDict], out: dict[int, RecordDict]
    ) -> dict[int, str]:
        """Exchange ``contents`` until every node answered or failed; return the failures.

        Replies go into ``out``; nodes the SuperLink reports unavailable are retried
        while they come back within ``node-grace-seconds`` of their first failure.
        """
        failed: dict[int, str] = {}
        unavailable_since: dict[int, float] = {}
        pending = dict(contents)
        while pending:
            messages = [
                Message(content, dst_node_id=node_id, message_type=message_type)
                for node_id, content in pending.items()
            ]
            for node_id, content in pending.items():
                self._traffic[node_id][1] += _content_bytes(content)
            replies = self._exchange(messages)
            # Errors for a lost node come from the SuperLink itself: map every reply back
            # to the node it answers through the message it replies to.
            sent: dict[str, int] = {}
            for m in messages:
                sent[m.metadata.message_id] = m.metadata.dst_node_id
                sent[m.object_id] = m.metadata.dst_node_id
            unavailable: dict[int, str] = {}
            answered: set[int] = set()
            for reply in replies:
                src = sent.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
                answered.add(src)
                if not reply.has_error():
                    out[src] = reply.content
                    self._traffic[src][0] += _content_bytes(reply.content)
                    self._audit(src, message_type, reply.content)
                    continue
                why = reply.error.reason or f"error code {reply.error.code}"
                if reply.error.code == ErrorCode.NODE_UNAVAILABLE:
                    unavailable[src] = why
                else:
                    failed[src] = why
            for node_id in set(pending) - answered:
                failed[node_id] = (
                    f"no reply within {self.timeout:.0f} s" if self.timeout else "no reply"
                )
            now = time.monotonic()
            for node_id in unavailable:
                unavailable_since.setdefault(node_id, now)
            back = self._await_return(message_type, unavailable, unavailable_since)
            for node_id, why in unavailable.items():
                if node_id not in back:
                    grace = self.config.node_grace_seconds
                    failed[node_id] = f"{why} Not back within {grace:.0f} s (node-grace-seconds)."
            pending = {n: contents[n] for n in sorted(back)}
        return failed

    def _await_return(
        self, message_type: str, unavailable: Mapping[int, str], since: Mapping[int, float]
    ) -> set[int]:
        """Wait for unavailable nodes to reconnect; return those back within their grace."""
        grace = self.config.node_grace_seconds
        waiting = {n for n in unavailable if time.monotonic() - since[n] < grace}
        for node_id in sorted(waiting):
            log.warning(
                "%s unavailable in %s (%s); waiting up to %.0f s for it to come back",
                self._describe(node_id),
                message_type,
                unavailable[node_id],
                grace - (time.monotonic() - since[node_id]),
            )
            self.event(
                {
                    "kind": "unavailable",
                    "node_id": node_id,
                    "role": self._nodes[node_id].role if node_id in self._nodes else "?",
                    "phase": self._phase_name,
                    "message": message_type,
                    "grace_seconds": grace,
                }
            )
        back: set[int] = set()
        while waiting - back:
            back |= waiting & set(self.grid.get_node_ids())
            now = time.monotonic()
            if all(now - since[n] >= grace for n in waiting - back):
                break
            time.sleep(NODE_POLL_SECONDS)
        for node_id in sorted(back):
            log.info("%s is back; sending it %s again", self._describe(node_id), message_type)
        return back

    def _order(self, node_id: int) -> tuple[str, int]:
        node = self._nodes.get(node_id)
        return (node.role if node else "", node_id)

    def _exchange(self, messages: Sequence[Message]) -> list[Message]:
        """Push ``messages`` and pull their replies, polling every ``POLL_SECONDS``.

        Flower's own ``send_and_receive`` polls every 3 s; over a phase of many
        short rounds that wait is a large share of a deployment's wall time.
        """
        pending = set(self.grid.push_messages(messages))
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        replies: list[Message] = []
        while pending:
            got = list(self.grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(POLL_SECONDS)
        return replies

    def _drop(self, node_id: int, message_type: str, reason: str) -> None:
        if node_id in self._dropped:
            return
        self._dropped[node_id] = reason
        node = self._nodes.get(node_id)
        record = {
            "node_id": node_id,
            "role": node.role if node else "?",
            "phase": self._phase_name,
            "message": message_type,
            "reason": reason[:500],
        }
        self.result.dropouts.append(record)
        self.event({"kind": "dropout", **record})
        log.warning("dropping %s in %s: %s", self._describe(node_id), self._phase_name, reason)
        active = self._active()
        if not any(n.labelled and n.trains for n in active):
            raise FederationError(
                f"the last labelled node dropped out ({self._describe(node_id)}: {reason}); "
                "fine-tuning cannot go on"
            )
        if not any(not n.trains for n in active):
            raise FederationError(
                f"the last test node dropped out ({self._describe(node_id)}: {reason}); "
                "evaluation cannot go on"
            )

    def _audit(self, node_id: int, message_type: str, content: RecordDict) -> None:
        """Record what a node sent: array names, dtypes and shapes (never values)."""
        arrays = [
            {"record": key, "array": name, "dtype": arr.dtype, "shape": list(arr.shape)}
            for key, record in content.array_records.items()
            for name, arr in record.items()
        ]
        self.event({"kind": "wire", "node_id": node_id, "message": message_type, "arrays": arrays})

    def _describe(self, node_id: int) -> str:
        node = self._nodes.get(node_id)
        return f"node {node_id} ({node.role})" if node else f"node {node_id}"

    def _content(self, config: Mapping[str, Any], **arrays: ArrayRecord) -> RecordDict:
        content = RecordDict({wire.CONFIG: ConfigRecord(dict(config))})
        if self._norm is not None:
            content[wire.NORMALIZATION] = self._norm
        for key, record in arrays.items():
            content[key] = record
        return content

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Time a phase (nested phases count in their parent too); name it for dropouts."""
        outer = self._phase_name
        self._phase_name = name
        start = time.perf_counter()
        try:
            yield
        finally:
            self._phase_name = outer  # a nested phase hands its name back
            seconds = time.perf_counter() - start
            self.result.phases[name] += seconds
            self._attempt_phases[name] += seconds

    def _active(self) -> list[NodeManifest]:
        return [n for i, n in sorted(self._nodes.items()) if i not in self._dropped]

    def _training_nodes(self) -> list[NodeManifest]:
        return [n for n in self._active() if n.trains]

    # ---------------------------------------------------------------- model
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

    def _model_config(self, tracks: Sequence[MethodSpec] = (), /, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"modalities": ",".join(self._modalities), **extra}
        if tracks:
            config[wire.TRACKS] = ",".join(t.name for t in tracks)
            for t in tracks:
                config[wire.track_key(t.name, "oracle")] = t.oracle
                config[wire.track_key(t.name, "mask-vector")] = t.mask_vector
        return config

    def _models_record(
        self, models: Mapping[str, FusionModel], tracks: Sequence[MethodSpec]
    ) -> dict[str, ArrayRecord]:
        return {
            wire.track_key(t.name, wire.MODEL): wire.state_to_record(models[t.name].state_dict())
            for t in tracks
        }

    # -------------------------------------------------------------- phase 1
    def _wait_for_nodes(self) -> list[int]:
        """Node ids once ``min_nodes`` are connected; a FederationError after ``wait_seconds``.

        Connected means online in the SuperLink's eyes (``Grid.get_node_ids``: nodes
        whose heartbeat is current). flwr 1.42 keeps a node it knew before a restart
        listed as online until that node's old heartbeat lapses (2 x 30 s) even when it
        has not reconnected; ``mmbind-server``'s SuperLink marks such nodes offline when
        it starts (:mod:`mmbind.server.superlink`), so only reconnected nodes count.
        """
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
        replies: dict[int, RecordDict] = {}
        failed = self._deliver(wire.MANIFEST, {n: RecordDict() for n in node_ids}, replies)
        if failed and len(replies) < self.config.min_nodes:
            detail = "; ".join(f"{self._describe(n)}: {why}" for n, why in sorted(failed.items()))
            raise FederationError(
                f"{wire.MANIFEST} failed on {len(failed)} node(s), leaving {len(replies)} of "
                f"min-nodes {self.config.min_nodes}: {detail}"
            )
        moments: dict[str, list[ChannelMoments]] = defaultdict(list)
        for node_id, content in sorted(replies.items()):
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
            self._nodes[node_id] = manifest
            if manifest.trains and not wire.get_bool(info, "paired-data", True):
                self._unpaired.append(manifest.role)
            self._datasets.add(wire.get_str(info, "dataset", self.config.dataset))
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
        for node_id, why in sorted(failed.items()):
            self._drop(node_id, wire.MANIFEST, why)
        nodes = self._active()
        self.result.nodes = [n.to_dict() for n in nodes]
        self.result.dataset = ",".join(sorted(self._datasets))
        self._check_layout(nodes)
        stats: dict[str, NDArray[np.float32]] = {}
        for m, (mean, std) in merge_normalization(moments, self.config.normalization).items():
            stats[f"{m}.mean"] = mean
            stats[f"{m}.std"] = std
        self._norm = wire.arrays_to_record(stats)
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
            config = {"epochs": cfg.pretrain_epochs, "seed": cfg.seed * 1000 + rnd}
            contents = {
                n.node_id: self._content(
                    config,
                    **{
                        wire.autoencoder_key(m): wire.state_to_record(states[m])
                        for m in n.modalities
                    },
                )
                for n in self._training_nodes()
            }
            replies = self._send(wire.PRETRAIN, contents)
            for m in self._modalities:
                key = wire.autoencoder_key(m)
                holders = [c for c in replies.values() if key in c.array_records]
                if not holders:
                    continue
                metrics = [c.metric_records[wire.METRICS] for c in holders]
                states[m] = weighted_average(
                    [wire.record_to_state(c.array_records[key]) for c in holders],
                    [wire.get_float(r, f"{m}.num-samples") for r in metrics],
                )
                losses = [wire.get_float(r, f"{m}.loss") for r in metrics]
                self.result.history[f"pretrain.{m}"].append(float(np.mean(losses)))
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
        record = wire.state_to_record(model.state_dict())
        config = self._model_config(
            modality=shared,
            labels="label" in kinds,
            **{"evaluation-labels": self.evaluation_labels},
        )
        replies = self._send(
            wire.EMBED,
            {n: self._content(config, **{wire.MODEL: record}) for n in uploaders},
        )
        embeddings: dict[int, NDArray[np.float32]] = {}
        eval_labels: dict[int, NDArray[np.int64]] = {}
        for node_id, content in replies.items():
            arrays = wire.record_to_arrays(content.array_records[wire.EMBEDDINGS])
            labels = arrays.get("labels")
            embeddings[node_id] = np.asarray(arrays[wire.EMBEDDINGS], np.float32)
            self.service.upload(
                node_id,
                embeddings[node_id],
                None if labels is None else np.asarray(labels, np.int64),
            )
            if wire.EVAL_LABELS in arrays:
                eval_labels[node_id] = np.asarray(arrays[wire.EVAL_LABELS], np.int64)
        if set(uploaders) - set(replies):
            requests = check_bindable(self._active(), shared)  # without the dropped nodes
        bindings = {kind: self.service.bind(requests, by=kind, seed=cfg.seed) for kind in kinds}
        primary = bindings[kinds[0]]
        report: dict[str, Any] = dict(binding_report(primary, eval_labels))
        report["by"] = kinds[0]
        if eval_labels and all(b.request.node_id in eval_labels for b in primary):
            k = self._num_classes
            true: list[NDArray[np.int64]] = []
            bound_to: list[NDArray[np.int64]] = []
            for b in primary:
                for p in np.unique(b.partner_node_ids):
                    sel = b.partner_node_ids == p
                    true.append(eval_labels[b.request.node_id][b.bindings.query_index[sel]])
                    bound_to.append(eval_labels[int(p)][b.bindings.partner_index[sel]])
            if true:
                report["pairing_confusion"] = pairing_confusion(
                    np.concatenate(true), np.concatenate(bound_to), k
                ).tolist()
            pairs = [
                (embeddings[r.node_id], eval_labels[r.node_id], embeddings[p], eval_labels[p])
                for r in requests
                for p in r.partners
                if r.node_id in embeddings and p in embeddings
            ]
            report["class_similarity"] = class_similarity(pairs, k).tolist()
        self.result.binding = report
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

        One message per partner carries the request of every binding method. Returns,
        per method and requesting node, the arrays of its ``partner`` record:
        ``<m>.index`` (its own rows), ``<m>.features`` and ``weights``. Rows bound to a
        partner that dropped out get no feature (the view is masked).
        """
        kind = {t.name: t.binding_kind(self.config.binding) or "" for t in tracks}
        requests: dict[int, dict[str, dict[str, NDArray[np.int64]]]] = defaultdict(dict)
        for t in tracks:
            wanted: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
            for b in bindings[kind[t.name]]:
                for p, row in zip(b.partner_node_ids, b.bindings.partner_index, strict=True):
                    if int(p) not in self._dropped:
                        wanted[int(p)][b.request.modality].add(int(row))
            for p, mods in wanted.items():
                requests[p][t.name] = {
                    m: np.asarray(sorted(rows), dtype=np.int64) for m, rows in mods.items()
                }
        contents = {}
        for p, per_track in requests.items():
            asked = [t for t in tracks if t.name in per_track]
            records = self._models_record(models, asked)
            for name, req in per_track.items():
                records[wire.track_key(name, wire.PARTNER)] = wire.arrays_to_record(req)
            contents[p] = self._content(self._model_config(asked), **records)
        replies = self._send(wire.FEATURES, contents)
        routed: dict[str, Routed] = {}
        for t in tracks:
            key = wire.track_key(t.name, wire.FEATURES_KEY)
            features = {
                p: wire.record_to_arrays(c.array_records[key])
                for p, c in replies.items()
                if key in c.array_records
            }
            routed[t.name] = self._route(t, bindings[kind[t.name]], requests, features)
        return routed

    def _route(
        self,
        track: MethodSpec,
        bindings: Sequence[NodeBinding],
        requests: Mapping[int, Mapping[str, Mapping[str, NDArray[np.int64]]]],
        features: Mapping[int, Mapping[str, NDArray[np.generic]]],
    ) -> Routed:
        """Each requesting node's partner record for one method's bindings."""
        routed: Routed = {}
        for n in self._training_nodes():
            arrays: dict[str, NDArray[np.generic]] = {
                "weights": tuple_weights(n.num_samples, n.node_id, bindings, self.weighting)
            }
            for b in bindings:
                if b.request.node_id != n.node_id:
                    continue
                m = b.request.modality
                rows: list[NDArray[np.int64]] = []
                feats: list[NDArray[np.float32]] = []
                source_node: list[NDArray[np.uint64]] = []  # Flower node ids are uint64
                source_row: list[NDArray[np.int64]] = []
                for p in np.unique(b.partner_node_ids):
                    if int(p) not in features:
                        continue  # the partner dropped out: these rows stay masked
                    sel = b.partner_node_ids == p
                    asked = requests[int(p)][track.name][m]
                    pos = np.searchsorted(asked, b.bindings.partner_index[sel])
                    rows.append(b.bindings.query_index[sel].astype(np.int64))
                    feats.append(np.asarray(features[int(p)][m], np.float32)[pos])
                    source_node.append(np.full(int(sel.sum()), p, dtype=np.uint64))
                    source_row.append(b.bindings.partner_index[sel].astype(np.int64))
                if rows:
                    arrays[f"{m}.index"] = np.concatenate(rows)
                    arrays[f"{m}.features"] = np.concatenate(feats)
                    # Where each routed feature came from (kept here, never sent): the
                    # partner gradients of end-to-end alignment go back the same way.
                    self._sources[track.name][n.node_id][m] = (
                        np.concatenate(source_node),
                        np.concatenate(source_row),
                    )
            routed[n.node_id] = arrays
        return routed

    def _collect_partner_grads(
        self, track: MethodSpec, replies: Mapping[int, RecordDict]
    ) -> dict[int, dict[str, NDArray[np.generic]]]:
        """Route the requesters' partner gradients back to the partners that made the features.

        A partner row bound by several requester rows (many-to-one binding) gets the sum of
        their gradients. Returns, per partner node id, its ``routed-grad`` arrays:
        ``<m>.rows`` (its own rows, sorted) and ``<m>.grad`` ``(R, proj_dim)``.
        """
        key = wire.track_key(track.name, wire.PARTNER_GRAD)
        sums: dict[int, dict[str, dict[int, NDArray[np.float64]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for node_id, content in replies.items():
            if key not in content.array_records:
                continue
            arrays = wire.record_to_arrays(content.array_records[key])
            for name, grad in arrays.items():
                m = name.removesuffix(".grad")
                source = self._sources[track.name].get(node_id, {}).get(m)
                if source is None or len(source[0]) != len(grad):
                    continue  # no routed features of m this round (or a stale reply)
                g = np.asarray(grad, np.float64)
                for p in np.unique(source[0]):
                    sel = source[0] == p
                    rows, inverse = np.unique(source[1][sel], return_inverse=True)
                    acc = np.zeros((len(rows), g.shape[1]))
                    np.add.at(acc, inverse, g[sel])
                    mine = sums[int(p)][m]
                    for r, vec in zip(rows.tolist(), acc, strict=True):
                        mine[r] = mine[r] + vec if r in mine else vec
        out: dict[int, dict[str, NDArray[np.generic]]] = {}
        for p, per_m in sums.items():
            if p in self._dropped:
                continue
            arrays_p: dict[str, NDArray[np.generic]] = {}
            for m, by_row in per_m.items():
                order = sorted(by_row)
                arrays_p[f"{m}.rows"] = np.asarray(order, dtype=np.int64)
                arrays_p[f"{m}.grad"] = np.stack([by_row[r] for r in order]).astype(np.float32)
            out[p] = arrays_p
        return out

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
        weighted by sample count x binding confidence (DESIGN.md). Methods without a
        binding train on their own modalities only (missing views masked).
        """
        cfg = self.config
        self.progress("align", rnd, cfg.align_rounds)
        config = self._model_config(tracks, epochs=cfg.align_epochs, seed=cfg.seed * 1000 + rnd)
        records = self._models_record(models, tracks)
        contents = {}
        for n in self._training_nodes():
            partners = {
                wire.track_key(t.name, wire.PARTNER): wire.arrays_to_record(
                    routed.get(t.name, {}).get(n.node_id)
                    or {"weights": np.ones(n.num_samples, np.float32)}
                )
                for t in tracks
            }
            for t in tracks:  # last round's gradients of other nodes' losses (end to end)
                pushed = self._routed_grads.get(t.name, {}).get(n.node_id)
                if pushed:
                    partners[wire.track_key(t.name, wire.ROUTED_GRAD)] = wire.arrays_to_record(
                        pushed
                    )
            contents[n.node_id] = self._content(config, **records, **partners)
        replies = self._send(wire.ALIGN, contents)
        if self.config.partner_grads:
            self._routed_grads = {t.name: self._collect_partner_grads(t, replies) for t in tracks}
        for t in tracks:
            model = models[t.name]
            state: State = dict(model.state_dict())
            key = wire.track_key(t.name, wire.MODEL)
            trained = {
                node: wire.names(c.config_records[wire.CONFIG], f"{t.name}.trained")
                for node, c in replies.items()
            }
            for m in self._modalities:
                got: list[tuple[State, float]] = []
                for node, c in replies.items():
                    if m in trained[node]:
                        metrics = c.metric_records[wire.METRICS]
                        weight = wire.get_float(metrics, "num-samples") * wire.get_float(
                            metrics, f"{t.name}.confidence"
                        )
                        got.append((wire.record_to_state(c.array_records[key]), weight))
                if got and sum(w for _, w in got) > 0:
                    state = average_modality(state, [s for s, _ in got], [w for _, w in got], m)
            model.load_state_dict(state)
            losses = [
                wire.get_float(c.metric_records[wire.METRICS], f"{t.name}.loss")
                for c in replies.values()
            ]
            if losses:
                self.result.history[f"{t.name}.align.loss"].append(float(np.mean(losses)))

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
            epochs = max(1, cfg.finetune_epochs // cfg.finetune_rounds)
            config = self._model_config(
                tracks, epochs=epochs, seed=cfg.seed * 1000 + rnd, **{"label-budget": budget}
            )
            records = self._models_record(models, tracks)
            replies = self._send(
                wire.FINETUNE, {n.node_id: self._content(config, **records) for n in labelled}
            )
            if not replies:
                raise FederationError("no labelled node answered the fine-tuning round")
            counts = [
                wire.get_float(c.metric_records[wire.METRICS], "num-samples")
                for c in replies.values()
            ]
            for t in tracks:
                key = wire.track_key(t.name, wire.MODEL)
                models[t.name].load_state_dict(
                    weighted_average(
                        [wire.record_to_state(c.array_records[key]) for c in replies.values()],
                        counts,
                    )
                )
                losses = [
                    wire.get_float(c.metric_records[wire.METRICS], f"{t.name}.loss")
                    for c in replies.values()
                ]
                if budget == cfg.label_budget:
                    self.result.history[f"{t.name}.finetune.loss"].append(float(np.mean(losses)))

    def evaluate(
        self, models: Mapping[str, FusionModel], tracks: Sequence[MethodSpec]
    ) -> dict[str, dict[str, float]]:
        """Phase 6b: every method's final model on the test nodes (summed confusion matrices)."""
        self.progress("evaluate", 0, 1)
        tests = [n for n in self._active() if not n.trains]
        content = self._content(self._model_config(tracks), **self._models_record(models, tracks))
        replies = self._send(wire.EVALUATE, {n.node_id: content for n in tests})
        if not replies:
            raise FederationError("no test node answered the evaluation")
        k = self._num_classes
        out: dict[str, dict[str, float]] = {}
        for t in tracks:
            cm = np.zeros((k, k), dtype=np.int64)
            for c in replies.values():
                record = c.array_records[wire.track_key(t.name, wire.CONFUSION)]
                cm += np.asarray(record.to_numpy_ndarrays()[0], np.int64)
            out[t.name] = metrics_from_confusion(cm)
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

    def _steps(self, tracks: Sequence[MethodSpec]) -> list[str]:
        """The checkpointed steps of the run, in order."""
        steps = []
        if any(t.pretrain for t in tracks):
            steps.append("pretrain")
        if any(t.binding for t in tracks):
            steps.append("binding")
        if any(t.align for t in tracks):
            steps += [f"align.{r}" for r in range(self.config.align_rounds)]
        extra = [f"budget.{b}" for b in self.config.label_budgets if b != self.config.label_budget]
        return [*steps, *extra, "finetune", "evaluate"]

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
        cp = Checkpoint(
            step=step,
            methods=dict(self.result.methods),
            budgets=dict(self.result.budgets),
            binding=dict(self.result.binding),
            phases=dict(self.result.phases),
            attempts=[*self._earlier, self._attempt_record(step)],
            history={k: list(v) for k, v in self.result.history.items()},
            dropouts=list(self.result.dropouts),
            node_names={str(i): n.role for i, n in self._nodes.items()},
            config=self.config.to_flower(),
        )
        names = {i: n.role for i, n in self._nodes.items()}
        flat = {f"{t}/{k}": v for t, model in models.items() for k, v in model.state_dict().items()}
        for m, state in self._pretrained.items():  # the autoencoders' encoders (binding)
            flat.update({f"{PRETRAINED}{m}/{k}": v for k, v in state.items()})
        self.store.put_blob(self.run_id, MODEL_BLOB, state_to_bytes(flat))
        for kind, bound in (bindings or {}).items():
            self.store.put_blob(self.run_id, bindings_blob(kind), bindings_to_bytes(bound, names))
        self.store.put_checkpoint(self.run_id, cp.to_dict())

    def _restore(self) -> Checkpoint | None:
        """The run's checkpoint, with results so far restored into ``self.result``."""
        data = self.store.checkpoint(self.run_id)
        if data is None:
            return None
        cp = Checkpoint.from_dict(data)
        self.result.methods.update(cp.methods)
        self.result.budgets.update(cp.budgets)
        self.result.binding.update(cp.binding)
        for k, v in cp.phases.items():
            self.result.phases[k] += v
        self._earlier = [dict(a) for a in cp.attempts] or [_legacy_attempt(cp)]
        self.result.earlier_seconds = sum(float(a["seconds"]) for a in self._earlier)
        for k, vs in cp.history.items():
            self.result.history[k].extend(vs)
        self.result.dropouts.extend(cp.dropouts)
        self.result.resumed_from = cp.step
        return cp

    def _restore_state(
        self, models: Mapping[str, FusionModel], kinds: Sequence[str], bound: bool
    ) -> dict[str, list[NodeBinding]]:
        """Load the checkpointed models (and bindings, once ``bound``) into a resumed run."""
        blob = self.store.blob(self.run_id, MODEL_BLOB)
        if blob is None:
            raise FederationError("the checkpoint lacks the model state it refers to")
        flat = state_from_bytes(blob)
        pretrained: dict[str, State] = defaultdict(dict)
        for key, value in flat.items():
            if key.startswith(PRETRAINED):
                m, _, k = key[len(PRETRAINED) :].partition("/")
                pretrained[m][k] = value
        self._pretrained = dict(pretrained)
        for name, model in models.items():
            prefix = f"{name}/"
            model.load_state_dict(
                {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
            )
        if not bound:
            return {}
        ids = {n.role: i for i, n in self._nodes.items()}
        bindings = {}
        for kind in kinds:
            data = self.store.blob(self.run_id, bindings_blob(kind))
            if data is None:
                raise FederationError(f"the checkpoint lacks the {kind} bindings it refers to")
            bindings[kind] = bindings_from_bytes(data, ids)
        return bindings

    def _elapsed(self) -> float:
        """Seconds of the whole run: earlier attempts (to their last checkpoint) plus this one."""
        return self.result.earlier_seconds + time.perf_counter() - self._attempt_start

    def _attempt_record(self, step: str) -> dict[str, Any]:
        """This attempt as results.json's ``attempts`` lists it, ``step`` its last finished step.

        ``seconds`` runs from the attempt's start to now; ``phases`` are its own phase
        seconds. An attempt that dies keeps the record of its last checkpoint: time it
        spent after that is lost with the work it did.
        """
        return {
            "attempt": self.config.attempt,
            "resumed_from": self.result.resumed_from,
            "last_step": step,
            "seconds": time.perf_counter() - self._attempt_start,
            "phases": dict(self._attempt_phases),
        }

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Every requested method, in lockstep; resumable step by step."""
        self._attempt_start = time.perf_counter()
        self._claim()
        cp = self._restore() if self.config.resume else None
        if self.config.resume and cp is None:
            raise FederationError(
                f"run {self.run_id!r} has no checkpoint to resume from; start it without --resume"
            )
        with self._phase("manifest"):
            self.manifest()
        tracks = self._tracks()
        steps = self._steps(tracks)
        kinds = self._binding_kinds(tracks)
        models = {t.name: self._new_model(t) for t in tracks}
        bindings: dict[str, list[NodeBinding]] = {}
        done = -1
        if cp is not None and cp.step in steps:
            done = steps.index(cp.step)
            bound = "binding" in steps and done >= steps.index("binding")
            bindings = self._restore_state(models, kinds, bound)
            log.info("resuming after step %s", cp.step)
        routed: dict[str, Routed] | None = None
        for index, step in enumerate(steps):
            if index <= done:
                continue
            phase, _, number = step.partition(".")
            with self._phase(phase):
                if step == "pretrain":
                    self._pretrained = self.pretrain()
                    random_align = self.config.align_init == "random"
                    for t in tracks:
                        if t.pretrain and not (t.align and random_align):
                            for m, state in self._pretrained.items():
                                models[t.name].encoders[m].load_state_dict(state)
                elif step == "binding":
                    first = next(t for t in tracks if t.binding)
                    bindings = self.bind(self._binding_model(first), kinds)
                elif phase == "align":
                    rnd = int(number)
                    aligning = [t for t in tracks if t.align]
                    binders = [t for t in aligning if t.binding]
                    if binders and (routed is None or rnd % self.config.refresh_every == 0):
                        with self._phase("partner_features"):
                            routed = self.partner_features(models, binders, bindings)
                    self.align_round(models, aligning, rnd, routed or {})
                elif phase == "budget":
                    # Another label budget, from a copy of the aligned models.
                    twins = {name: copy.deepcopy(m) for name, m in models.items()}
                    self.finetune(twins, tracks, budget=int(number))
                    self.result.budgets[number] = self.evaluate(twins, tracks)
                elif step == "finetune":
                    self.finetune(models, tracks)
                else:
                    for name, metrics in self.evaluate(models, tracks).items():
                        metrics["seconds"] = self._elapsed()
                        self.result.methods[name] = metrics
                    if self.result.budgets:
                        own = str(self.config.label_budget)
                        self.result.budgets[own] = dict(self.result.methods)
                        log.info(
                            "%s: accuracy %.4f, macro-F1 %.4f",
                            name,
                            metrics["accuracy"],
                            metrics["macro_f1"],
                        )
            self._save(step, models, bindings if step == "binding" else None)
        record = self._attempt_record(steps[-1])
        self.result.attempts = [*self._earlier, record]
        self.result.phases["total"] = self.result.earlier_seconds + record["seconds"]
        self.result.traffic = {
            self._nodes[i].role if i in self._nodes else str(i): {"received": r, "sent": s}
            for i, (r, s) in self._traffic.items()
        }
        return self.result


def _legacy_attempt(cp: Checkpoint) -> dict[str, Any]:
    """The earlier attempts of a checkpoint written before checkpoints kept ``attempts``."""
    top = {k: v for k, v in cp.phases.items() if k != "partner_features"}  # nested in align
    return {
        "attempt": "",
        "resumed_from": "",
        "last_step": cp.step,
        "seconds": sum(top.values()),
        "phases": dict(cp.phases),
    }


def _content_bytes(content: RecordDict) -> int:
    """Approximate payload bytes of a message: its arrays plus its config and metrics."""
    total = 0
    for record in content.array_records.values():
        total += int(record.count_bytes())
    for crec in content.config_records.values():
        total += int(crec.count_bytes())
    for mrec in content.metric_records.values():
        total += int(mrec.count_bytes())
    return total
