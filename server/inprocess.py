"""The whole federation in one process: the real workflow and ClientApp, no transport.

:class:`InProcessGrid` is the part of Flower's ``Grid`` the coordinator's
:class:`~mmbind.server.workflow.Workflow` uses (``get_node_ids``, ``push_messages``,
``pull_messages``), delivering every message straight to a ClientApp in this process (as
Flower's own ``InMemoryGrid`` gives messages their ids). Phases, FedAvg, binding, partner
features, weights, fine-tuning and evaluation are the pipeline's own; only Flower's transport
(SuperLink, Ray actors, a process per message) is left out. It serves the recipe bench, which
needs many runs fast, and tests that look inside messages. ``mmbind simulate`` and ``mmbind
experiment`` run on Flower's simulation engine.

This module and :mod:`mmbind.server.superlink` are where mmbind touches Flower internals
(``Metadata._message_id``, ``TaskIdentity``); tests that script a grid of their own use
:func:`assign_message_id` and :func:`task_identity` from here.
``tests/server/test_flower_internals.py`` pins every internal Flower name mmbind uses, so a
Flower upgrade that moves one fails in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["InProcessGrid", "assign_message_id", "claim_task_identity", "task_identity"]

RUN_ID = 1
"""The run id every in-process message carries."""


_TASK_IDENTITY_FIELDS = ("_run_id", "_node_id", "_task_id")
"""TaskIdentity's private class attributes behind its ``run_id``/``node_id``/``task_id``."""


def claim_task_identity(run_id: int = RUN_ID) -> None:
    """Set Flower's per-process task identity, as ``flwr.server.compat`` does for a ServerApp
    run in-process (messages built without it fail to find their source node)."""
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 0


@contextmanager
def task_identity(run_id: int = RUN_ID) -> Iterator[None]:
    """:func:`claim_task_identity` for a block; the process's earlier identity comes back after.

    For tests that build messages without a grid of this module (a scripted grid).
    """
    # TaskIdentity's getters raise while unset, so the earlier values are read raw.
    saved = {name: getattr(TaskIdentity, name) for name in _TASK_IDENTITY_FIELDS}
    claim_task_identity(run_id)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(TaskIdentity, name, value)


def assign_message_id(message: Message, message_id: str) -> None:
    """Give ``message`` the id a SuperLink would (replies point back to it).

    Flower's ``Metadata.message_id`` has no setter: the id lives in its private
    ``_message_id`` entry.
    """
    message.metadata.__dict__["_message_id"] = message_id


class InProcessGrid:
    """Deliver messages to an in-process ClientApp, one context per node.

    Parameters
    ----------
    client_app : ClientApp
        The nodes' ClientApp (e.g. :func:`mmbind.client.app.make_client_app`).
    run_config : mapping
        Flower run config (kebab-case keys) every node's context carries.
    node_configs : sequence of mapping
        One Flower node config per node.
    first_node_id : int, optional
        Node ids are ``first_node_id, first_node_id + 1, ...`` (default 1). Flower's own ids
        are random unsigned 64-bit integers; pass one above ``2**63`` to test that range.
    observe : callable, optional
        ``observe(message, reply)`` after every delivery (tests look inside messages).
    arrivals : mapping of int to str, optional
        Late nodes: node id -> a message type. Such a node is not connected (not in
        :meth:`get_node_ids`) until the grid has delivered a message of that type to the
        other nodes, as a SuperNode that connects while a run is under way.
    """

    def __init__(
        self,
        client_app: ClientApp,
        run_config: Mapping[str, Any],
        node_configs: Sequence[Mapping[str, Any]],
        *,
        first_node_id: int = 1,
        observe: Callable[[Message, Message], None] | None = None,
        arrivals: Mapping[int, str] | None = None,
    ) -> None:
        if not (first_node_id > 0 and first_node_id + len(node_configs) <= 2**64):
            raise ValueError(f"first_node_id={first_node_id}: node ids must fit in 1..2**64-1")
        self.client_app = client_app
        self.contexts = {
            nid: Context(
                run_id=RUN_ID,
                node_id=nid,
                node_config=dict(cfg),
                state=RecordDict(),
                run_config=dict(run_config),
            )
            for nid, cfg in enumerate(node_configs, start=first_node_id)
        }
        self.seconds: dict[str, float] = {}
        """Seconds spent in the ClientApp per message type."""
        self._observe = observe
        self._arrivals = dict(arrivals or {})
        unknown = sorted(set(self._arrivals) - set(self.contexts))
        if unknown:
            raise ValueError(f"arrivals name nodes this grid does not have: {unknown}")
        self._count = 0
        self._replies: dict[str, Message] = {}
        claim_task_identity()

    @classmethod
    def simulated(
        cls, client_app: ClientApp, run_config: Mapping[str, Any], num_nodes: int, **kwargs: Any
    ) -> InProcessGrid:
        """Nodes as Flower's simulation engine configures them (``partition-id`` only)."""
        configs = [{"partition-id": i, "num-partitions": num_nodes} for i in range(num_nodes)]
        return cls(client_app, run_config, configs, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        """Ids of the connected nodes (every node but late ones still to arrive)."""
        return [n for n in self.contexts if n not in self._arrivals]

    def push_messages(self, messages: Iterable[Message]) -> Iterator[str]:
        """Deliver each message now; its reply waits for :meth:`pull_messages`."""
        ids = []
        arrived: set[int] = set()
        for msg in messages:
            if msg.metadata.dst_node_id in self._arrivals:
                raise ValueError(f"node {msg.metadata.dst_node_id} is not connected yet")
            arrived |= {
                n for n, kind in self._arrivals.items() if kind == msg.metadata.message_type
            }
            # A SuperLink gives every message an id; replies point back to it.
            self._count += 1
            assign_message_id(msg, f"inprocess-{self._count}")
            start = time.perf_counter()
            reply = self.client_app(msg, self.contexts[msg.metadata.dst_node_id])
            kind = msg.metadata.message_type
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - start
            if self._observe is not None:
                self._observe(msg, reply)
            self._replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        for node_id in arrived:
            del self._arrivals[node_id]
        return iter(ids)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterator[Message]:
        """The replies of the given messages that have not been pulled yet."""
        return iter([self._replies.pop(i) for i in list(message_ids) if i in self._replies])
