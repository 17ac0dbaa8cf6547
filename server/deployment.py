"""``mmbind run``: submit the pipeline to a running coordinator and collect its results.

The run is a Flower run on the coordinator's SuperLink (``flwr run``), with the
ServerApp talking to the coordinator's BindingService. Progress comes back as
the run's event log (streamed from the BindingService), and the results document
the ServerApp stored there is written to ``OUTPUT/results.json``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import tomli_w

from mmbind.errors import ConfigError, FederationError, StoreError
from mmbind.processes import parse_address
from mmbind.run_config import RunConfig
from mmbind.server.results import write_results
from mmbind.server.store import END_EVENT
from mmbind.server.workflow import Progress

log = logging.getLogger(__name__)

CONNECTION = "mmbind"


def default_binding_address(superlink: str) -> str:
    """The BindingService next to a SuperLink: same host, port + 1 (mmbind-server's default)."""
    host, port = parse_address(superlink, "--superlink")
    return f"{host}:{port + 1}"


def write_app(folder: Path, defaults: dict[str, Any]) -> Path:
    """A minimal Flower app folder whose components are the installed mmbind apps.

    The SuperLink runs with runtime dependency installation disabled, so the
    bundle carries only its ``pyproject.toml``; the code is mmbind as installed
    on the coordinator and the nodes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    project = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {
            "name": "mmbind-app",
            "version": "0.1.0",
            "description": "Federated MMBind pipeline (installed mmbind)",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "mmbind",
                    "components": {
                        "serverapp": "mmbind.server.app:app",
                        "clientapp": "mmbind.client.app:app",
                    },
                    "config": defaults,
                }
            }
        },
    }
    (folder / "pyproject.toml").write_text(tomli_w.dumps(project))
    return folder


def write_flower_home(folder: Path, superlink: str) -> Path:
    """A ``FLWR_HOME`` whose config.toml names the coordinator's SuperLink."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "superlink": {"default": CONNECTION, CONNECTION: {"address": superlink, "insecure": True}}
    }
    (folder / "config.toml").write_text(tomli_w.dumps(config))
    return folder


def submit(superlink: str, overrides: dict[str, Any], workdir: Path) -> str:
    """Start the Flower run; return Flower's run id."""
    defaults = RunConfig().to_flower()
    app = write_app(workdir / "app", defaults)
    home = write_flower_home(workdir / "flwr-home", superlink)
    run_config = workdir / "run-config.toml"
    run_config.write_text(tomli_w.dumps(overrides))
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"}
    cmd = [
        sys.executable, "-m", "flwr.cli.app", "run", str(app), CONNECTION,
        "--run-config", str(run_config), "--format", "json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    text = proc.stdout.strip()
    try:
        reply = json.loads(text[text.index("{") :]) if "{" in text else {}
    except json.JSONDecodeError:
        reply = {}
    if proc.returncode != 0 or not reply.get("success", False):
        why = reply.get("error-message") or (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise FederationError(f"the SuperLink at {superlink} refused the run: {why}")
    return str(reply.get("run-id", ""))


def run_deployment(
    config: RunConfig,
    *,
    superlink: str,
    binding_service: str,
    output: Path,
    resume: str = "",
    progress: Progress | None = None,
    timeout: float = 6 * 3600.0,
    reconnect_seconds: float = 20.0,
) -> dict[str, Any]:
    """Submit the pipeline, follow its progress, write and return results.json's document."""
    from mmbind.server.remote import RemoteBindingStore, wait_until_ready

    parse_address(superlink, "--superlink")
    parse_address(binding_service, "--binding-service")
    wait_until_ready(binding_service, timeout=30)
    store = RemoteBindingStore(binding_service)
    run_id = resume or uuid.uuid4().hex[:12]
    if resume:
        checkpoint = store.checkpoint(run_id)
        if checkpoint is None:
            raise ConfigError(
                f"run {resume!r} has no checkpoint at {binding_service}; known runs: "
                f"{', '.join(store.runs()) or 'none'}"
            )
        # A resumed run goes on with the configuration it started with.
        config = RunConfig.from_flower({**config.to_flower(), **checkpoint.get("config", {})})
    attempt = uuid.uuid4().hex[:12]
    overrides = {
        **config.to_flower(),
        "run-id": run_id,
        "attempt": attempt,
        "resume": bool(resume),
        "binding-service": binding_service,
        "output": "",
    }
    start = time.perf_counter()
    last_seq = max((e.seq for e in store.events(run_id)), default=0) if resume else 0
    with tempfile.TemporaryDirectory(prefix="mmbind-run-") as tmp:
        flower_run = submit(superlink, overrides, Path(tmp))
    log.info("run %s submitted (Flower run %s)", run_id, flower_run)
    print(f"mmbind run: run id {run_id} (Flower run {flower_run})", file=sys.stderr)
    error = ""
    ended = False
    deadline = time.monotonic() + timeout
    lost_since: float | None = None
    while not ended and time.monotonic() < deadline:
        try:
            for event in store.watch_events(run_id, last_seq, follow=True):
                lost_since = None
                last_seq = event.seq
                data = event.data
                if data.get("attempt", attempt) != attempt:
                    continue  # an earlier submission of the same run
                if data.get("kind") == "progress" and progress is not None:
                    progress(str(data["label"]), int(data["step"]), int(data["total"]))
                elif data.get("kind") == "dropout":
                    print(
                        f"mmbind run: node {data.get('role')} dropped out in "
                        f"{data.get('phase')}: {data.get('reason')}",
                        file=sys.stderr,
                    )
                elif data.get("kind") == "error":
                    error = str(data.get("message", ""))
                elif event.kind == END_EVENT:
                    ended = True
                    break
        except StoreError as exc:
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > reconnect_seconds:
                raise FederationError(
                    f"lost the coordinator at {binding_service} ({exc}); once it is back, "
                    f"resume with `mmbind run --superlink {superlink} --resume {run_id}`"
                ) from None
            time.sleep(1.0)
    results = store.results(run_id)
    if results is None:
        hint = f": {error}" if error else ""
        raise FederationError(
            f"run {run_id} ended without results{hint}; resume it with "
            f"`mmbind run --superlink {superlink} --resume {run_id}`"
        )
    results["engine"] = "deployment"
    results["submit_wall_seconds"] = round(time.perf_counter() - start, 3)
    write_results(results, output)
    return results
