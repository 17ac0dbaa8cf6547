"""A whole run of the workflow in one process: what it logs and what it checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from mmbind.client.app import make_client_app
from mmbind.client.local_data import simulated_nodes
from mmbind.client.node import LocalNode
from mmbind.run_config import RunConfig
from mmbind.server.inprocess import InProcessGrid
from mmbind.server.store import InMemoryBindingStore
from mmbind.server.workflow import Workflow

TINY = {
    "pretrain_rounds": 1,
    "pretrain_epochs": 1,
    "align_rounds": 1,
    "align_epochs": 1,
    "finetune_epochs": 1,
    "synthetic_trials": 2,
    "methods": "mmbind,lower_bound",
    "label_budgets": "0,8",
    "min_nodes": 4,
}


@pytest.mark.integration
def test_every_method_logs_its_accuracy_and_the_checkpoint_keeps_the_step_text(
    one_torch_thread: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a two-method run with an extra label budget (so results carry budgets)
    config = RunConfig.from_mapping(TINY)
    nodes = simulated_nodes(config)

    def factory(cfg: RunConfig, node_config: Mapping[str, object]) -> LocalNode:
        return nodes[int(node_config["partition-id"])]  # type: ignore[call-overload]

    run_config = config.to_flower()
    grid = InProcessGrid.simulated(
        make_client_app(run_config, node_factory=factory), run_config, len(nodes)
    )
    store = InMemoryBindingStore()
    workflow = Workflow(grid, config, store, run_id="log")  # type: ignore[arg-type]
    # Execute
    with caplog.at_level(logging.INFO, logger="mmbind.server.workflow"):
        result = workflow.run()
    # Assert: one accuracy line per method, not only the last one's
    logged = [r.getMessage() for r in caplog.records if "accuracy" in r.getMessage()]
    assert [line.split(":")[0] for line in logged] == ["mmbind", "lower_bound"]
    assert sorted(result.budgets) == ["0", "8"]
    checkpoint = store.checkpoint("log")
    assert checkpoint is not None and checkpoint["step"] == "evaluate"
    steps = [e.data["label"] for e in store.events("log") if e.kind == "progress"]
    assert "fine-tune @8 labels" in steps
