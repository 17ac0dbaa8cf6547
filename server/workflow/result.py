"""What a run measured (:class:`RunResult`), and the clock of its phases and attempts.

:mod:`mmbind.server.results` turns a :class:`RunResult` into results.json.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mmbind.manifest import NodeManifest
from mmbind.server.workflow.checkpoint import Checkpoint, legacy_attempt


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
    """One record per submission of the run (see :meth:`Clock.attempt_record`)."""
    earlier_seconds: float = 0.0
    """Seconds the earlier attempts of a resumed run spent, through their last checkpoint."""

    def restore(self, cp: Checkpoint) -> list[dict[str, Any]]:
        """Take over the results so far of a checkpoint; return its earlier attempts."""
        self.methods.update(cp.methods)
        self.budgets.update(cp.budgets)
        self.binding.update(cp.binding)
        for k, v in cp.phases.items():
            self.phases[k] += v
        earlier = [dict(a) for a in cp.attempts] or [legacy_attempt(cp)]
        self.earlier_seconds = sum(float(a["seconds"]) for a in earlier)
        for k, vs in cp.history.items():
            self.history[k].extend(vs)
        self.dropouts.extend(cp.dropouts)
        self.resumed_from = cp.step
        return earlier

    def checkpoint(
        self,
        step: str,
        attempts: list[dict[str, Any]],
        nodes: Mapping[int, NodeManifest],
        config: dict[str, Any],
    ) -> Checkpoint:
        """The JSON part of a checkpoint after ``step``."""
        return Checkpoint(
            step=step,
            methods=dict(self.methods),
            budgets=dict(self.budgets),
            binding=dict(self.binding),
            phases=dict(self.phases),
            attempts=attempts,
            history={k: list(v) for k, v in self.history.items()},
            dropouts=list(self.dropouts),
            node_names={str(i): n.role for i, n in nodes.items()},
            config=config,
        )

    def finish(
        self,
        attempts: list[dict[str, Any]],
        traffic: Mapping[int, list[int]],
        nodes: Mapping[int, NodeManifest],
    ) -> None:
        """Close the run: every attempt, the total time, each node's traffic by name."""
        self.attempts = attempts
        self.phases["total"] = self.earlier_seconds + float(attempts[-1]["seconds"])
        self.traffic = {
            nodes[i].role if i in nodes else str(i): {"received": r, "sent": s}
            for i, (r, s) in traffic.items()
        }


class Clock:
    """Times the phases of one attempt into a :class:`RunResult`; names the current phase."""

    def __init__(self, result: RunResult, attempt: str) -> None:
        self.result = result
        self.attempt = attempt
        self.phase = "manifest"
        self.phases: dict[str, float] = defaultdict(float)
        """This attempt's own phase seconds."""
        self.start = time.perf_counter()

    def restart(self) -> None:
        """Start this attempt's clock (again) now."""
        self.start = time.perf_counter()

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        """Time a phase (nested phases count in their parent too); name it for dropouts."""
        outer = self.phase
        self.phase = name
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phase = outer  # a nested phase hands its name back
            seconds = time.perf_counter() - start
            self.result.phases[name] += seconds
            self.phases[name] += seconds

    def elapsed(self) -> float:
        """Seconds of the whole run: earlier attempts (to their last checkpoint) plus this one."""
        return self.result.earlier_seconds + time.perf_counter() - self.start

    def attempt_record(self, step: str) -> dict[str, Any]:
        """This attempt as results.json's ``attempts`` lists it, ``step`` its last finished step.

        ``seconds`` runs from the attempt's start to now; ``phases`` are its own phase
        seconds. An attempt that dies keeps the record of its last checkpoint: time it
        spent after that is lost with the work it did.
        """
        return {
            "attempt": self.attempt,
            "resumed_from": self.result.resumed_from,
            "last_step": step,
            "seconds": time.perf_counter() - self.start,
            "phases": dict(self.phases),
        }
