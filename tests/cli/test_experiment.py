"""``mmbind experiment``: the grid, its resumability, results.json, report.md and PNGs.

Most tests replace the simulation by a seeded fake (``simulate`` and
``run_centralised`` are looked up when a cell runs), so the grid logic runs in
milliseconds; one integration test runs the real simulation engine on a tiny grid.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmbind.run_config import RunConfig
from mmbind.server.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [
    "-c", "pretrain-rounds=1", "-c", "pretrain-epochs=1",
    "-c", "align-rounds=1", "-c", "align-epochs=1",
    "-c", "finetune-epochs=2", "-c", "synthetic-trials=2",
]  # fmt: skip
METHODS = "mmbind,lower_bound,upper_bound"


def _fake_value(config: RunConfig, name: str, what: str, budget: int | None = None) -> float:
    """A seeded number in [0, 1) for one method's metric of one cell."""
    budget = config.label_budget if budget is None else budget
    cell = (config.seed, config.split, config.nodes_per_role, budget)
    key = f"{cell}/{name}/{what}"
    return round(random.Random(key).random(), 6)


class FakeSimulation:
    """Stands in for ``simulate``: records its calls, returns a results document."""

    def __init__(self, *, diagnostics: bool = True) -> None:
        self.calls: list[RunConfig] = []
        self.diagnostics = diagnostics

    def __call__(self, config: RunConfig, *, num_cpus: int = 0, progress: Any = None) -> Any:
        self.calls.append(config)
        binding: dict[str, Any] = {
            "pairs": 48,
            "pairing_accuracy": _fake_value(config, "binding", "pairing"),
            "mean_similarity": _fake_value(config, "binding", "similarity"),
        }
        history: dict[str, list[float]] = {}
        if self.diagnostics:
            binding["class_similarity"] = [[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.0, 0.1, 0.7]]
            binding["pairing_confusion"] = [[10, 2, 0], [1, 12, 3], [0, 2, 14]]
            history = {"own.pretrain.acc": [1.0, 0.7], "mmbind.align.loss": [5.0, 4.5, 4.2]}
        doc: dict[str, Any] = {
            "dataset": config.dataset,
            "engine": "simulation",
            "methods": {
                m: {
                    "accuracy": _fake_value(config, m, "accuracy"),
                    "macro_f1": _fake_value(config, m, "f1"),
                    "seconds": 1.0,
                }
                for m in config.methods
            },
            "binding": binding if "mmbind" in config.methods else {"pairs": 0},
            "phases": {"pretrain": {"seconds": 1.0}},
            "wall_seconds": 2.5,
            "nodes": [
                {"role": "C", "num_samples": 24, "labelled": True, "trains": True},
                {"role": "test", "num_samples": 24, "labelled": True, "trains": False},
            ],
            "history": history,
            "config": config.to_flower(),
        }
        if config.label_budgets:  # one run, several budgets fine-tuned from the same models
            doc["label_budgets"] = {
                str(b): {
                    m: {
                        "accuracy": _fake_value(config, m, "accuracy", b),
                        "macro_f1": _fake_value(config, m, "f1", b),
                    }
                    for m in config.methods
                }
                for b in config.label_budgets
            }
        return doc


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSimulation:
    sim = FakeSimulation()
    monkeypatch.setattr("mmbind.lab.simulate.simulate", sim)
    return sim


def experiment(out: Path, *args: str) -> list[str]:
    return ["experiment", "-q", "--output", str(out), *args]


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mmbind: error:")
    return lines[0]


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "cells").glob("*.json"))}


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    assert matplotlib.image.imread(path).ndim == 3  # decodes as an image


