"""docker-compose.yml: valid syntax and the topology the README promises.

The file is checked with Debian's docker-compose ``config`` (which parses, interpolates and
validates without an engine) and read as YAML; ``test_compose_engine.py`` runs it in Docker,
and ``test_deployment.py`` runs the same topology as processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from host_tools import system_tool_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECURE = ROOT / "docker-compose.secure.yml"


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


def compose_config(*args: str, files: tuple[Path, ...] = (COMPOSE,)) -> dict[str, Any]:
    """``docker-compose config``: the files as compose resolves them (variables at defaults)."""
    env = {k: v for k, v in system_tool_env().items() if not k.startswith("MMBIND_")}
    proc = subprocess.run(
        ["docker-compose", *(x for f in files for x in ("-f", str(f))), *args, "config"],
        capture_output=True, text=True, cwd=ROOT, check=True, env=env,
    )  # fmt: skip
    config: dict[str, Any] = yaml.safe_load(proc.stdout)
    return config


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_every_published_port_is_on_loopback_by_default() -> None:
    # Execute
    services = compose_config("--profile", "simulate")["services"]
    # Assert: the coordinator publishes its two ports, each on 127.0.0.1; nothing else publishes
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"coordinator"}
    ports = [str(p) for p in published["coordinator"]]
    assert ports == ["127.0.0.1:9093:9093/tcp"]


def test_compose_topology() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"redis", "coordinator", "runner", "simulate"} <= set(services)
    assert services["coordinator"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"] and "healthcheck" in services["coordinator"]
    nodes = {k: v for k, v in services.items() if k.startswith("node-")}
    subsets, roles = set(), set()
    for node in nodes.values():
        args = node["command"].split()
        subsets.add(args[args.index("--modalities") + 1])
        roles.add(node["labels"]["mmbind.role"])
        assert args[args.index("--name") + 1] == node["labels"]["mmbind.role"]
        assert any(v.endswith(":/data:ro") for v in node["volumes"])
        assert node["depends_on"]["coordinator"]["condition"] == "service_healthy"
    assert {"acc,skeleton", "acc,gyro", "skeleton,gyro"} <= subsets
    assert roles == {"A", "B", "C", "test"}
    # plaintext on the compose network only because the file says --insecure (mmbind-server
    # and mmbind-client refuse a non-loopback address without certificates otherwise)
    assert "--insecure" in services["coordinator"]["command"]
    assert all("--insecure" in n["command"].split() for n in nodes.values())
    # the runner is an operator on the coordinator's machine: its network namespace, loopback
    assert services["runner"]["network_mode"] == "service:coordinator"
    assert "--superlink 127.0.0.1:9093" in services["runner"]["command"]
    # the runner writes results.json to a mounted folder and exits; simulate is a profile
    assert any(v.endswith(":/results") for v in services["runner"]["volumes"])
    assert services["runner"]["restart"] == "no"
    assert services["simulate"]["profiles"] == ["simulate"]
    assert "simulate" not in str(services["runner"]["command"])
    # one image, one Dockerfile, for every mmbind role
    mmbind = {k: v for k, v in services.items() if k != "redis"}
    assert {s["image"] for s in mmbind.values()} == {"${MMBIND_IMAGE:-mmbind:latest}"}
    assert {s["build"]["dockerfile"] for s in mmbind.values()} == {"deploy/Dockerfile"}


def test_dockerfile_builds_from_a_base_given_by_a_build_arg() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    froms = [line for line in lines if line.startswith("FROM ")]
    assert "ARG BASE=python:3.11-slim" in lines
    assert lines.index("ARG BASE=python:3.11-slim") < lines.index(froms[0])
    assert froms == ["FROM ${BASE} AS build", "FROM ${BASE}"]
    assert not list((ROOT / "deploy").glob("*.Dockerfile"))  # no per-role images left


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_the_secure_overlay_passes_certificates_everywhere_and_no_insecure() -> None:
    # Execute: docker-compose.yml with docker-compose.secure.yml, as compose merges them
    services = compose_config(files=(COMPOSE, SECURE))["services"]

    # Assert: nothing plaintext; each process gets its own folder of the one made by `certs`
    def command(name: str) -> str:
        cmd = services[name]["command"]
        return cmd if isinstance(cmd, str) else " ".join(cmd)

    assert all("--insecure" not in command(name) for name in services)
    assert "--certs /certs/deploy/coordinator" in command("coordinator")
    assert "--certs /certs/deploy/operator" in command("runner")
    nodes = {k: v for k, v in services.items() if k.startswith("node-")}
    for name, node in nodes.items():
        role = node["labels"]["mmbind.role"]
        assert f"--certs /certs/deploy/nodes/{role}" in command(name)
        # a node starts once its key is registered, and still after the coordinator is healthy
        assert node["depends_on"]["register"]["condition"] == "service_completed_successfully"
        assert node["depends_on"]["coordinator"]["condition"] == "service_healthy"
        assert "mmbind-certs:/certs:ro" in node["volumes"]
    # ... keys made for exactly these nodes
    roles = ",".join(n["labels"]["mmbind.role"] for n in nodes.values())
    assert f"--nodes {roles}" in command("certs") and roles == "A,B,C,test"
    # Redis wants the password the coordinator reads from a file, never from its URL
    assert "/certs/deploy/redis/redis.conf" in command("redis")
    coordinator = services["coordinator"]
    assert coordinator["environment"]["MMBIND_REDIS_PASSWORD_FILE"].endswith("redis.password")
    assert "@" not in command("coordinator").split("--redis-url ")[1].split()[0]
    # the one-shots run once per start, and only the coordinator publishes (on loopback)
    assert services["register"]["network_mode"] == "service:coordinator"
    assert {n for n, s in services.items() if s.get("ports")} == {"coordinator"}
    assert [str(p) for p in coordinator["ports"]] == ["127.0.0.1:9093:9093/tcp"]
