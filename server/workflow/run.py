"""The workflow: one run's schedule of phases, resumable step by step.

:class:`Workflow` runs the steps of :func:`~.schedule.plan` with the rounds of
:class:`~.rounds.Rounds`, checkpoints every finished step (:mod:`.checkpoint`) and
collects a :class:`~.result.RunResult`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

from mmbind.binding.fusion import FusionModel
from mmbind.errors import FederationError
from mmbind.methods import MethodSpec
from mmbind.server.binding_service import NodeBinding
from mmbind.server.workflow import checkpoint
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
