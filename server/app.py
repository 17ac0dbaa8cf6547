"""The Flower ServerApp of the coordinator: runs the phase workflow and reports results."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from mmbind.run_config import RunConfig
from mmbind.server.results import build_results, write_results
from mmbind.server.store import BindingStore, InMemoryBindingStore
from mmbind.server.workflow import Progress, Workflow

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
        start = time.perf_counter()
        workflow = Workflow(
            grid,
            config,
            store if store is not None else InMemoryBindingStore(),
            run_id=str(context.run_id),
            progress=progress,
            evaluation_labels=evaluation_labels,
        )
        result = workflow.run()
        results = build_results(
            config=config,
            engine=engine,
            methods=result.methods,
            binding=result.binding,
            phases=dict(result.phases),
            wall_seconds=time.perf_counter() - start,
            nodes=result.nodes,
            history=dict(result.history),
        )
        if config.output:
            path = write_results(results, config.output)
            log.info("results written to %s", path)
        if on_results is not None:
            on_results(results)

    return app


app = make_server_app()
