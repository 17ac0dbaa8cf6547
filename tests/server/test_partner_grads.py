"""End-to-end alignment: partner gradients go back to the nodes that made the features."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import pytest
from flwr.app import Message

from mmbind import wire
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
    "align_rounds": 3,
    "align_epochs": 1,
    "finetune_epochs": 1,
    "synthetic_trials": 2,
    "methods": "mmbind",
    "min_nodes": 4,
}


def run_inprocess(config: RunConfig) -> tuple[Workflow, list[tuple[int, Message, Message]]]:
    nodes = simulated_nodes(config)

    def factory(cfg: RunConfig, node_config: Mapping[str, object]) -> LocalNode:
        return nodes[int(node_config["partition-id"])]  # type: ignore[call-overload]

    seen: list[tuple[int, Message, Message]] = []
    run_config = config.to_flower()
    grid = InProcessGrid.simulated(
        make_client_app(run_config, node_factory=factory),
        run_config,
        len(nodes),
        first_node_id=2**63 + 7,  # Flower's node ids are uint64: past int64's range here
        observe=lambda msg, reply: seen.append((msg.metadata.dst_node_id, msg, reply)),
    )
    workflow = Workflow(grid, config, InMemoryBindingStore(), run_id="grads")  # type: ignore[arg-type]
    workflow.run()
    return workflow, seen


@pytest.mark.integration
def test_partner_gradients_reach_the_partners_rows_one_round_later(one_torch_thread: None) -> None:
    # Prepare
    config = RunConfig.from_mapping({**TINY, "partner_grads": True})

    # Execute
    workflow, seen = run_inprocess(config)

    # Assert: per align round, which nodes sent gradients and which received routed ones
    aligns = [(n, m, r) for n, m, r in seen if m.metadata.message_type == wire.ALIGN]
    roles = {i: n.role for i, n in workflow.nodes.items()}
    sent: dict[int, set[str]] = defaultdict(set)
    received: dict[int, dict[str, dict[str, np.ndarray]]] = defaultdict(dict)
    for k, (node, msg, reply) in enumerate(aligns):
        rnd = k // 3  # three training nodes per round
        if wire.track_key("mmbind", wire.PARTNER_GRAD) in reply.content.array_records:
            sent[rnd].add(roles[node])
        key = wire.track_key("mmbind", wire.ROUTED_GRAD)
        if key in msg.content.array_records:
            received[rnd][roles[node]] = wire.record_to_arrays(msg.content.array_records[key])
    assert sent[0] == {"A", "B"}  # the nodes that were routed partner features
    assert 0 not in received and set(received[1]) == {"A", "B"} == set(received[2])
    # A lacks gyro and binds to B: B's routed gyro rows are exactly the B rows A's samples are
    # bound to; the gradients are finite and not all zero
    b_rows = received[1]["B"]["gyro.rows"]
    bound = next(
        b
        for b in workflow.service.bind(  # type: ignore[attr-defined]
            [r for r in _requests(workflow) if roles[r.node_id] == "A" and r.modality == "gyro"]
        )
    )
    np.testing.assert_array_equal(b_rows, np.unique(bound.bindings.partner_index))
    grad = received[1]["B"]["gyro.grad"]
    assert grad.shape == (len(b_rows), config.proj_dim) and np.isfinite(grad).all()
    assert np.abs(grad).sum() > 0


def _requests(workflow: Workflow) -> list:  # type: ignore[type-arg]
    from mmbind.server.binding_service import check_bindable

    return check_bindable(workflow._active(), workflow.config.shared_modality)


@pytest.mark.integration
def test_without_partner_gradients_no_gradient_travels(one_torch_thread: None) -> None:
    _, seen = run_inprocess(RunConfig.from_mapping({**TINY, "partner_grads": False}))
    keys = {
        k
        for _, msg, reply in seen
        for k in [*msg.content.array_records, *reply.content.array_records]
    }
    assert not any(k.endswith((wire.PARTNER_GRAD, wire.ROUTED_GRAD)) for k in keys)
