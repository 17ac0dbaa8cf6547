"""``mmbind run``: submit the pipeline to a running coordinator and collect its results.

The run is a Flower run on the coordinator's SuperLink (``flwr run``), with the
ServerApp talking to the coordinator's BindingService. Progress comes back as
the run's event log (read from the BindingService), and the results document
the ServerApp stored there is written to ``OUTPUT/results.json``. Each submission
is an *attempt* of the run; ``mmbind run`` follows only its own attempt and gives
up, naming the resume command, when that attempt is lost (see
:func:`run_deployment` and :mod:`mmbind.server.liveness`).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from mmbind.certs import ClientCerts
from mmbind.errors import ConfigError, FederationError, StoreError
from mmbind.processes import parse_address
from mmbind.results_model import RunResults
from mmbind.run_config import RunConfig
from mmbind.server.operator import CONNECTION, json_reply, write_flower_home
from mmbind.server.results import write_results
from mmbind.server.store import END_EVENT, BindingStore
from mmbind.server.workflow import Progress

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT = 60.0
"""Default ``--attempt-timeout``: seconds without a sign of life before an attempt is lost."""
FOLLOW_SECONDS = 0.5
"""How often ``mmbind run`` reads the run's new events."""


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


def submit(
    superlink: str, overrides: dict[str, Any], workdir: Path, certs: ClientCerts | None = None
) -> str:
    """Start the Flower run; return Flower's run id."""
    defaults = RunConfig().to_flower()
    app = write_app(workdir / "app", defaults)
    home = write_flower_home(workdir / "flwr-home", superlink, certs)
    run_config = workdir / "run-config.toml"
    run_config.write_text(tomli_w.dumps(overrides))
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"}
    cmd = [
        sys.executable, "-m", "flwr.cli.app", "run", str(app), CONNECTION,
        "--run-config", str(run_config), "--format", "json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    reply = json_reply(proc, f"the SuperLink at {superlink} refused the run")
    return str(reply.get("run-id", ""))


def _last_attempt(results: RunResults) -> str:
    """The attempt that wrote ``results`` (``""`` when it does not say)."""
    return results.attempts[-1].attempt if results.attempts else ""


def flower_run_status(flower_home: Path, flower_run: str) -> str:
    """The Flower run's status from the SuperLink's Control API (``flwr ls``), e.g.
    ``running`` or ``finished:failed`` (with its details); ``""`` when it cannot be read."""
    env = {**os.environ, "FLWR_HOME": str(flower_home), "FLWR_TELEMETRY_ENABLED": "0"}
    cmd = [
        sys.executable, "-m", "flwr.cli.app", "ls", CONNECTION,
        "--run-id", flower_run, "--format", "json",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        text = proc.stdout
        runs = json.loads(text[text.index("{") :]).get("runs", []) if "{" in text else []
    except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError):
        return ""
    if not runs:
        return ""
    status = str(runs[0].get("status", ""))
    details = str(runs[0].get("status-details", ""))
    return f"{status} ({details})" if details and details != "N/A" else status


def follow_attempt(
    store: BindingStore,
    run_id: str,
    attempt: str,
    *,
    after_seq: int = 0,
    hint: str = "",
    progress: Progress | None = None,
    flower_status: Callable[[], str] = lambda: "",
    timeout: float = 6 * 3600.0,
    reconnect_seconds: float = 20.0,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    poll: float = FOLLOW_SECONDS,
) -> str:
    """Follow ``attempt`` of ``run_id`` through the run's events until its end event.

    Returns the attempt's last error message (``""`` when it reported none). Raises a
    :class:`FederationError` ending with ``hint`` when the attempt is lost: the store
    stays unreachable for ``reconnect_seconds``; or no event of the attempt (its
    ServerApp sends a heartbeat every 10 s) arrives for ``attempt_timeout`` seconds
    once it has sent one; or, before its first event, ``attempt_timeout`` passes and
    ``flower_status()`` (Flower's run status) says the run finished; or ``timeout``
    passes.
    """
    error = ""
    seen = False  # an event of this attempt arrived
    heard = time.monotonic()  # its last sign of life (the submission counts)
    deadline = heard + timeout
    lost_since: float | None = None
    last_seq = after_seq
    while True:
        now = time.monotonic()
        if now > deadline:
            raise FederationError(f"run {run_id} did not end within {timeout:.0f} s; {hint}")
        try:
            events = store.events(run_id, last_seq)
        except StoreError as exc:
            lost_since = lost_since or now
            if now - lost_since > reconnect_seconds:
                raise FederationError(
                    f"lost the coordinator for {reconnect_seconds:.0f} s ({exc}); "
                    f"once it is back, {hint}"
                ) from None
            time.sleep(min(1.0, poll))
            continue
        lost_since = None
        for event in events:
            last_seq = event.seq
            data = event.data
            if data.get("attempt", attempt) != attempt:
                continue  # another submission of the same run
            seen = True
            heard = time.monotonic()
            kind = event.kind
            if kind == "progress" and progress is not None:
                progress(str(data["label"]), int(data["step"]), int(data["total"]))
            elif kind == "dropout":
                print(
                    f"mmbind run: node {data.get('role')} dropped out in "
                    f"{data.get('phase')}: {data.get('reason')}",
                    file=sys.stderr,
                )
            elif kind == "unavailable":
                print(
                    f"mmbind run: node {data.get('role')} is unavailable in "
                    f"{data.get('phase')}; waiting up to "
                    f"{float(data.get('grace_seconds', 0)):.0f} s for it to come back",
                    file=sys.stderr,
                )
            elif kind == "error":
                error = str(data.get("message", ""))
            elif kind == END_EVENT:
                return error
        silence = time.monotonic() - heard
        if silence > attempt_timeout:
            status = flower_status()
            if seen or status.startswith("finished"):
                flower = f"; Flower's run status: {status}" if status else ""
                raise FederationError(
                    f"attempt {attempt} of run {run_id} gave no sign of life for "
                    f"{silence:.0f} s (the coordinator restarted or its ServerApp died"
                    f"{flower}); {hint}"
                )
            heard = time.monotonic()  # Flower says it is still starting: wait on
        time.sleep(poll)


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
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    certs: ClientCerts | None = None,
) -> dict[str, Any]:
    """Submit the pipeline, follow its progress, write and return results.json's document.

    With ``certs`` (the operator/ folder of ``mmbind certs init``) every connection is TLS
    trusting only the deployment's CA and carries the operator's token.

    The submission is followed by :func:`follow_attempt`; when it is lost (e.g. the
    coordinator restarted meanwhile) a :class:`FederationError` names the command
    that resumes the run.
    """
    from mmbind.server.remote import RemoteBindingStore, wait_until_ready

    parse_address(superlink, "--superlink")
    parse_address(binding_service, "--binding-service")
    if attempt_timeout <= 0:
        raise ConfigError(f"--attempt-timeout must be > 0 seconds, got {attempt_timeout}")
    credentials = None
    if certs is not None:
        from mmbind.server.remote import channel_credentials

        credentials = channel_credentials(certs.ca.read_bytes(), certs.token)
    wait_until_ready(binding_service, timeout=30, credentials=credentials)
    store = RemoteBindingStore(binding_service, credentials=credentials)
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
    with_certs = f" --certs {certs.folder}" if certs is not None else ""
    hint = f"resume it with `mmbind run --superlink {superlink} --resume {run_id}{with_certs}`"
    with tempfile.TemporaryDirectory(prefix="mmbind-run-") as tmp:
        flower_run = submit(superlink, overrides, Path(tmp), certs)
        log.info("run %s submitted (Flower run %s)", run_id, flower_run)
        print(
            f"mmbind run: run id {run_id} (Flower run {flower_run}, attempt {attempt})",
            file=sys.stderr,
        )
        error = follow_attempt(
            store,
            run_id,
            attempt,
            after_seq=last_seq,
            hint=hint,
            progress=progress,
            flower_status=lambda: flower_run_status(Path(tmp) / "flwr-home", flower_run),
            timeout=timeout,
            reconnect_seconds=reconnect_seconds,
            attempt_timeout=attempt_timeout,
        )
    stored = store.results(run_id)
    results = (
        None
        if stored is None
        else RunResults.from_json(stored, f"the results of run {run_id} in the binding store")
    )
    if results is None or _last_attempt(results) not in ("", attempt):
        why = f": {error}" if error else ""
        raise FederationError(f"run {run_id} ended without results{why}; {hint}")
    results.engine = "deployment"
    results.submit_wall_seconds = round(time.perf_counter() - start, 3)
    write_results(results, output)
    return results.to_json()
