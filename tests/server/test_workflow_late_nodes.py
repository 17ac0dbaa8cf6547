"""A whole in-process run with a node that connects after binding, and one binding approximately."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from flwr.app import Message

from mmbind import wire
from mmbind.client.app import make_client_app
from mmbind.client.local_data import simulated_nodes
from mmbind.client.node import LocalNode
from mmbind.run_config import RunConfig
from mmbind.server.inprocess import InProcessGrid
from mmbind.server.store import InMemoryBindingStore
from mmbind.server.workflow import RunResult, Workflow, checkpoint

TINY = {
    "pretrain_rounds": 1,
    "pretrain_epochs": 1,
    "align_rounds": 2,
    "align_epochs": 1,
    "finetune_epochs": 1,
    "synthetic_trials": 2,
    "nodes_per_role": 2,
    "methods": "mmbind,lower_bound",
}
B2 = 4
"""Node id of B2 (partition 3: acc and gyro, like B1) on a grid numbering nodes from 1."""


class Crash(Exception):
    """The coordinator process dying (raised from inside the grid)."""


def run(
    values: Mapping[str, Any],
    arrivals: Mapping[int, str],
    store: InMemoryBindingStore | None = None,
    *,
    crash_at: str = "",
    nodes: list[LocalNode] | None = None,
) -> tuple[RunResult, list[Any]]:
    """Run the workflow over an in-process grid; the result and every (node, message type).

    With ``crash_at``, the run dies as it sends its first message of that type.
    """
    config = RunConfig.from_mapping({**TINY, **values})
    nodes = nodes if nodes is not None else simulated_nodes(config)

    def factory(cfg: RunConfig, node_config: Mapping[str, object]) -> LocalNode:
        return nodes[int(node_config["partition-id"])]  # type: ignore[call-overload]

    sent: list[tuple[int, str]] = []

    def observe(msg: Message, reply: Message) -> None:
        sent.append((msg.metadata.dst_node_id, msg.metadata.message_type))
        if msg.metadata.message_type == crash_at:
            raise Crash(crash_at)

    run_config = config.to_flower()
    app = make_client_app(run_config, node_factory=factory)
    grid = InProcessGrid.simulated(app, run_config, len(nodes), observe=observe, arrivals=arrivals)
    store = store if store is not None else InMemoryBindingStore()
    workflow = Workflow(grid, config, store, run_id="late")  # type: ignore[arg-type]
    return workflow.run(), sent


def test_a_node_connecting_after_binding_is_bound_and_aligned_from_the_next_round(
    one_torch_thread: None,
) -> None:
    # Prepare / Execute: B2 connects while align round 0 is under way
    store = InMemoryBindingStore()
    result, sent = run({"min_nodes": 7}, arrivals={B2: wire.ALIGN}, store=store)
    # Assert: asked for its manifest and embeddings once, aligned in round 1 only
    assert sent.count((B2, wire.MANIFEST)) == 1
    assert sent.count((B2, wire.EMBED)) == 1
    assert sent.count((B2, wire.ALIGN)) == 1
    assert sent.index((B2, wire.ALIGN)) > sent.index((B2, wire.EMBED))
    [late] = result.binding["late_joiners"]
    # B2 lacks skeleton: each of its 12 samples bound to A1's or A2's; it holds gyro, which A1
    # and A2 lack: only its pairs with their 2 x 12 samples were scored, once per modality
    assert {k: late[k] for k in ("node_id", "role", "round", "pairs", "similarities")} == {
        "node_id": B2,
        "role": "B2",
        "round": 1,
        "pairs": 12,
        "similarities": 2 * 12 * 24,
    }
    # ... and A1's and A2's samples that B2 holds a closer gyro partner for are bound to it:
    # B2 is asked for their partner features
    assert 0 < late["rebound"] <= 24
    assert (B2, wire.FEATURES) in sent
    assert 0.0 <= late["pairing_accuracy"] <= 1.0
    assert "B2" in [n["role"] for n in result.nodes]
    # ... and a resumed run would find B2's bindings in the checkpoint
    ids = {n["role"]: int(n["node_id"]) for n in result.nodes}  # type: ignore[call-overload]
    [kept] = checkpoint.restore_bindings(store, "late", ["modality"], ids).values()
    assert (B2, "skeleton") in {(b.request.node_id, b.request.modality) for b in kept}
    assert result.binding["pairs"] > 0  # phase 3's own report stays as it was made


def test_a_late_test_node_is_evaluated_without_binding(one_torch_thread: None) -> None:
    # Prepare / Execute: test2 (node 8: evaluation only) connects during align round 0
    result, sent = run({"min_nodes": 7}, arrivals={8: wire.ALIGN})
    # Assert: recorded, never asked to embed, evaluated with the others
    [late] = result.binding["late_joiners"]
    assert (late["node_id"], late["role"], late["pairs"]) == (8, "test2", 0)
    assert (8, wire.EMBED) not in sent
    assert sent.count((8, wire.EVALUATE)) == 1


def test_above_the_threshold_the_run_binds_approximately_and_reports_the_recall(
    one_torch_thread: None,
) -> None:
    pytest.importorskip("faiss")  # the optional extra 'ann'
    # Prepare / Execute: every request above a threshold of 0 pairs
    result, _ = run({"ann_threshold": 0, "nodes_per_role": 1, "min_nodes": 4}, arrivals={})
    # Assert
    search = result.binding["search"]
    assert (search["method"], search["ann_threshold"]) == ("approximate", 0)
    assert 0.0 < search["recall_at_1"] <= 1.0
    assert [r["method"] for r in search["requests"]] == ["hnsw", "hnsw"]
    samples = {n["node_id"]: n["num_samples"] for n in result.nodes}
    assert search["recall_sample"] == sum(samples[r["node_id"]] for r in search["requests"])


def test_a_resumed_run_binds_a_late_node_against_the_stored_uploads(
    one_torch_thread: None,
) -> None:
    # Prepare: attempt a1 binds, checkpoints, and dies in its first align round
    store = InMemoryBindingStore()
    nodes = simulated_nodes(RunConfig.from_mapping({**TINY, "min_nodes": 7}))
    first = {"min_nodes": 7, "attempt": "a1"}
    with pytest.raises(Crash):
        run(first, arrivals={B2: "never"}, store=store, crash_at=wire.ALIGN, nodes=nodes)
    checkpointed = store.checkpoint("late")
    assert checkpointed is not None and checkpointed["step"] == "binding"
    # Execute: a2 resumes after binding (no uploads of its own); B2 connects in align round 0
    again = {"min_nodes": 7, "attempt": "a2", "resume": True}
    result, sent = run(again, arrivals={B2: wire.ALIGN}, store=store, nodes=nodes)
    # Assert: B2 bound against phase 3's stored uploads, as in a run that never stopped
    assert (B2, wire.EMBED) in sent
    [late] = result.binding["late_joiners"]
    assert (late["round"], late["pairs"], late["similarities"]) == (1, 12, 2 * 12 * 24)
