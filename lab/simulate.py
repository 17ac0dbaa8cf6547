"""``mmbind simulate``: the whole federation on one machine, on Flower's simulation engine."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from mmbind.client.app import make_client_app
from mmbind.client.data.partition import node_dataset
from mmbind.client.local_data import load_dataset, simulation_plan
from mmbind.errors import ConfigError, FederationError
from mmbind.results_model import RunResults
from mmbind.run_config import RunConfig
from mmbind.server.app import make_server_app
from mmbind.server.binding_service import NodeManifest, check_bindable
from mmbind.server.workflow import Progress

log = logging.getLogger(__name__)

RAY_START_ATTEMPTS = 3
"""How often the simulation engine is started when Ray's head does not come up in time."""


def ray_start_timed_out(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception that caused it, is Ray's head failing to start in time.

    Ray waits 30 s for its GCS server to write the port file; on a loaded machine (several
    simulations starting at once on 2 cores) that can pass before the server is up, and
    Flower's ``run_simulation`` reports it as "Simulation Runtime crashed".
    """
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if "Timed out waiting for file" in text and "gcs_server_port" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def simulate(
    config: RunConfig, *, num_cpus: int = 0, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every method of ``config`` on a simulated federation; return results.json's document.

    The data is loaded and validated here first, so a bad data folder fails in a
    second with a clear message instead of inside the simulation's workers.
    """
    if num_cpus < 0:
        raise ConfigError(f"num_cpus must be >= 0 (0 = all cores), got {num_cpus}")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # we ask for no GPUs
    # Flower's log level inside the Ray actors (they inherit this environment; this process's
    # Flower logger is set up already). At WARNING each actor says "Manually terminating
    # ClientAppActor" when the run ends, and Ray forwards that above the results; errors
    # still show, and a ClientApp's exception reaches this process as the run's error.
    os.environ.setdefault("FLWR_LOG_LEVEL", "ERROR")
    from flwr.simulation import run_simulation

    plans = simulation_plan(config)  # a split the protocol lacks fails before the data loads
    full = load_dataset(config)
    for plan in plans:  # a node left without samples fails here, not in every worker
        node_dataset(plan, full)
    if "mmbind" in config.methods:
        # The same check the coordinator runs in phase 1, before any worker starts.
        check_bindable(
            [
                NodeManifest(
                    p.node, p.role.name, p.role.modalities, 1, p.role.labelled, p.role.trains, 1
                )
                for p in plans
            ],
            config.shared_modality,
        )
    cpus = num_cpus or os.cpu_count() or 1
    collected: dict[str, Any] = {}
    overrides = {**config.to_flower(), "min-nodes": len(plans)}
    server_app = make_server_app(overrides, progress=progress, on_results=collected.update)
    client_app = make_client_app(overrides)
    start = time.perf_counter()
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=len(plans),
                backend_config={
                    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                    "init_args": {"num_cpus": cpus, "include_dashboard": False},
                },
            )
            break
        except RuntimeError as exc:
            # Only a start that never reached a node is tried again: nothing ran yet.
            if collected or attempt == RAY_START_ATTEMPTS or not ray_start_timed_out(exc):
                raise
            log.warning(
                "Ray's head did not start in time (a busy machine?); starting the simulation "
                "engine again (attempt %d of %d)",
                attempt + 1,
                RAY_START_ATTEMPTS,
            )
            import ray

            ray.shutdown()
    if not collected:
        raise FederationError("the simulation ended without results; see the log above")
    results = RunResults.from_json(collected, "the simulation's results")
    results.wall_seconds = round(time.perf_counter() - start, 3)  # the engine's start included
    return results.to_json()
