"""Metrics from confusion matrices, a run's results.json (built as a
:class:`~mmbind.results_model.RunResults`) and its table."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mmbind.errors import ConfigError
from mmbind.methods import REPORT_ORDER, TITLES
from mmbind.processes import writable_folder
from mmbind.results_model import (
    Attempt,
    BindingSummary,
    Dropout,
    MethodScore,
    NodeRecord,
    PhaseTime,
    RunResults,
    Traffic,
)
from mmbind.run_config import RunConfig

if TYPE_CHECKING:  # the workflow imports this module (metrics_from_confusion)
    from mmbind.server.workflow.result import RunResult


def metrics_from_confusion(cm: NDArray[np.integer]) -> dict[str, float]:
    """Accuracy and macro-F1 from a confusion matrix ``(K, K)`` (rows: true class).

    Macro-F1 averages the per-class F1 over the classes that occur in the true
    labels or the predictions.
    """
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "test_samples": float(total),
    }


def build_results(
    *,
    config: RunConfig,
    engine: str,
    result: RunResult,
    wall_seconds: float,
    run_id: str | None = None,
) -> RunResults:
    """A run's results.json document (README, Results) from what the run measured.

    Figures are rounded here (metrics to 6 decimals, seconds to 3); ``run_id`` (the
    coordinator's own) is left out when ``None``.
    """
    binding = result.binding
    doc = RunResults(
        dataset=result.dataset or config.dataset,  # what the nodes hold, when they said
        engine=engine,
        methods={
            name: MethodScore(
                accuracy=round(m["accuracy"], 6),
                macro_f1=round(m["macro_f1"], 6),
                seconds=round(m.get("seconds", 0.0), 3),
            )
            for name, m in result.methods.items()
        },
        binding=BindingSummary.model_validate(
            {
                "pairs": int(binding.get("pairs", 0)),
                "pairing_accuracy": _maybe_round(binding.get("pairing_accuracy")),
                "mean_similarity": _maybe_round(binding.get("mean_similarity")),
                **{key: binding[key] for key in _BINDING_EXTRAS if key in binding},
            }
        ),
        phases={name: PhaseTime(seconds=round(s, 3)) for name, s in result.phases.items()},
        wall_seconds=round(wall_seconds, 3),
        nodes=[NodeRecord.model_validate(n) for n in result.nodes],
        history={k: [round(v, 6) for v in vs] for k, vs in result.history.items()},
        config=config.to_flower(),
    )
    if run_id is not None:
        doc.run_id = run_id
    doc.dropouts = [Dropout.model_validate(d) for d in result.dropouts]
    if result.budgets:
        doc.label_budgets = {
            b: {name: _scores(m) for name, m in methods.items()}
            for b, methods in sorted(result.budgets.items(), key=lambda kv: int(kv[0]))
        }
    if result.skipped:
        doc.skipped = dict(result.skipped)
    doc.traffic = {name: Traffic.model_validate(t) for name, t in result.traffic.items()}
    if result.resumed_from:
        doc.resumed_from = result.resumed_from
    doc.attempts = [_attempt(a) for a in result.attempts]
    return doc


_BINDING_EXTRAS = ("by", "search", "late_joiners", "pairing_confusion", "class_similarity")
"""The binding report's keys results.json keeps as they are, after the three figures."""


def _attempt(record: Mapping[str, Any]) -> Attempt:
    return Attempt.model_validate(
        {
            **record,
            "seconds": round(float(record["seconds"]), 3),
            "phases": {k: {"seconds": round(float(v), 3)} for k, v in record["phases"].items()},
        }
    )


def _scores(metrics: Mapping[str, float]) -> MethodScore:
    return MethodScore(
        accuracy=round(float(metrics["accuracy"]), 6),
        macro_f1=round(float(metrics["macro_f1"]), 6),
    )


def _maybe_round(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 6)


def write_results(results: RunResults | Mapping[str, Any], output: str | Path) -> Path:
    """Write ``results.json`` into ``output`` (created if needed); return its path."""
    if isinstance(results, RunResults):
        results = results.to_json()
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    return path


def check_output(output: str | Path, *, overwrite: bool = False) -> Path:
    """Make sure ``results.json`` can be written into ``output`` later; return the folder.

    Called before a run starts, so that a run's results are not lost at its end.

    Raises
    ------
    ConfigError
        The folder cannot be created or written, or it already holds a
        ``results.json`` and ``overwrite`` is false.
    """
    folder = writable_folder(output, "--output")
    existing = folder / "results.json"
    if existing.exists() and not overwrite:
        raise ConfigError(
            f"{existing} already exists; pass --overwrite to replace it, or give another --output"
        )
    return folder


METHOD_TITLES = TITLES


def format_table(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows ``(method, accuracy, macro-F1)`` in the paper's order, for printing."""
    rows = []
    for name in REPORT_ORDER:
        if name in results["methods"]:
            m = results["methods"][name]
            rows.append((METHOD_TITLES[name], f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}"))
    return rows
