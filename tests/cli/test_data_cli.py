"""``mmbind data`` and ``--dataset DIR`` / ``--layout`` from the command lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from mmbind.client.cli import main as client_main
from mmbind.client.data.export import export_synthetic
from mmbind.client.data.folder_writer import DatasetWriter
from mmbind.client.data.recording import Recording
from mmbind.dataset_manifest import DatasetManifest, ModalityEntry, Windowing
from mmbind.lab.simulate import simulate
from mmbind.modalities import Modality
from mmbind.run_config import RunConfig
from mmbind.server.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "own-sensors"


def _lab_folder(root: Path) -> Path:
    manifest = DatasetManifest(
        "lab",
        ("rest", "walk"),
        (
            ModalityEntry(Modality("wrist_acc", 3, 50.0, 25, "g"), ("x", "y", "z")),
            ModalityEntry(Modality("ecg", 1, 100.0, 50, "mV"), ("lead1",)),
        ),
        Windowing("window"),
    )
    rng = np.random.default_rng(0)
    with DatasetWriter(root, manifest) as writer:
        for subject in (1, 2, 3):
            for label in (0, 1):
                signals = {"wrist_acc": rng.normal(size=(25, 3)), "ecg": rng.normal(size=(50, 1))}
                writer.add(Recording(subject, 1, signals, label=label), f"r{label}")
    return root


def test_export_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    exported = main(["data", "export", "synthetic", str(tmp_path / "syn"), "--seed", "1"])
    checked = main(["data", "check", str(tmp_path / "syn")])
    again = main(["data", "export", "synthetic", str(tmp_path / "syn")])

    # Assert
    out, err = capsys.readouterr()
    assert (exported, checked) == (0, 0)
    assert "subjects: 8, recordings: 288" in out and "windows per modality: acc 288" in out
    assert again == 2 and "already exists and is not empty" in err
    assert len(err.strip().splitlines()) == 1


def test_check_reports_nan_runs_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a recording with two NaN runs, written behind the writer's back
    folder = _lab_folder(tmp_path / "lab")
    path = folder / "recordings" / "subject-2" / "r0.npz"
    ecg = np.ones((50, 1))
    ecg[3:5] = np.nan
    ecg[10:17] = np.nan
    np.savez(path, subject=2, trial=1, label=0, ecg=ecg, wrist_acc=np.zeros((25, 3)))

    # Execute
    code = main(["data", "check", str(folder)])

    # Assert
    out = capsys.readouterr().out
    assert code == 3
    assert "ecg has 2 NaN/inf runs (9 samples; longest 7 from sample 10)" in out
    assert "wrist_acc channels x, y, z are constant" in out


def test_import_table_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    rows = ["subject,activity,v"] + [
        f"{1 + i // 40},{'a' if i % 40 < 20 else 'b'},{i}" for i in range(80)
    ]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    mapping = {
        "name": "t",
        "classes": ["a", "b"],
        "table": {"subject": "subject", "label": "activity", "rate_hz": 10.0},
        "windowing": {"mode": "whole"},
        "modalities": {"v": {"columns": ["v"], "unit": "1", "window": 8}},
    }
    (tmp_path / "m.toml").write_text(tomli_w.dumps(mapping))

    # Execute
    code = main(
        ["data", "import", "table", str(tmp_path / "t.csv"), str(tmp_path / "out"),
         "--mapping", str(tmp_path / "m.toml")]
    )  # fmt: skip

    # Assert
    assert code == 0 and "subjects: 2, recordings: 4" in capsys.readouterr().out


def test_client_reads_a_folder_with_its_own_modalities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: subject 2's files are corrupt; the node holds subject 1 only
    folder = _lab_folder(tmp_path / "lab")
    for p in (folder / "recordings" / "subject-2").iterdir():
        p.write_bytes(b"corrupt")

    # Execute
    code = client_main(
        ["--superlink", "127.0.0.1:9093", "--check", "--dataset", str(folder),
         "--modalities", "wrist_acc,ecg", "--subjects", "1", "--labelled"]
    )  # fmt: skip

    # Assert
    assert code == 0
    assert "2 samples of wrist_acc, ecg (labelled)" in capsys.readouterr().err


def test_simulate_refuses_a_layout_that_cannot_bind_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the two training nodes share no modality
    def no_simulation(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the simulation started; the error should have come first")

    monkeypatch.setattr("mmbind.lab.simulate.simulate", no_simulation)
    folder = _lab_folder(tmp_path / "lab")
    layout = {
        "shared_modality": "wrist_acc",
        "nodes": [
            {"name": "a", "modalities": ["wrist_acc"], "subjects": [1]},
            {"name": "b", "modalities": ["ecg"], "subjects": [2], "labelled": True},
            {"name": "t", "modalities": ["ecg"], "subjects": [3], "test": True},
        ],
    }
    (tmp_path / "layout.toml").write_text(tomli_w.dumps(layout))

    # Execute
    code = main(
        ["simulate", "-q", "--dataset", str(folder), "--layout", str(tmp_path / "layout.toml"),
         "--output", str(tmp_path / "out")]
    )  # fmt: skip

    # Assert: refused before anything ran (no output folder, one line)
    err = capsys.readouterr().err.strip()
    assert code == 4 and len(err.splitlines()) == 1 and err.startswith("mmbind: error:")
    assert "1 training node(s) hold the shared modality 'wrist_acc'" in err
    assert not (tmp_path / "out" / "results.json").exists()


# --- real simulations ----------------------------------------------------------------------

TINY = {
    "seed": 3,
    "pretrain_rounds": 2,
    "pretrain_epochs": 1,
    "align_rounds": 2,
    "align_epochs": 1,
    "finetune_epochs": 3,
    "synthetic_trials": 2,
    "methods": "mmbind,lower_bound,upper_bound",
}


@pytest.mark.integration
def test_the_synthetic_set_exported_simulates_to_the_recorded_fingerprint(tmp_path: Path) -> None:
    # Prepare: the tiny run's data (seed 3, 2 trials) as a folder
    from test_determinism import RECORD, _close, fingerprint  # tests/cli, beside this file
    from test_determinism import TINY as RECORDED  # the recorded run's recipe and methods

    folder = export_synthetic(
        tmp_path / "syn", trials=int(RECORDED["synthetic_trials"]), seed=int(RECORDED["seed"])
    )

    # Execute
    results = simulate(RunConfig.from_mapping({**RECORDED, "dataset": str(folder)}), num_cpus=2)

    # Assert: the figures of --dataset synthetic, as recorded
    problems: list[str] = []
    _close(fingerprint(results), json.loads(RECORD.read_text()), "results", problems)
    assert not problems, problems[:10]


@pytest.mark.integration
def test_own_sensors_csv_to_a_layout_run_in_three_commands(tmp_path: Path) -> None:
    # Prepare: the demo CSV
    csv = tmp_path / "demo.csv"
    subprocess.run(
        [sys.executable, str(EXAMPLE / "make_demo_csv.py"), str(csv)], check=True, cwd=tmp_path
    )
    own = tmp_path / "own"
    tiny = [
        f"-c{k.replace('_', '-')}={v}"
        for k, v in TINY.items()
        if k not in ("seed", "synthetic_trials")
    ]

    # Execute: the README's three commands
    imported = main(
        ["data", "import", "table", str(csv), str(own), "--mapping", str(EXAMPLE / "mapping.toml")]
    )
    checked = main(["data", "check", str(own)])
    simulated = main(
        ["simulate", "-q", "--dataset", str(own), "--layout", str(EXAMPLE / "layout.toml"),
         "--output", str(tmp_path / "out"), *tiny]
    )  # fmt: skip

    # Assert
    assert (imported, checked, simulated) == (0, 0, 0)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted(n["role"] for n in results["nodes"]) == [
        "camera-room", "clinic", "held-out", "wristband"
    ]  # fmt: skip
    assert results["binding"]["pairs"] > 0
    assert set(results["methods"]) == {"mmbind", "lower_bound", "upper_bound"}


def test_experiment_refuses_a_layout_that_cannot_bind_before_any_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    def no_cells(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a cell ran; the error should have come first")

    monkeypatch.setattr("mmbind.lab.experiment.run_experiment", no_cells)
    layout = {
        "shared_modality": "acc",
        "nodes": [
            {"name": "a", "modalities": ["acc", "gyro"], "subjects": [1, 2]},
            {"name": "c", "modalities": ["gyro", "skeleton"], "subjects": [3], "labelled": True},
            {"name": "t", "modalities": ["skeleton"], "subjects": [4], "test": True},
        ],
    }
    (tmp_path / "layout.toml").write_text(tomli_w.dumps(layout))

    # Execute
    code = main(
        ["experiment", "-q", "--output", str(tmp_path / "exp"), "--layout",
         str(tmp_path / "layout.toml"), "--label-budgets", "10"]
    )  # fmt: skip

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 4 and len(err.splitlines()) == 1
    assert "1 training node(s) hold the shared modality 'acc'" in err


def test_the_report_describes_a_layout_experiment_by_its_nodes() -> None:
    from mmbind.lab.report.sections import protocol_section

    lines = protocol_section({"dataset": "utd-mhad", "config": {"layout": "paper"}, "grid": {}})
    text = "\n".join(lines)
    assert "nodes from the layout `paper`" in text
    assert "| C | skeleton+gyro | {5, 6} | yes | yes |" in text
    assert "| test | skeleton+gyro | {7, 8} | for scoring only | no (evaluation only) |" in text
    assert "Shared modality: `acc`" in text


def test_client_modalities_default_to_the_data_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _lab_folder(tmp_path / "lab")
    code = client_main(
        ["--superlink", "127.0.0.1:9093", "--check", "--dataset", str(folder), "--subjects", "2"]
    )
    assert code == 0 and "2 samples of wrist_acc, ecg" in capsys.readouterr().err
    assert client_main(["--superlink", "127.0.0.1:9093", "--check"]) == 2
    assert "--modalities is required" in capsys.readouterr().err


def test_experiment_over_several_layouts_checks_them_all_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the second layout cannot run; no cell of the first may start
    ran: list[Path] = []
    monkeypatch.setattr(
        "mmbind.lab.experiment.run_experiment", lambda grid, folder, **kw: ran.append(folder)
    )
    bad = {
        "shared_modality": "acc",
        "nodes": [{"name": "a", "modalities": ["acc"], "subjects": [1]}],
    }
    (tmp_path / "bad.toml").write_text(tomli_w.dumps(bad))

    # Execute
    code = main(
        ["experiment", "-q", "--output", str(tmp_path / "exp"), "--layout",
         f"paper,{tmp_path / 'bad.toml'}", "--label-budgets", "10"]
    )  # fmt: skip

    # Assert
    assert code == 4 and "no labelled training node" in capsys.readouterr().err
    assert ran == [] and not (tmp_path / "exp").exists()
