"""A deployment whose nodes read a data set folder gives the built-in data set's figures.

Nodes started with ``mmbind-client --dataset DIR`` (the synthetic set exported to the format,
each node reading only its subjects' files) and nodes on ``--dataset synthetic``: the same run,
bit for bit. The same for UTD-MHAD exported to a folder against its built-in loader, where
``MMBIND_UTD_FOLDER_DEPLOY=1`` asks for it (two deployments on the real data: about 4.5 min on
2 cores, so not part of the default test command).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_harness import TINY, Deployment
from test_deployment import finish
from utd_mhad_files import UTD_DIR

from mmbind.client.data.export import export_synthetic, export_utd_mhad
from mmbind.dataset_manifest import MANIFEST_NAME
from mmbind.server.cli import main

pytestmark = pytest.mark.integration


def _figures(results: dict[str, object]) -> str:
    keep = {
        "methods": {
            k: {m: v[m] for m in ("accuracy", "macro_f1")}
            for k, v in results["methods"].items()  # type: ignore[attr-defined]
        },
        "binding": results["binding"],
        "history": results["history"],
    }
    return json.dumps(keep, sort_keys=True)


def test_nodes_on_an_exported_folder_give_the_builtin_figures(
    deployment: Deployment, tmp_path: Path, redis_url: str
) -> None:
    # Prepare: the synthetic set the nodes would generate (seed 0), as a folder
    folder = export_synthetic(tmp_path / "syn", trials=int(TINY["synthetic-trials"]), seed=0)
    runs = {}

    # Execute: the same run on built-in nodes, then on a second deployment's folder nodes
    deployment.start_server()
    deployment.start_nodes()
    code, _, err = finish(deployment.run("--methods", "mmbind,lower_bound", output=tmp_path / "a"))
    assert code == 0, err[-3000:]
    runs["builtin"] = json.loads((tmp_path / "a" / "results.json").read_text())
    deployment.close()
    (tmp_path / "b").mkdir()
    second = Deployment(tmp_path / "b", redis_url)
    try:
        second.start_server()
        second.start_nodes(node_args=("--dataset", str(folder)))
        code, _, err = finish(second.run("--methods", "mmbind,lower_bound", output=tmp_path / "c"))
        assert code == 0, err[-3000:]
        runs["folder"] = json.loads((tmp_path / "c" / "results.json").read_text())
    finally:
        second.close()

    # Assert
    assert runs["folder"]["engine"] == "deployment"
    assert _figures(runs["folder"]) == _figures(runs["builtin"])


@pytest.mark.skipif(
    os.environ.get("MMBIND_UTD_FOLDER_DEPLOY") != "1" or not (UTD_DIR / "Inertial").is_dir(),
    reason="MMBIND_UTD_FOLDER_DEPLOY=1 and UTD-MHAD (MMBIND_UTD_MHAD_DIR) run it (4.5 min)",
)
def test_utd_mhad_as_a_folder_deploys_to_the_builtin_loaders_figures(
    tmp_path: Path, redis_url: str
) -> None:
    # Prepare: UTD-MHAD's official files exported as a data set folder
    folder = export_utd_mhad(UTD_DIR, tmp_path / "utd")
    runs = {}
    # Execute: one deployment on the built-in loader, one on the folder
    for kind, node_args in (
        ("builtin", ("--dataset", "utd-mhad", "--data-dir", str(UTD_DIR))),
        ("folder", ("--dataset", str(folder))),
    ):
        (tmp_path / kind).mkdir()
        deployment = Deployment(tmp_path / kind, redis_url)
        try:
            deployment.start_server()
            deployment.start_nodes(node_args=node_args)
            proc = deployment.run("--methods", "mmbind,lower_bound", output=tmp_path / kind / "out")
            code, _, err = finish(proc)
            assert code == 0, err[-3000:]
        finally:
            deployment.close()
        runs[kind] = json.loads((tmp_path / kind / "out" / "results.json").read_text())
    # Assert: the same figures and every loss curve
    assert _figures(runs["folder"]) == _figures(runs["builtin"])


def test_a_deployment_on_modalities_of_its_own(deployment: Deployment, tmp_path: Path) -> None:
    # Prepare: the README's demo data set on the nodes; on the coordinator only its manifest
    repo = Path(__file__).resolve().parents[2]
    example = repo / "examples" / "own-sensors"
    csv = tmp_path / "demo.csv"
    subprocess.run([sys.executable, str(example / "make_demo_csv.py"), str(csv)], check=True)
    own = tmp_path / "own"
    assert (
        main(
            [
                "data",
                "import",
                "table",
                str(csv),
                str(own),
                "--mapping",
                str(example / "mapping.toml"),
            ]
        )
        == 0
    )
    coordinator = tmp_path / "coordinator"
    coordinator.mkdir()
    shutil.copy(own / MANIFEST_NAME, coordinator / MANIFEST_NAME)
    nodes = [
        ("wristband", "wrist_acc,wrist_gyro", "1,2", ()),
        ("camera-room", "wrist_acc,pose", "3,4", ()),
        ("clinic", "wrist_gyro,pose", "5,6", ("--labelled",)),
        ("held-out", "wrist_gyro,pose", "7,8", ("--test",)),
    ]

    # Execute
    deployment.start_server()
    deployment.start_nodes(nodes=nodes, node_args=("--dataset", str(own)))
    proc = deployment.run(
        "--methods", "mmbind,lower_bound", "-c", f"dataset={coordinator}",
        "-c", "shared-modality=wrist_acc", output=tmp_path / "out",
    )  # fmt: skip
    code, _, err = finish(proc)

    # Assert
    assert code == 0, err[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["engine"] == "deployment" and results["binding"]["pairs"] > 0
    held = {n["role"]: tuple(n["modalities"]) for n in results["nodes"]}
    assert held["camera-room"] == ("wrist_acc", "pose")
    assert "pretrain.pose" in results["history"]
