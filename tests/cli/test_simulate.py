"""``mmbind simulate`` end to end: a real Flower simulation (Ray actors), tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmbind.server.cli import main

TINY = [
    "-c", "pretrain-rounds=1", "-c", "pretrain-epochs=2",
    "-c", "align-rounds=2", "-c", "align-epochs=1", "-c", "refresh-every=1",
    "-c", "finetune-epochs=5", "-c", "synthetic-trials=3",
]  # fmt: skip


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "MMBIND_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "mmbind.server.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


@pytest.mark.integration
def test_simulate_synthetic_end_to_end(tmp_path: Path) -> None:
    # Execute
    proc = run_cli("simulate", "-q", "--seed", "1", "--output", str(tmp_path), *TINY)
    # Assert
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"] == "synthetic"
    assert results["engine"] == "simulation"
    assert set(results["methods"]) == {"mmbind", "lower_bound", "upper_bound"}
    for m in results["methods"].values():
        assert 0.0 <= m["accuracy"] <= 1.0
        assert 0.0 <= m["macro_f1"] <= 1.0
    binding = results["binding"]
    roles = {n["role"]: n for n in results["nodes"]}
    # A binds every sample to B and B every sample to A: many-to-one, both directions.
    assert binding["pairs"] == roles["A"]["num_samples"] + roles["B"]["num_samples"]
    assert 0.0 <= binding["pairing_accuracy"] <= 1.0
    assert -1.0 <= binding["mean_similarity"] <= 1.0
    for phase in ("manifest", "pretrain", "binding", "partner_features", "align", "finetune"):
        assert results["phases"][phase]["seconds"] > 0
    assert results["wall_seconds"] > 0
    assert "MMBind" in proc.stdout and "pairing accuracy" in proc.stdout


def test_missing_data_dir_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--dataset", "utd-mhad", "--data-dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmbind: error:")
    assert "nope" in lines[0]


def test_empty_data_dir_names_the_expected_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--dataset", "utd-mhad", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "Inertial" in err and err.count("\n") == 1


def test_unknown_shared_modality_is_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "-c", "shared-modality=accel"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown modality 'accel'" in err
    assert "acc, gyro, mag, skeleton" in err


def test_bad_config_pair_is_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-c", "align-rounds"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_layout_that_cannot_bind_fails_before_the_simulation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "-c", "shared-modality=mag"]) == 4
    assert "no two training nodes can bind through 'mag'" in capsys.readouterr().err
