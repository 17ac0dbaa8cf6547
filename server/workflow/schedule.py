"""The run's schedule: its checkpointed steps, in order.

A step is a phase and, for phases that repeat, a number: the align round, or the
label budget of an extra fine-tuning. Checkpoints store a step in its text form
(``"pretrain"``, ``"align.3"``, ``"budget.54"``), so runs checkpointed before the
schedule was typed resume unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from mmbind.errors import FederationError
from mmbind.methods import SPECS, MethodSpec
from mmbind.run_config import RunConfig

Phase = Literal["pretrain", "binding", "align", "budget", "finetune", "evaluate"]
PHASES: tuple[Phase, ...] = get_args(Phase)


@dataclass(frozen=True)
class Step:
    """One checkpointed step: ``phase`` and, for ``align`` and ``budget``, its number."""

    phase: Phase
    number: int | None = None
    """The align round, or the label budget of an extra fine-tuning."""

    def __str__(self) -> str:
        return self.phase if self.number is None else f"{self.phase}.{self.number}"

    @classmethod
    def parse(cls, text: str) -> Step:
        """The step of its text form (as checkpoints store it).

        Raises
        ------
        FederationError
            ``text`` names no step.
        """
        phase, dot, number = text.partition(".")
        numbered = phase in ("align", "budget")
        if phase not in PHASES or bool(dot) != numbered or (numbered and not number.isdigit()):
            raise FederationError(f"not a step of a run: {text!r}")
        return cls(phase, int(number) if numbered else None)


def plan(config: RunConfig, tracks: Sequence[MethodSpec]) -> list[Step]:
    """The checkpointed steps of a run training ``tracks``, in order."""
    steps: list[Step] = []
    if any(t.pretrain for t in tracks):
        steps.append(Step("pretrain"))
    if any(t.binding for t in tracks):
        steps.append(Step("binding"))
    if any(t.align for t in tracks):
        steps += [Step("align", r) for r in range(config.align_rounds)]
    steps += [Step("budget", b) for b in config.label_budgets if b != config.label_budget]
    return [*steps, Step("finetune"), Step("evaluate")]


def resume_index(steps: Sequence[Step], last: str) -> int:
    """Index in ``steps`` of a checkpoint's last finished step ``last`` (-1: start over).

    A checkpoint whose step is not in this schedule (another recipe) starts over, as
    it always has.
    """
    names = [str(s) for s in steps]
    return names.index(last) if last in names else -1


def runnable(config: RunConfig, unpaired: Sequence[str]) -> tuple[list[MethodSpec], dict[str, str]]:
    """The methods a run trains, in the config's order, and why each other one is skipped.

    The upper bound needs naturally paired data on every training node; ``unpaired``
    are the names of those that hold none.
    """
    tracks: list[MethodSpec] = []
    skipped: dict[str, str] = {}
    for method in config.methods:
        spec = SPECS[method]
        if spec.oracle and unpaired:
            skipped[method] = (
                f"nodes {', '.join(sorted(unpaired))} hold no naturally paired data "
                "(start them with mmbind-client --paired-data)"
            )
            continue
        tracks.append(spec)
    return tracks, skipped
