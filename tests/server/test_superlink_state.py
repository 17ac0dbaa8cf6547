"""After a restart, mmbind-server's SuperLink counts a node as connected once it reconnects.

flwr 1.42 (its real SQLite link state here) keeps listing a node it knew before the
restart as online until that node's old heartbeat lapses; ``_forget_connections``,
which the SuperLink of ``mmbind-server`` runs when it starts, lists it again only after
its first heartbeat to the new SuperLink.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NodeStatus
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.superlink.config_loader import get_federation_manager

from mmbind.server.superlink import _forget_connections

pytestmark = pytest.mark.filterwarnings("ignore:No path_separator found:DeprecationWarning")


def open_state(database: Path) -> Any:
    """A SuperLink's link state over ``database``, as a freshly started SuperLink opens it."""
    objects = ObjectStoreFactory(FLWR_IN_MEMORY_DB_NAME)
    return LinkStateFactory(str(database), get_federation_manager(), objects).state()


def online(state: Any) -> list[int]:
    return [int(n.node_id) for n in state.get_node_info(statuses=[NodeStatus.ONLINE])]


def test_nodes_known_before_a_restart_count_once_they_reconnect(tmp_path: Path) -> None:
    # Prepare: a node joins a SuperLink, which then stops (its database stays)
    database = tmp_path / "superlink.db"
    before = open_state(database)
    node = before.create_node("owner", "node", b"key-of-A", 30.0)
    assert before.activate_node(node, 30.0)
    assert online(open_state(database)) == [node]  # flwr alone: still "online" after it
    # Execute: the restarted SuperLink forgets connections
    restarted = open_state(database)
    forgotten = _forget_connections(restarted)
    # Assert: not connected until its next heartbeat, then connected again
    assert forgotten == [node]
    assert online(restarted) == []
    assert restarted.acknowledge_node_heartbeat(node, 30.0)
    assert online(restarted) == [node]
