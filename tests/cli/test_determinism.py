"""Same command, same seed, same figures: two runs agree bit for bit, and match the record.

The recorded fingerprint (``tests/fingerprints/simulate_tiny.json``) is what this install
(``constraints.txt``) gives for a seconds-long synthetic run on Flower's simulation engine. A
change that moves any figure (the recipe, a dependency, the data generator, the order of a
floating-point sum) fails here, on purpose: if the change is meant, regenerate the record with
``MMBIND_UPDATE_FINGERPRINTS=1 python -m pytest tests/cli/test_determinism.py`` and commit it with
the change, together with the README's figures.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from mmbind.lab.simulate import simulate
from mmbind.run_config import RunConfig

RECORD = Path(__file__).resolve().parents[1] / "fingerprints" / "simulate_tiny.json"
TINY = {
    "seed": 3,
    "pretrain_rounds": 2,
    "pretrain_epochs": 1,
    "align_rounds": 2,
    "align_epochs": 1,
    "finetune_epochs": 3,
    "synthetic_trials": 2,
    "methods": "mmbind,lower_bound,upper_bound,mmbind_label",
}


def fingerprint(results: dict[str, Any]) -> dict[str, Any]:
    """The figures of a run: every method's metrics, the binding and every loss curve."""
    return {
        "methods": {
            name: {k: m[k] for k in ("accuracy", "macro_f1")}
            for name, m in sorted(results["methods"].items())
        },
        "binding": {
            k: results["binding"][k] for k in ("pairs", "pairing_accuracy", "mean_similarity")
        },
        "history": {k: results["history"][k] for k in sorted(results["history"])},
    }


def _close(a: Any, b: Any, where: str, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                problems.append(f"{where}.{key}: only in {'recorded' if key in b else 'this run'}")
            else:
                _close(a[key], b[key], f"{where}.{key}", problems)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append(f"{where}: {len(a)} values, recorded {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _close(x, y, f"{where}[{i}]", problems)
    elif isinstance(a, float) and isinstance(b, float):
        if not math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7):
            problems.append(f"{where}: {a!r}, recorded {b!r}")
    elif a != b:
        problems.append(f"{where}: {a!r}, recorded {b!r}")


@pytest.mark.integration
def test_same_seed_same_figures_and_the_recorded_fingerprint() -> None:
    # Prepare
    config = RunConfig.from_mapping(TINY)

    # Execute: the same run twice, each on a fresh simulation engine
    first = fingerprint(simulate(config, num_cpus=2))
    second = fingerprint(simulate(config, num_cpus=2))

    # Assert: bit for bit between runs ...
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    if os.environ.get("MMBIND_UPDATE_FINGERPRINTS") == "1":
        RECORD.write_text(json.dumps(first, indent=1, sort_keys=True) + "\n")
    # ... and equal to what this install recorded (tolerance: last-bit differences of other
    # CPUs' kernels in the loss curves; metrics are counts over samples, recorded exactly)
    recorded = json.loads(RECORD.read_text())
    problems: list[str] = []
    _close(first, recorded, "results", problems)
    assert not problems, "figures drifted from tests/fingerprints/simulate_tiny.json:\n" + (
        "\n".join(problems[:20])
    )
