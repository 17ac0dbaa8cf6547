"""The coordinator handles replies in a fixed order, whatever order they arrive in."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from mmbind.manifest import NodeManifest
from mmbind.run_config import RunConfig
from mmbind.server.inprocess import assign_message_id, task_identity
from mmbind.server.store import InMemoryBindingStore
from mmbind.server.workflow import Workflow


class ReversedGrid:
    """Answers every message at once, but hands the replies back in reverse order."""

    def __init__(self) -> None:
        self._replies: list[Message] = []

    def get_node_ids(self) -> Iterable[int]:
        return [30, 10, 20]

    def push_messages(self, messages: Iterable[Message]) -> Iterator[str]:
        ids = []
        for i, msg in enumerate(messages):
            assign_message_id(msg, f"m{i}")
            content = RecordDict({"config": ConfigRecord({"from": msg.metadata.dst_node_id})})
            self._replies.append(Message(content, reply_to=msg))
            ids.append(msg.metadata.message_id)
        return iter(ids)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterator[Any]:
        out, self._replies = list(reversed(self._replies)), []
        return iter(out)


@pytest.fixture
def scripted_task() -> Iterator[None]:
    """Flower stamps messages with the running task's ids; give this process some."""
    with task_identity():
        yield


@pytest.mark.usefixtures("scripted_task")
def test_replies_come_back_in_node_name_order() -> None:
    # Prepare: node ids do not follow the names, and replies arrive reversed
    workflow = Workflow(ReversedGrid(), RunConfig(), InMemoryBindingStore(), run_id="order")  # type: ignore[arg-type]
    for node_id, name in ((20, "A"), (10, "B"), (30, "C")):
        workflow.nodes[node_id] = NodeManifest(node_id, name, ("acc",), 1, False, True, 2)
    # Execute
    replies = workflow._send("query.manifest", {n: RecordDict() for n in (10, 20, 30)})
    # Assert
    assert list(replies) == [20, 10, 30]  # A, B, C: neither sent (10, 20, 30) nor arrived order
    assert [r.config_records["config"]["from"] for r in replies.values()] == [20, 10, 30]
