"""The Flower ServerApp of the coordinator: runs the phase workflow and reports results."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from mmbind.run_config import RunConfig
from mmbind.server.binding_service import BindingService
from mmbind.server.liveness import AttemptWatchdog
from mmbind.server.results import build_results, write_results
from mmbind.server.store import END_EVENT, BindingStore, InMemoryBindingStore
from mmbind.server.workflow import BindingServiceAPI, Progress, Workflow

log = logging.getLogger(__name__)


def make_server_app(
    overrides: Mapping[str, Any] | None = None,
    *,
    engine: str = "simulation",
    progress: Progress | None = None,
    on_results: Callable[[dict[str, Any]], None] | None = None,
    store: BindingStore | None = None,
    evaluation_labels: bool = True,
) -> ServerApp:
    """Build the ServerApp.

    Parameters
    ----------
    overrides : mapping, optional
        Run-config values (kebab-case) that take precedence over ``context.run_config``.
    engine : str
        ``"simulation"`` or ``"deployment"``, recorded in results.json.
    progress : callable, optional
        ``progress(label, step, total)`` as phases and rounds advance.
    on_results : callable, optional
        Receives the results document when the run ends.
    store : BindingStore, optional
        Where binding state lives; the embedded in-process store by default.
    evaluation_labels : bool
        Ask nodes for labels used only to score the binding (pairing accuracy).
    """
    extra = dict(overrides or {})
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = RunConfig.from_flower({**dict(context.run_config), **extra})
        run_id = config.run_id or str(context.run_id)
        run_store, service = _connect(config, store, run_id)
        start = time.perf_counter()
        watchdog = None
        if config.binding_service:  # a deployment: see mmbind.server.liveness
            watchdog = AttemptWatchdog(run_store, run_id, config.attempt).start()
        try:
            workflow = Workflow(
                grid,
                config,
                run_store,
                run_id=run_id,
                service=service,
                progress=progress,
                evaluation_labels=evaluation_labels,
            )
            result = workflow.run()
            results = build_results(
                config=config,
                engine="deployment" if config.binding_service else engine,
                result=result,
                # A resumed run's wall time includes its earlier attempts (README, Deploy).
                wall_seconds=result.earlier_seconds + time.perf_counter() - start,
                run_id=run_id,
            ).to_json()
            workflow.check_owner()
            run_store.put_results(run_id, results)
            if config.output:
                path = write_results(results, config.output)
                log.info("results written to %s", path)
            if on_results is not None:
                on_results(results)
        except Exception as exc:
            run_store.append_event(
                run_id, {"kind": "error", "message": str(exc), "attempt": config.attempt}
            )
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
            run_store.append_event(run_id, {"kind": END_EVENT, "attempt": config.attempt})

    return app


def _connect(
    config: RunConfig, store: BindingStore | None, run_id: str
) -> tuple[BindingStore, BindingServiceAPI]:
    """The run's store and binding service: remote when ``binding-service`` is set."""
    if config.binding_service:
        from mmbind.server.remote import RemoteBindingService, RemoteBindingStore

        address, credentials = _binding_service(config.binding_service)
        remote = RemoteBindingStore(address, credentials=credentials)
        return remote, RemoteBindingService(address, run_id, store=remote)
    local = store if store is not None else InMemoryBindingStore()
    return local, BindingService(local, run_id, ann_threshold=config.ann_threshold)


def _binding_service(submitted: str) -> tuple[str, Any]:
    """The BindingService this ServerApp talks to, and its credentials.

    Under ``mmbind-server`` that is the coordinator's own (``MMBIND_BINDING_SERVICE``,
    whatever the run config says), with TLS and the ServerApp's token when the
    coordinator has certificates (``MMBIND_CERTS_DIR``).
    """
    from mmbind.settings import MMBindSettings

    settings = MMBindSettings.load()
    address = settings.binding_service or submitted
    if not settings.certs_dir:
        return address, None
    from mmbind.certs import CoordinatorCerts
    from mmbind.server.remote import channel_credentials

    certs = CoordinatorCerts.load(settings.certs_dir)
    return address, channel_credentials(certs.ca.read_bytes(), certs.serverapp_token)


app = make_server_app()
