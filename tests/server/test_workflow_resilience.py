"""Nodes the SuperLink reports unavailable: retried within the grace period, then dropped.

A scripted grid stands in for the SuperLink's Runtime API (as in test_workflow_order):
it answers like flwr 1.42 does for a node that missed its heartbeats (an error reply
with ``ErrorCode.NODE_UNAVAILABLE``, and the node missing from ``get_node_ids``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flwr.app import ConfigRecord, Error, Message, RecordDict
from flwr.common.constant import ErrorCode

from mmbind.errors import FederationError
from mmbind.manifest import NodeManifest
from mmbind.run_config import RunConfig
from mmbind.server.inprocess import assign_message_id, task_identity
from mmbind.server.store import InMemoryBindingStore
from mmbind.server.workflow import Workflow, checkpoint
from mmbind.server.workflow import channel as channel_module

UNAVAILABLE = "Error: Node Unavailable (test)"


class FlakyGrid:
    """Nodes 10, 20, 30; ``away`` nodes answer NODE_UNAVAILABLE and are not listed.

    A node in ``returns_after`` is listed again after that many ``get_node_ids`` calls;
    with ``stale=True`` away nodes stay listed (as a restarted SuperLink lists nodes it
    knew before until their old heartbeat lapses).
    """

    def __init__(
        self,
        away: Iterable[int] = (),
        returns_after: dict[int, int] | None = None,
        *,
        stale: bool = False,
    ) -> None:
        self.stale = stale
        self.away = set(away)
        self.returns_after = dict(returns_after or {})
        self.sent: list[tuple[int, str]] = []
        self._replies: list[Message] = []
        self._count = 0

    def get_node_ids(self) -> Iterable[int]:
        for node, calls in list(self.returns_after.items()):
            self.returns_after[node] = calls - 1
            if calls - 1 <= 0:
                self.away.discard(node)
                del self.returns_after[node]
        return [n for n in (10, 20, 30) if self.stale or n not in self.away]

    def push_messages(self, messages: Iterable[Message]) -> Iterator[str]:
        ids = []
        for msg in messages:
            self._count += 1
            assign_message_id(msg, f"m{self._count}")
            node = msg.metadata.dst_node_id
            self.sent.append((node, msg.metadata.message_type))
            if node in self.away:
                reply = Message(Error(ErrorCode.NODE_UNAVAILABLE, UNAVAILABLE), reply_to=msg)
            else:
                reply = Message(RecordDict({"config": ConfigRecord({"from": node})}), reply_to=msg)
            self._replies.append(reply)
            ids.append(msg.metadata.message_id)
        return iter(ids)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterator[Any]:
        out, self._replies = self._replies, []
        return iter(out)


@pytest.fixture(autouse=True)
def scripted_task(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Flower stamps messages with the running task's ids; give this process some."""
    monkeypatch.setattr(channel_module, "NODE_POLL_SECONDS", 0.01)
    with task_identity():
        yield


def make_workflow(grid: FlakyGrid, grace: float, store: InMemoryBindingStore) -> Workflow:
    config = RunConfig(node_grace_seconds=grace)
    workflow = Workflow(grid, config, store, run_id="flaky")  # type: ignore[arg-type]
    roles = {10: ("A", False, True), 20: ("C", True, True), 30: ("test", False, False)}
    for node_id, (name, labelled, trains) in roles.items():
        workflow.nodes[node_id] = NodeManifest(node_id, name, ("acc",), 4, labelled, trains, 2)
    return workflow


def test_unavailable_node_is_sent_its_message_again_once_it_is_back() -> None:
    # Prepare: node 10 misses its heartbeats, and is back after three looks
    grid = FlakyGrid(away=[10], returns_after={10: 3})
    store = InMemoryBindingStore()
    workflow = make_workflow(grid, grace=60.0, store=store)
    # Execute
    replies = workflow._send("train.align", {n: RecordDict() for n in (10, 20, 30)})
    # Assert: every node answered, node 10 on its second message; nobody dropped
    assert sorted(replies) == [10, 20, 30]
    assert grid.sent.count((10, "train.align")) == 2
    assert grid.sent.count((20, "train.align")) == 1
    assert workflow.result.dropouts == []
    waits = [e.data for e in store.events("flaky") if e.kind == "unavailable"]
    assert [(w["node_id"], w["role"], w["grace_seconds"]) for w in waits] == [(10, "A", 60.0)]


