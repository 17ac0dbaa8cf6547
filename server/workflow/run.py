"""The workflow: one run's schedule of phases, resumable step by step.

:class:`Workflow` runs the steps of :func:`~.schedule.plan` with the rounds of
:class:`~.rounds.Rounds`, checkpoints every finished step (:mod:`.checkpoint`) and
collects a :class:`~.result.RunResult`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmbind import wire
from mmbind.binding.fusion import FusionModel
from mmbind.binding.pairing import pairing_accuracy
from mmbind.errors import FederationError, StoreError
from mmbind.manifest import NodeManifest
from mmbind.methods import MethodSpec
from mmbind.server.binding_service import EMBEDDINGS, NodeBinding, plan_requests
from mmbind.server.workflow import binding, checkpoint
from mmbind.server.workflow.joining import LateBinder, refusal
from mmbind.server.workflow.phases import Routed
from mmbind.server.workflow.result import RunResult
from mmbind.server.workflow.rounds import Progress as Progress  # re-exported
from mmbind.server.workflow.rounds import Rounds
from mmbind.server.workflow.schedule import Step, plan, resume_index, runnable

log = logging.getLogger(__name__)


class Workflow(Rounds):
    """Drives one run's phases over ``grid`` on its schedule and collects a :class:`RunResult`.

    Its parameters are those of :class:`~mmbind.server.workflow.rounds.Rounds`.
    """

    # ------------------------------------------------------------ late nodes
    def _admit(
        self,
        rnd: int,
        tracks: Sequence[MethodSpec],
        bindings: dict[str, list[NodeBinding]],
    ) -> bool:
        """Take in the nodes connected since phase 1; whether any was bound (refresh features).

        Each one is asked for its manifest; one the run can take (:func:`.joining.refusal`)
        is registered, embeds its shared modality with the pretrained encoders and is bound
        against the bound nodes (:class:`.joining.LateBinder`); it trains from this round
        on. results.json's ``binding.late_joiners`` records each, taken or refused.
        """
        known = {*self.nodes, *self.roster.dropped, *self._joins.refused}
        fresh = [n for n in self.channel.connected() if n not in known]
        if not fresh:
            return False
        request = wire.ManifestRequest().to_record()
        replies, failed = self.channel.deliver(wire.MANIFEST, {n: request for n in fresh})
        joined: list[NodeManifest] = []
        oracle = any(t.oracle for t in tracks)
        datasets = [d for d in self.result.dataset.split(",") if d]
        for node_id in fresh:
            record: dict[str, Any] = {"node_id": node_id, "round": rnd}
            if node_id in failed:
                why: str | None = f"its manifest failed: {failed[node_id]}"
                report = None
            else:
                report = wire.ManifestReply.from_record(replies[node_id]).report
                record["role"] = report.role
                why = refusal(
                    report, self.nodes, self._modalities, self._num_classes, datasets, oracle
                )
            if why is not None or report is None:
                self._joins.refused[node_id] = str(why)
                self._late({**record, "refused": why})
                log.warning("not taking late node %d: %s", node_id, why)
                continue
            manifest = report.manifest(node_id)
            self.service.register(manifest)
            self.nodes[node_id] = manifest
            self.result.nodes.append(manifest.to_dict())
            joined.append(manifest)
            log.info("node %d (%s) joins at align round %d", node_id, report.role, rnd)
        bound = False
        for manifest in joined:
            record = {"node_id": manifest.node_id, "role": manifest.role, "round": rnd}
            record.update(self._bind_late(manifest, tracks, bindings))
            bound = bound or bool(record.get("pairs") or record.get("rebound"))
            self._late(record)
        self._joins.changed = self._joins.changed or bound
        return bound

    def _late(self, record: dict[str, Any]) -> None:
        self.result.binding.setdefault("late_joiners", []).append(record)
        self.event({"kind": "late_join", **record})

    def _bind_late(
        self,
        joiner: NodeManifest,
        tracks: Sequence[MethodSpec],
        bindings: dict[str, list[NodeBinding]],
    ) -> dict[str, Any]:
        """Embed and bind one late node; what its binding changed (for results.json)."""
        shared = self.config.shared_modality
        binders = [t for t in tracks if t.binding]
        if not (binders and bindings and joiner.trains and shared in joiner.modalities):
            return {"pairs": 0, "rebound": 0}
        kinds = list(bindings)
        asks = binding.configure_embed(
            self._binding_model(binders[0]),
            [joiner.node_id],
            self._modalities,
            shared,
            kinds,
            self.evaluation_labels,
            self._norm,
        )
        replies = self._ask(wire.EMBED, asks, wire.EmbedReply.from_record)
        if joiner.node_id not in replies:
            return {"pairs": 0, "rebound": 0, "note": "dropped out while embedding"}
        reply = replies[joiner.node_id]
        self.service.upload(joiner.node_id, reply.embeddings, reply.labels)
        out: dict[str, Any] = {}
        if "modality" in bindings:
            if self._joins.binder is None:
                bound = self._bound_embeddings(joiner.node_id)
                if bound is None:
                    return {"pairs": 0, "rebound": 0, "note": "bound nodes' embeddings lost"}
                self._joins.binder = LateBinder(
                    self._active(), shared, self._modalities, bound, bindings["modality"]
                )
            bindings["modality"], out = self._joins.binder.add(
                joiner, reply.embeddings, bindings["modality"]
            )
        self._joins.embeddings[joiner.node_id] = reply.embeddings
        if reply.evaluation_labels is not None:
            self._joins.eval_labels[joiner.node_id] = reply.evaluation_labels
        if "label" in bindings:  # the joiner's own samples only; the bound nodes keep theirs
            mine = [r for r in plan_requests(self._active(), shared) if r.node_id == joiner.node_id]
            new = self.service.bind(mine, by="label", seed=self.config.seed) if mine else []
            bindings["label"] = [*bindings["label"], *new]
            out.setdefault("pairs", sum(len(b.bindings) for b in new))
        own = [b for b in bindings[kinds[0]] if b.request.node_id == joiner.node_id]
        labels = self._joins.eval_labels
        if own and all(p in labels for b in own for p in (joiner.node_id, *b.request.partners)):
            hits = sum(
                pairing_accuracy(
                    b.bindings, labels[joiner.node_id], [labels[p] for p in b.request.partners]
                )
                * len(b.bindings)
                for b in own
            )
            out["pairing_accuracy"] = round(hits / max(1, sum(len(b.bindings) for b in own)), 6)
        return out

    def _bound_embeddings(self, joiner: int) -> dict[int, NDArray[np.float32]] | None:
        """Phase 3's uploads (from the store after a resume); None when they are not at hand."""
        if self._joins.embeddings:
            return self._joins.embeddings
        out: dict[int, NDArray[np.float32]] = {}
        for n in self._training_nodes():
            if self.config.shared_modality not in n.modalities or n.node_id == joiner:
                continue
            try:
                stored = self.store.arrays(self.run_id, n.node_id, EMBEDDINGS)
            except StoreError:
                return None
            out[n.node_id] = np.asarray(stored["embeddings"], np.float32)
        self._joins.embeddings = out
        return out

    # ------------------------------------------------------------ the steps
    def _tracks(self) -> list[MethodSpec]:
        """The methods this run trains, in the config's order (unrunnable ones skipped)."""
        tracks, skipped = runnable(self.config, self._unpaired)
        for method, reason in skipped.items():
            self.result.skipped[method] = reason
            self.event({"kind": "skipped", "method": method, "reason": reason})
            log.warning("skipping %s: %s", method, reason)
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
            joined = self._admit(rnd, tracks, bindings)
            if binders and (routed is None or joined or rnd % cfg.refresh_every == 0):
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
            changed = step.phase == "binding" or self._joins.changed
            self._save(str(step), models, bindings if changed else None)
            self._joins.changed = False
        record = self.clock.attempt_record(str(steps[-1]))
        self.result.finish([*self._earlier, record], self.channel.traffic, self.nodes)
        return self.result
