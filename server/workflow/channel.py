"""The coordinator's channel to its nodes: the only code that touches Flower's ``Grid``.

:class:`NodeChannel` sends one message per node, pulls the replies, retries nodes the
SuperLink reports unavailable while they come back within ``node-grace-seconds``, and
reports what failed for good; what to do about a failure (drop the node, stop the run)
is the workflow's call. It also counts each node's traffic and audits what each node
sent (array names, dtypes and shapes; never values).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flwr.app import Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from mmbind.errors import FederationError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How often the coordinator asks the SuperLink for replies."""
NODE_POLL_SECONDS = 1.0
"""How often the coordinator asks the SuperLink which nodes are connected."""
CONNECT_POLL_SECONDS = 0.2
"""How often the coordinator looks for nodes while it waits for ``min-nodes``."""


class NodeChannel:
    """Message exchange with the nodes over a Flower ``Grid``.

    Parameters
    ----------
    grid : Grid
        Flower's grid of connected nodes.
    timeout : float or None
        Seconds to wait for the replies of one exchange (None: no limit).
    grace_seconds : float
        How long a node the SuperLink reports unavailable may take to come back.
    role : callable
        ``role(node_id)``: the node's name, or None before its manifest.
    event : callable
        ``event(data)``: appends to the run's event log.
    phase : callable
        ``phase()``: the name of the phase under way (for the event log).
    """

    def __init__(
        self,
        grid: Grid,
        *,
        timeout: float | None,
        grace_seconds: float,
        role: Callable[[int], str | None],
        event: Callable[[Mapping[str, Any]], None],
        phase: Callable[[], str],
    ) -> None:
        self.grid = grid
        self.timeout = timeout
        self.grace_seconds = grace_seconds
        self._role = role
        self._event = event
        self._phase = phase
        self.traffic: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        """Per node id, ``[bytes received from it, bytes sent to it]``."""

    def describe(self, node_id: int) -> str:
        return describe(node_id, self._role(node_id))

    def wait_for_nodes(self, min_nodes: int, wait_seconds: float) -> list[int]:
        """Node ids once ``min_nodes`` are connected; a FederationError after ``wait_seconds``.

        Connected means online in the SuperLink's eyes (``Grid.get_node_ids``: nodes
        whose heartbeat is current). flwr 1.42 keeps a node it knew before a restart
        listed as online until that node's old heartbeat lapses (2 x 30 s) even when it
        has not reconnected; ``mmbind-server``'s SuperLink marks such nodes offline when
        it starts (:mod:`mmbind.server.superlink`), so only reconnected nodes count.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            node_ids = sorted(self.grid.get_node_ids())
            if len(node_ids) >= min_nodes:
                return node_ids
            if time.monotonic() > deadline:
                raise FederationError(
                    f"only {len(node_ids)} of {min_nodes} nodes connected within "
                    f"{wait_seconds:.0f} s; start more nodes or lower min-nodes"
                )
            time.sleep(CONNECT_POLL_SECONDS)

    def connected(self) -> list[int]:
        """Ids of the nodes connected now (``Grid.get_node_ids``), sorted."""
        return sorted(self.grid.get_node_ids())

    def deliver(
        self, message_type: str, contents: Mapping[int, RecordDict]
    ) -> tuple[dict[int, RecordDict], dict[int, str]]:
        """Exchange ``contents`` until every node answered or failed.

        Returns the replies' contents by node id (in arrival order) and, by node id,
        why each failed node failed: an error reply, no reply within ``timeout``, or
        still unavailable after ``grace_seconds`` (a node the SuperLink reports
        unavailable is sent its message again once it is back).
        """
        out: dict[int, RecordDict] = {}
        failed: dict[int, str] = {}
        unavailable_since: dict[int, float] = {}
        pending = dict(contents)
        while pending:
            messages = [
                Message(content, dst_node_id=node_id, message_type=message_type)
                for node_id, content in pending.items()
            ]
            for node_id, content in pending.items():
                self.traffic[node_id][1] += content_bytes(content)
            replies = self._exchange(messages)
            # Errors for a lost node come from the SuperLink itself: map every reply back
            # to the node it answers through the message it replies to.
            sent: dict[str, int] = {}
            for m in messages:
                sent[m.metadata.message_id] = m.metadata.dst_node_id
                sent[m.object_id] = m.metadata.dst_node_id
            unavailable: dict[int, str] = {}
            answered: set[int] = set()
            for reply in replies:
                src = sent.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
                answered.add(src)
                if not reply.has_error():
                    out[src] = reply.content
                    self.traffic[src][0] += content_bytes(reply.content)
                    self._audit(src, message_type, reply.content)
                    continue
                why = reply.error.reason or f"error code {reply.error.code}"
                if reply.error.code == ErrorCode.NODE_UNAVAILABLE:
                    unavailable[src] = why
                else:
                    failed[src] = why
            for node_id in set(pending) - answered:
                failed[node_id] = (
                    f"no reply within {self.timeout:.0f} s" if self.timeout else "no reply"
                )
            now = time.monotonic()
            for node_id in unavailable:
                unavailable_since.setdefault(node_id, now)
            back = self._await_return(message_type, unavailable, unavailable_since)
            for node_id, why in unavailable.items():
                if node_id not in back:
                    grace = self.grace_seconds
                    failed[node_id] = f"{why} Not back within {grace:.0f} s (node-grace-seconds)."
            pending = {n: contents[n] for n in sorted(back)}
        return out, failed

    def _await_return(
        self, message_type: str, unavailable: Mapping[int, str], since: Mapping[int, float]
    ) -> set[int]:
        """Wait for unavailable nodes to reconnect; return those back within their grace."""
        grace = self.grace_seconds
        waiting = {n for n in unavailable if time.monotonic() - since[n] < grace}
        for node_id in sorted(waiting):
            log.warning(
                "%s unavailable in %s (%s); waiting up to %.0f s for it to come back",
                self.describe(node_id),
                message_type,
                unavailable[node_id],
                grace - (time.monotonic() - since[node_id]),
            )
            self._event(
                {
                    "kind": "unavailable",
                    "node_id": node_id,
                    "role": self._role(node_id) or "?",
                    "phase": self._phase(),
                    "message": message_type,
                    "grace_seconds": grace,
                }
            )
        back: set[int] = set()
        while waiting - back:
            back |= waiting & set(self.grid.get_node_ids())
            now = time.monotonic()
            if all(now - since[n] >= grace for n in waiting - back):
                break
            time.sleep(NODE_POLL_SECONDS)
        for node_id in sorted(back):
            log.info("%s is back; sending it %s again", self.describe(node_id), message_type)
        return back

    def _exchange(self, messages: Sequence[Message]) -> list[Message]:
        """Push ``messages`` and pull their replies, polling every ``POLL_SECONDS``.

        Flower's own ``send_and_receive`` polls every 3 s; over a phase of many
        short rounds that wait is a large share of a deployment's wall time.
        """
        pending = set(self.grid.push_messages(messages))
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        replies: list[Message] = []
        while pending:
            got = list(self.grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(POLL_SECONDS)
        return replies

    def _audit(self, node_id: int, message_type: str, content: RecordDict) -> None:
        """Record what a node sent: array names, dtypes and shapes (never values)."""
        arrays = [
            {"record": key, "array": name, "dtype": arr.dtype, "shape": list(arr.shape)}
            for key, record in content.array_records.items()
            for name, arr in record.items()
        ]
        self._event({"kind": "wire", "node_id": node_id, "message": message_type, "arrays": arrays})


def describe(node_id: int, role: str | None) -> str:
    """A node as log lines and errors name it."""
    return f"node {node_id} ({role})" if role is not None else f"node {node_id}"


def content_bytes(content: RecordDict) -> int:
    """Approximate payload bytes of a message: its arrays plus its config and metrics."""
    total = 0
    for record in content.array_records.values():
        total += int(record.count_bytes())
    for crec in content.config_records.values():
        total += int(crec.count_bytes())
    for mrec in content.metric_records.values():
        total += int(mrec.count_bytes())
    return total