def test_node_not_back_within_the_grace_period_is_dropped() -> None:
    # Prepare: node 10 never comes back
    grid = FlakyGrid(away=[10])
    workflow = make_workflow(grid, grace=0.2, store=InMemoryBindingStore())
    # Execute
    replies = workflow._send("train.align", {n: RecordDict() for n in (10, 20, 30)})
    # Assert
    assert sorted(replies) == [20, 30]
    [dropout] = workflow.result.dropouts
    assert (dropout["node_id"], dropout["message"]) == (10, "train.align")
    assert UNAVAILABLE in str(dropout["reason"])
    assert "Not back within 0 s (node-grace-seconds)" in str(dropout["reason"])


def test_zero_grace_drops_an_unavailable_node_at_once() -> None:
    grid = FlakyGrid(away=[10], returns_after={10: 1})
    workflow = make_workflow(grid, grace=0.0, store=InMemoryBindingStore())
    replies = workflow._send("train.align", {n: RecordDict() for n in (10, 20, 30)})
    assert sorted(replies) == [20, 30]
    assert grid.sent.count((10, "train.align")) == 1
    assert [d["node_id"] for d in workflow.result.dropouts] == [10]


def test_dropout_names_the_phase_of_the_failed_message_after_a_nested_phase() -> None:
    # Prepare: align refreshes partner features (a phase inside align), then trains
    grid = FlakyGrid(away=[10])
    workflow = make_workflow(grid, grace=0.0, store=InMemoryBindingStore())
    # Execute
    with workflow._phase("align"):
        with workflow._phase("partner_features"):
            pass
        workflow._send("train.align", {n: RecordDict() for n in (10, 20)})
    # Assert
    [dropout] = workflow.result.dropouts
    assert (dropout["phase"], dropout["message"]) == ("align", "train.align")
    assert set(workflow.result.phases) == {"align", "partner_features"}


def test_manifest_failing_on_a_node_below_min_nodes_is_a_clear_error() -> None:
    # Prepare: three nodes listed, one of them not really there; three needed
    grid = FlakyGrid(away=[30], stale=True)
    config = RunConfig(node_grace_seconds=0.0, min_nodes=3)
    workflow = Workflow(grid, config, InMemoryBindingStore(), run_id="m")  # type: ignore[arg-type]
    # Execute / Assert
    with pytest.raises(FederationError, match=r"leaving 2 of min-nodes 3: node 30: Error: Node"):
        workflow.manifest()


def test_a_resumed_run_accounts_for_the_earlier_attempt_through_its_checkpoint() -> None:
    # Prepare: attempt a1 pretrains, checkpoints, and dies; attempt a2 resumes
    store = InMemoryBindingStore()
    first = Workflow(FlakyGrid(), RunConfig(attempt="a1"), store, run_id="r")  # type: ignore[arg-type]
    checkpoint.claim(store, "r", "a1")
    with first._phase("pretrain"):
        time.sleep(0.05)
    first._save("pretrain", {}, None)
    second = Workflow(  # type: ignore[arg-type]
        FlakyGrid(), RunConfig(attempt="a2", resume=True), store, run_id="r"
    )
    checkpoint.claim(store, "r", "a2")
    # Execute
    second._restore()
    with second._phase("binding"):
        pass
    record = second.clock.attempt_record("binding")
    # Assert: a1 as of its checkpoint, then a2 on its own; the run's sums cover both
    [earlier] = second._earlier
    assert (earlier["attempt"], earlier["resumed_from"], earlier["last_step"]) == (
        "a1",
        "",
        "pretrain",
    )
    assert earlier["phases"]["pretrain"] >= 0.05
    assert earlier["seconds"] >= earlier["phases"]["pretrain"]
    assert second.result.earlier_seconds == earlier["seconds"]
    assert (record["attempt"], record["resumed_from"]) == ("a2", "pretrain")
    assert set(record["phases"]) == {"binding"}
    assert second.result.phases["pretrain"] == earlier["phases"]["pretrain"]
    assert second.clock.elapsed() >= earlier["seconds"] + record["seconds"]