def test_grid_writes_means_stds_runs_report_and_pngs(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: 2 seeds x 1 budget x 1 split
    code = main(
        experiment(tmp_path, "--methods", METHODS, "--seeds", "2", "--label-budgets", "6", *TINY)
    )
    # Assert
    assert code == 0, capsys.readouterr().err
    assert len(fake.calls) == 2
    assert {c.seed for c in fake.calls} == {0, 1}
    assert all(c.label_budget == 6 and c.pretrain_rounds == 1 for c in fake.calls)
    assert all(set(c.methods) == set(METHODS.split(",")) for c in fake.calls)  # one call each
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["engine"] == "simulation" and results["dataset"] == "synthetic"
    for name in METHODS.split(","):
        m = results["methods"][name]
        accs = [_fake_value(c, name, "accuracy") for c in fake.calls]
        assert m["runs"] == 2
        assert m["accuracy"] == pytest.approx(statistics.fmean(accs), abs=1e-6)
        assert m["accuracy_std"] == pytest.approx(statistics.stdev(accs), abs=1e-6)
        assert m["macro_f1_std"] is not None
        assert results["label_budgets"]["6"]["methods"][name] == m
    assert results["binding"]["runs"] == 2
    assert results["label_budgets"]["6"]["labelled_samples"] == [6]
    assert [c["key"] for c in results["cells"]] == [
        "budget6_split0_seed0_npr1",
        "budget6_split0_seed1_npr1",
    ]
    assert results["grid"]["seeds"] == [0, 1]
    assert results["paper"]["table3"]["mmbind"]["accuracy"] == pytest.approx(0.7886)
    assert "nodes_per_role" not in results
    report = (tmp_path / "report.md").read_text()
    for heading in ("Ours vs the paper", "Protocol", "Label budgets", "Test score", "Wall time"):
        assert heading in report
    assert "78.86" in report and "{1, 2} | {3, 4} | {5, 6} | {7, 8}" in report
    for png in ("accuracy_vs_budget", "class_similarity", "pairing_confusion", "training_curves"):
        assert_png(tmp_path / f"{png}.png")
        assert f"]({png}.png)" in report
    assert "Only one value (1) was run" in report
    assert not (tmp_path / "nodes_per_role.png").exists()
    assert "2 run, 0 reused" in capsys.readouterr().out


def test_repeating_the_command_runs_no_cell_again(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    args = experiment(tmp_path, "--methods", METHODS, "--seeds", "2", "--label-budgets", "6")
    assert main(args) == 0
    before = mtimes(tmp_path)
    capsys.readouterr()
    # Execute
    assert main(args) == 0
    # Assert
    assert len(fake.calls) == 2
    assert mtimes(tmp_path) == before and len(before) == 2
    assert "0 run, 2 reused" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["methods"]["mmbind"]["runs"] == 2


def test_a_grown_grid_runs_only_the_missing_cells_and_methods(
    tmp_path: Path, fake: FakeSimulation
) -> None:
    # Prepare: one seed, MMBind only
    assert main(experiment(tmp_path, "--methods", "mmbind", "--label-budgets", "6")) == 0
    first = mtimes(tmp_path)
    grown = ["--methods", "mmbind,lower_bound", "--seeds", "2", "--label-budgets", "6"]
    # Execute: a second seed and a second method
    assert main(experiment(tmp_path, *grown)) == 0
    # Assert: seed 0 ran only lower_bound; seed 1 ran both in one call
    assert [(c.seed, c.methods) for c in fake.calls] == [
        (0, ("mmbind",)),
        (0, ("lower_bound",)),
        (1, ("mmbind", "lower_bound")),
    ]
    cell = json.loads((tmp_path / "cells" / "budget6_split0_seed0_npr1.json").read_text())
    assert set(cell["methods"]) == {"mmbind", "lower_bound"}
    assert cell["binding"]["pairs"] == 48  # kept from the MMBind run
    key = "budget6_split0_seed0_npr1.json"
    assert mtimes(tmp_path)[key] != first[key]  # merged and rewritten


def test_a_cell_with_another_recipe_is_an_error_unless_fresh(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    base = experiment(
        tmp_path, "--methods", "mmbind", "--label-budgets", "6", "-c", "align-epochs=1"
    )
    assert main(base) == 0
    capsys.readouterr()
    changed = [*base[:-1], "align-epochs=2"]
    # Execute
    code = main(changed)
    # Assert
    line = one_line_error(capsys.readouterr().err)
    assert code == 2
    assert "budget6_split0_seed0_npr1" in line and "align-epochs: 1 -> 2" in line
    assert "--fresh" in line
    assert len(fake.calls) == 1
    # Execute: --fresh runs it again with the new recipe
    assert main([*changed, "--fresh"]) == 0
    assert [c.align_epochs for c in fake.calls] == [1, 2]


def test_a_corrupt_cell_file_is_a_clear_error(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    args = experiment(tmp_path, "--methods", "mmbind", "--label-budgets", "6")
    assert main(args) == 0
    cell = tmp_path / "cells" / "budget6_split0_seed0_npr1.json"
    cell.write_text('{"methods": {"mmbind": {"accur')
    capsys.readouterr()
    # Execute
    code = main(args)
    # Assert: named, not silently overwritten
    line = one_line_error(capsys.readouterr().err)
    assert code == 3
    assert str(cell) in line and "corrupt" in line
    assert cell.read_text().startswith('{"methods"')
    # Execute: --fresh replaces it
    assert main([*args, "--fresh"]) == 0
    assert json.loads(cell.read_text())["cell"]["key"] == "budget6_split0_seed0_npr1"


def test_a_cell_file_of_the_wrong_shape_or_cell_is_a_clear_error(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: two recorded cells; one loses a metric, the other records its neighbour
    args = experiment(tmp_path, "--methods", "mmbind", "--label-budgets", "6,12")
    assert main(args) == 0
    six = tmp_path / "cells" / "budget6_split0_seed0_npr1.json"
    twelve = tmp_path / "cells" / "budget12_split0_seed0_npr1.json"
    doc = json.loads(six.read_text())
    del doc["methods"]["mmbind"]["macro_f1"]
    six.write_text(json.dumps(doc))
    capsys.readouterr()
    # Execute
    code = main(args)
    # Assert: the file and the field, on one line
    line = one_line_error(capsys.readouterr().err)
    assert code == 3
    assert f"cell file {six} is not a cell results document" in line
    assert "methods.mmbind.macro_f1: Field required" in line
    # Prepare: the neighbour's document under this cell's name
    six.write_text(twelve.read_text())
    # Execute
    code = main(args)
    # Assert
    line = one_line_error(capsys.readouterr().err)
    assert code == 3
    assert f"cell file {six} records cell" in line and "not budget6_split0_seed0_npr1" in line


def test_nodes_per_role_and_centralised_sections(
    tmp_path: Path, fake: FakeSimulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a fake centralised run
    pytest.importorskip("mmbind.lab.centralised")
    central_calls: list[RunConfig] = []

    def run_centralised(config: RunConfig, *, progress: Any = None) -> dict[str, Any]:
        central_calls.append(config)
        return {
            "accuracy": 0.5,
            "macro_f1": 0.4,
            "test_samples": 24.0,
            "seconds": 1.0,
            "binding": {"pairs": 48, "pairing_accuracy": 0.6, "mean_similarity": 0.7},
            "history": {"centralised.pretrain.acc": [1.0, 0.5]},
        }

    monkeypatch.setattr("mmbind.lab.centralised.run_centralised", run_centralised)
    # Execute
    code = main(
        experiment(
            tmp_path,
            "--methods",
            "mmbind,mmbind_centralised",
            "--label-budgets",
            "6,3",
            "--nodes-per-role",
            "1,2",
        )
    )
    # Assert
    assert code == 0
    # one simulation per nodes-per-role value serves both budgets; the centralised run
    # is made at the headline budget only
    assert [(c.nodes_per_role, c.label_budget, c.label_budgets) for c in fake.calls] == [
        (1, 6, (6, 3)),
        (2, 6, (6, 3)),
    ]
    assert {(c.nodes_per_role, c.label_budget) for c in central_calls} == {(1, 6), (2, 6)}
    results = json.loads((tmp_path / "results.json").read_text())
    budget3 = results["label_budgets"]["3"]["methods"]["mmbind"]["accuracy"]
    assert budget3 == pytest.approx(_fake_value(fake.calls[0], "mmbind", "accuracy", 3))
    assert results["methods"]["mmbind_centralised"]["accuracy"] == pytest.approx(0.5)
    assert results["methods"]["mmbind_centralised"]["accuracy_std"] is None  # one run
    assert results["binding_centralised"]["pairing_accuracy"] == pytest.approx(0.6)
    assert set(results["nodes_per_role"]) == {"1", "2"}
    assert set(results["nodes_per_role"]["2"]["label_budgets"]) == {"6", "3"}
    report = (tmp_path / "report.md").read_text()
    assert "| 6 | " in report and "gap (pp)" in report
    assert "| 2 | 8 |" in report  # 2 nodes per role = 8 nodes
    assert_png(tmp_path / "nodes_per_role.png")


def test_report_skips_figures_whose_data_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a workflow that reports no diagnostics and no history
    monkeypatch.setattr("mmbind.lab.simulate.simulate", FakeSimulation(diagnostics=False))
    # Execute
    assert main(experiment(tmp_path, "--methods", "lower_bound", "--label-budgets", "6")) == 0
    # Assert
    report = (tmp_path / "report.md").read_text()
    for png in ("class_similarity", "pairing_confusion", "training_curves"):
        assert f"`{png}.png` skipped" in report
        assert not (tmp_path / f"{png}.png").exists()
    assert_png(tmp_path / "accuracy_vs_budget.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "mmbind,foo"], "unknown method 'foo'; valid methods: lower_bound,"),
        (["--label-budgets", "216,x"], "label budgets must be integers"),
        (["--label-budgets", "0"], "label budgets must be integers >= 1, got '0'"),
        (["--label-budgets", "54,54"], "54 is listed twice"),
        (["--seeds", "0"], "--seeds must be an integer >= 1"),
        (["--splits", "0"], "--splits must be an integer >= 1"),
        (["--splits", "5"], "split 4 would repeat split 0"),
        (["--nodes-per-role", "0"], "nodes per role must be integers >= 1"),
        (["-c", "seed=3"], "use --seeds instead"),
        (["-c", "align-rounds=-1"], "align-rounds"),
        (["--num-cpus", "-1"], "--num-cpus must be >= 0"),
        (["--methods", ","], "--methods: give at least one of lower_bound,"),
        (["--seeds", "-1"], "--seeds must be an integer >= 1, got -1"),
        (["-c", "weighting=foo"], "weighting='foo': weighting must be one of "),
        (["-c", "split=5"], "use --splits instead"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path,
    fake: FakeSimulation,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    # Execute
    code = main(experiment(tmp_path, *args))
    # Assert
    assert code == 2
    assert message in one_line_error(capsys.readouterr().err)
    assert not fake.calls and not (tmp_path / "cells").exists()


@pytest.mark.integration
def test_tiny_grid_on_the_simulation_engine_is_resumable(tmp_path: Path) -> None:
    # Prepare
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "MMBIND_LOG_LEVEL": "WARNING"}
    args = [
        sys.executable,
        "-m",
        "mmbind.server.cli",
        *experiment(tmp_path),
        "--methods",
        METHODS,
        "--seeds",
        "2",
        "--label-budgets",
        "6,3",
        *TINY,
    ]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=600, env=env, check=False
        )

    # Execute
    first = run()
    # Assert
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 run, 0 reused" in first.stdout  # 2 seeds x 2 budgets, one simulation per seed
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["label_budgets"]["3"]["methods"]["mmbind"]["runs"] == 2
    for name in METHODS.split(","):
        m = results["methods"][name]
        assert m["runs"] == 2 and 0.0 <= m["accuracy"] <= 1.0 and m["accuracy_std"] >= 0.0
    assert 0.0 <= results["binding"]["pairing_accuracy"] <= 1.0
    for png in ("accuracy_vs_budget", "training_curves"):
        assert_png(tmp_path / f"{png}.png")
    assert (tmp_path / "report.md").stat().st_size > 0
    before = mtimes(tmp_path)
    # Execute: the same command again
    again = run()
    # Assert
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 run, 4 reused" in again.stdout
    assert mtimes(tmp_path) == before


def test_an_output_that_cannot_be_written_is_refused_before_any_cell(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    a_file = tmp_path / "hostname"
    a_file.write_text("x")
    # Execute, Assert
    assert main(experiment(Path("/proc/mmbind-x"), *TINY)) == 2
    assert "--output '/proc/mmbind-x' cannot be created" in one_line_error(capsys.readouterr().err)
    assert main(experiment(a_file, *TINY)) == 2
    assert f"--output '{a_file}' is a file" in one_line_error(capsys.readouterr().err)
    assert not fake.calls


def test_dev_protocol_runs_six_loso_folds_and_compares_paired_with_a_baseline(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the baseline recipe on the dev protocol
    base, new = tmp_path / "base", tmp_path / "new"
    dev = ["--protocol", "dev-loso", "--splits", "6", "--methods", METHODS, "--label-budgets", "6"]
    dev += TINY
    assert main(experiment(base, *dev)) == 0, capsys.readouterr().err

    # Execute: another recipe on the same cells, compared with the baseline
    code = main(experiment(new, *dev, "-c", "align-epochs=3", "--compare", str(base)))

    # Assert
    assert code == 0, capsys.readouterr().err
    assert sorted(c.split for c in fake.calls) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert all(c.protocol == "dev-loso" for c in fake.calls)
    results = json.loads((new / "results.json").read_text())
    assert results["grid"]["protocol"] == "dev-loso"
    comparison = results["comparison"]
    assert comparison["recipe_differences"] == ["align-epochs: 1 -> 3"]
    base_docs = {p.stem: json.loads(p.read_text()) for p in (base / "cells").glob("*.json")}
    new_docs = {p.stem: json.loads(p.read_text()) for p in (new / "cells").glob("*.json")}
    diffs = [
        new_docs[k]["methods"]["mmbind"]["accuracy"] - base_docs[k]["methods"]["mmbind"]["accuracy"]
        for k in new_docs
    ]
    acc = comparison["methods"]["mmbind"]["accuracy"]
    assert acc["runs"] == 6
    assert acc["mean"] == pytest.approx(statistics.fmean(diffs), abs=1e-6)
    assert acc["std"] == pytest.approx(statistics.stdev(diffs), abs=1e-6)
    assert acc["wins"] == sum(d > 0 for d in diffs) and acc["losses"] == sum(d < 0 for d in diffs)
    report = (new / "report.md").read_text()
    assert "Against another recipe" in report and "leave one subject out" in report.lower()
    assert "{2, 3} | {4, 5} | {6} | {1}" in report


def test_dev_protocol_refuses_a_seventh_fold_and_a_baseline_that_is_not_an_experiment(
    tmp_path: Path, fake: FakeSimulation, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(experiment(tmp_path / "a", "--protocol", "dev-loso", "--splits", "7")) == 2
    assert "has 6 splits" in one_line_error(capsys.readouterr().err)
    code = main(experiment(tmp_path / "b", *TINY, "--compare", str(tmp_path / "nothing")))
    assert code != 0
    assert "not an experiment folder" in one_line_error(capsys.readouterr().err)
    assert not fake.calls


@pytest.mark.integration
def test_tiny_dev_protocol_on_the_simulation_engine(tmp_path: Path) -> None:
    # Prepare: the development protocol's first two folds, synthetic data, a tiny recipe
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "MMBIND_LOG_LEVEL": "WARNING"}
    dev = ["--protocol", "dev-loso", "--splits", "2", "--label-budgets", "6"]
    dev += ["--methods", "mmbind,lower_bound", *TINY]

    def run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "mmbind.server.cli", *experiment(out, *dev, *extra)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)

    # Execute
    base = run(tmp_path / "base")
    new = run(tmp_path / "new", "-c", "normalization=channel", "--compare", str(tmp_path / "base"))

    # Assert
    assert base.returncode == 0, base.stderr[-3000:]
    assert new.returncode == 0, new.stderr[-3000:]
    results = json.loads((tmp_path / "new" / "results.json").read_text())
    acc = results["comparison"]["methods"]["mmbind"]["accuracy"]
    assert acc["runs"] == 2 and acc["wins"] + acc["losses"] + acc["ties"] == 2
    assert results["comparison"]["recipe_differences"] == ["normalization: 'axis' -> 'channel'"]
    assert "Against another recipe" in (tmp_path / "new" / "report.md").read_text()
