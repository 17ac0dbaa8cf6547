"""The run's roster: the nodes that reported a manifest, and those dropped since.

A node that fails for good is dropped from the rest of the run (the dropout recorded
in the results and the event log) as long as the run can still fine-tune and
evaluate; the last labelled or the last test node dropping out ends the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from mmbind.errors import FederationError
from mmbind.manifest import NodeManifest
from mmbind.server.workflow.channel import describe
from mmbind.server.workflow.result import RunResult

log = logging.getLogger(__name__)


class Roster:
    """The run's nodes by id (dropped ones included) and the dropped ones' reasons.

    Parameters
    ----------
    result : RunResult
        Where dropouts are recorded.
    event : callable
        ``event(data)``: appends to the run's event log.
    phase : callable
        ``phase()``: the name of the phase under way.
    """

    def __init__(
        self,
        result: RunResult,
        event: Callable[[Mapping[str, Any]], None],
        phase: Callable[[], str],
    ) -> None:
        self.nodes: dict[int, NodeManifest] = {}
        self.dropped: dict[int, str] = {}
        self._result = result
        self._event = event
        self._phase = phase

    def role(self, node_id: int) -> str | None:
        node = self.nodes.get(node_id)
        return node.role if node else None

    def active(self) -> list[NodeManifest]:
        """The nodes still in the run, by node id."""
        return [n for i, n in sorted(self.nodes.items()) if i not in self.dropped]

    def training(self) -> list[NodeManifest]:
        return [n for n in self.active() if n.trains]

    def order(self, node_id: int) -> tuple[str, int]:
        """Sort key of replies: node name first (ids change from run to run)."""
        return (self.role(node_id) or "", node_id)

    def drop(self, node_id: int, message_type: str, reason: str) -> None:
        """Drop a failed node; a FederationError when the run cannot go on without it."""
        if node_id in self.dropped:
            return
        self.dropped[node_id] = reason
        phase = self._phase()
        record = {
            "node_id": node_id,
            "role": self.role(node_id) or "?",
            "phase": phase,
            "message": message_type,
            "reason": reason[:500],
        }
        self._result.dropouts.append(record)
        self._event({"kind": "dropout", **record})
        who = describe(node_id, self.role(node_id))
        log.warning("dropping %s in %s: %s", who, phase, reason)
        active = self.active()
        if not any(n.labelled and n.trains for n in active):
            raise FederationError(
                f"the last labelled node dropped out ({who}: {reason}); fine-tuning cannot go on"
            )
        if not any(not n.trains for n in active):
            raise FederationError(
                f"the last test node dropped out ({who}: {reason}); evaluation cannot go on"
            )
