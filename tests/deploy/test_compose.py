"""docker-compose.yml: valid syntax and the topology the README promises.

No Docker engine runs on CI machines; the file is checked with Debian's
docker-compose ``config`` (which parses and validates without an engine), and
the same topology runs as processes in ``test_deployment.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from host_tools import system_tool_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the PYTHONPATH Flower's Ray backend leaves behind after an in-process
    # simulation (this interpreter's sys.path: the venv's requests, urllib3, ...)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    # Execute: Debian's docker-compose (a /usr/bin/python3 script) in a clean environment
    proc = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, cwd=ROOT, check=False, env=system_tool_env(),
    )  # fmt: skip
    # Assert
    assert proc.returncode == 0, proc.stderr


def test_compose_topology() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"redis", "coordinator", "runner"} <= set(services)
    assert services["coordinator"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"]
    nodes = {k: v for k, v in services.items() if k.startswith("node-")}
    subsets = set()
    for node in nodes.values():
        args = node["command"]
        subsets.add(args[args.index("--modalities") + 1])
        assert any("/data:ro" in v for v in node["volumes"])
    assert {"acc,skeleton", "acc,gyro", "skeleton,gyro"} <= subsets
    # the secure path: certificates made once into a volume, every process given its folder
    assert "mmbind certs init" in " ".join(services["certs"]["command"])
    assert "certs" in yaml.safe_load(COMPOSE.read_text())["volumes"]
    coordinator = services["coordinator"]["command"]
    assert coordinator[coordinator.index("--certs") + 1] == "/certs/coordinator"
    assert "--insecure" not in coordinator
    for name, node in nodes.items():
        args = node["command"]
        assert args[args.index("--certs") + 1] == f"/certs/nodes/{args[args.index('--name') + 1]}"
        assert node["depends_on"]["register"]["condition"] == "service_completed_successfully"
        assert "--insecure" not in args, name
    runner = services["runner"]["command"]
    assert runner[runner.index("--certs") + 1] == "/certs/operator"
    for dockerfile in ("coordinator", "node", "runner"):
        text = (ROOT / "deploy" / f"{dockerfile}.Dockerfile").read_text()
        assert text.startswith("#") and "FROM flwr/" in text and ":1.42.0" in text
