"""``mmbind simulate`` end to end: a real Flower simulation (Ray actors), tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmbind.errors import FederationError
from mmbind.server.cli import main

TINY = [
    "-c", "pretrain-rounds=1", "-c", "pretrain-epochs=2",
    "-c", "align-rounds=2", "-c", "align-epochs=1", "-c", "refresh-every=1",
    "-c", "finetune-epochs=5", "-c", "synthetic-trials=3",
]  # fmt: skip


def run_cli(*args: str, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "MMBIND_LOG_LEVEL": "WARNING"}
    env.pop("FLWR_LOG_LEVEL", None)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "mmbind.server.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


@pytest.mark.integration
def test_simulate_synthetic_end_to_end(tmp_path: Path) -> None:
    # Execute: one Ray actor per node (with fewer, fewer actors say goodbye at the end)
    proc = run_cli(
        "simulate", "-q", "--seed", "1", "--output", str(tmp_path), *TINY, MMBIND_NUM_CPUS="4"
    )
    # Assert
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Nothing from the actors' shutdown above the table ("Manually terminating ClientAppActor").
    assert "ClientAppActor pid=" not in proc.stderr, proc.stderr[-3000:]
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


def no_simulation(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the simulation started; the error should have come first")


@pytest.fixture
def simulation_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ``simulate`` runs: the CLI must refuse before any work."""
    monkeypatch.setattr("mmbind.lab.simulate.simulate", no_simulation)


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mmbind: error:")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", ","], "give at least one method of lower_bound, unimodal, mim"),
        (["-c", "weighting=foo"], "weighting='foo': weighting must be one of "),
        (["--seed", "-1"], "seed=-1"),
        (["--nodes-per-role", "0"], "nodes-per-role=0"),
        (["--split", "-1"], "split=-1"),
    ],
)
def test_bad_run_config_is_refused_before_the_simulation(
    simulation_forbidden: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    # Execute
    code = main(["simulate", "-q", "--output", str(tmp_path / "out"), *args])
    # Assert
    assert code == 2
    assert message in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "4"], "split 4 does not exist"),  # it ran split 0 (4 modulo 4)
        (["--split", "5"], "split 5 would repeat split 1; valid splits: 0..3"),
    ],
)
def test_split_outside_the_protocol_is_refused_before_the_data_loads(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    # Prepare: simulate() may check; the data must not load, Ray must not start
    monkeypatch.setattr("mmbind.client.local_data.load_dataset", no_simulation)
    monkeypatch.setattr("mmbind.lab.simulate.load_dataset", no_simulation)
    monkeypatch.setattr("flwr.simulation.run_simulation", no_simulation)
    # Execute
    code = main(["simulate", "-q", "--output", str(tmp_path), *args])
    # Assert
    assert code == 2
    assert message in one_line_error(capsys.readouterr().err)


def test_node_without_samples_is_refused_before_the_simulation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: 6 nodes share each subject's 2 trials; simulate() may check, not start Ray
    monkeypatch.setattr("flwr.simulation.run_simulation", no_simulation)
    args = ["--nodes-per-role", "6", "-c", "synthetic-trials=2", "--output", str(tmp_path)]
    # Execute
    code = main(["simulate", "-q", *args])
    # Assert
    assert code == 3
    assert "fewer than 3 distinct trials; use fewer nodes per role" in one_line_error(
        capsys.readouterr().err
    )


def test_output_that_cannot_be_created_is_refused_before_the_simulation(
    simulation_forbidden: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    a_file = tmp_path / "hostname"
    a_file.write_text("x")
    # Execute, Assert
    assert main(["simulate", "-q", "--output", "/proc/mmbind-x"]) == 2
    assert "--output '/proc/mmbind-x' cannot be created" in one_line_error(capsys.readouterr().err)
    assert main(["simulate", "-q", "--output", str(a_file)]) == 2
    assert f"--output '{a_file}' is a file" in one_line_error(capsys.readouterr().err)


def test_existing_results_are_kept_unless_overwrite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    (tmp_path / "results.json").write_text('{"kept": true}')
    calls: list[object] = []

    def simulation_stops(config: object, **_kwargs: object) -> None:
        calls.append(config)
        raise FederationError("stopped by the test")

    monkeypatch.setattr("mmbind.lab.simulate.simulate", simulation_stops)
    # Execute
    refused = main(["simulate", "-q", "--output", str(tmp_path)])
    refused_err = capsys.readouterr().err
    allowed = main(["simulate", "-q", "--output", str(tmp_path), "--overwrite"])
    # Assert
    assert refused == 2
    assert "results.json already exists; pass --overwrite" in one_line_error(refused_err)
    assert allowed == FederationError.exit_code and len(calls) == 1
    assert json.loads((tmp_path / "results.json").read_text()) == {"kept": True}


def test_simulation_workers_log_only_flower_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: no FLWR_LOG_LEVEL of the user's (restored afterwards); Ray is not started
    monkeypatch.setenv("FLWR_LOG_LEVEL", "unset-by-the-test")
    monkeypatch.delenv("FLWR_LOG_LEVEL")
    seen: dict[str, str | None] = {}

    def run_simulation(**_kwargs: object) -> None:
        seen["level"] = os.environ.get("FLWR_LOG_LEVEL")  # what the Ray workers inherit

    monkeypatch.setattr("flwr.simulation.run_simulation", run_simulation)
    # Execute
    code = main(["simulate", "-q", "--output", str(tmp_path)])
    # Assert: the actors' shutdown warnings stay out of the output, errors do not
    assert seen == {"level": "ERROR"}
    assert code == FederationError.exit_code  # the fake ran nothing: no results
    assert "ended without results" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "MMBIND_NUM_CPUS must be >= 0 (0 = all cores), got -1"),  # Ray hung on it
        ("abc", "invalid MMBIND_NUM_CPUS='abc': Input should be a valid integer"),
    ],
)
@pytest.mark.parametrize("command", ["simulate", "experiment"])
def test_bad_num_cpus_from_the_environment_is_refused_before_any_work(
    simulation_forbidden: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    value: str,
    message: str,
) -> None:
    # Prepare
    monkeypatch.setenv("MMBIND_NUM_CPUS", value)
    # Execute
    code = main([command, "-q", "--output", str(tmp_path / "out")])
    # Assert
    assert code == 2
    assert message in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
