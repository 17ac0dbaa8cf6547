"""Flower's SuperLink as ``mmbind-server`` runs it: link state on disk, payloads in memory.

The coordinator keeps the SuperLink's *link state* (registered nodes, runs) in a SQLite
file so that nodes keep their ids across a coordinator restart. Flower puts its *object
store* (every message's arrays) in the same file; on a loaded 2-core host, nodes pushing
megabytes of weights at once then hold SQLite's write lock past its 5 s busy timeout,
and a reply is lost ("Failed to store object ... database is locked"). Payloads need no
persistence (a resumed run sends new messages), so they stay in memory here.

Nodes the link state lists as online when the SuperLink starts are marked offline:
they are online again once they reconnect (their first heartbeat), so a run started
right after a restart waits for them instead of sending to nodes not yet there.

Run as ``python -m mmbind.server.superlink [flower-superlink arguments]``.
"""

from __future__ import annotations

import sys
from typing import Any


def _use_memory_object_store() -> None:
    """Make flwr 1.42's SuperLink pair a file link state with an in-memory object store."""
    import flwr.superlink.main as superlink_main
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
    from flwr.supercore.object_store import ObjectStoreFactory

    name = "get_objectstore_linkstate_factories"  # imported into flwr.superlink.main
    original = getattr(superlink_main, name)

    def factories(database: str, federation_manager: Any) -> tuple[Any, Any]:
        on_sqlite = "://" not in database or database.startswith("sqlite")
        if database == FLWR_IN_MEMORY_DB_NAME or not on_sqlite:
            pair: tuple[Any, Any] = original(database, federation_manager)
            return pair
        objects = ObjectStoreFactory(FLWR_IN_MEMORY_DB_NAME)
        links = LinkStateFactory(database, federation_manager, objects)
        _forget_connections(links.state())
        return objects, links

    setattr(superlink_main, name, factories)


def _forget_connections(state: Any) -> list[int]:
    """Mark the nodes a restarted SuperLink's database lists as online offline.

    flwr 1.42 keeps a node online until its last heartbeat lapses (2 x its 30 s
    interval), and that record survives a restart: ``Grid.get_node_ids`` would list
    nodes that have not reconnected, and a message sent to one fails with "Node
    Unavailable" once its old heartbeat lapses. No node is connected to a SuperLink
    that has just started; each is online again with its first heartbeat to it.
    """
    from flwr.supercore.constant import NodeStatus

    stale = [int(n.node_id) for n in state.get_node_info(statuses=[NodeStatus.ONLINE])]
    for node_id in stale:
        state.deactivate_node(node_id)
    if stale:
        print(
            f"mmbind: {len(stale)} node(s) known from before the restart count as connected "
            "once they reconnect",
            file=sys.stderr,
            flush=True,
        )
    return stale


def main() -> int:
    _use_memory_object_store()
    from flwr.superlink.cli import flower_superlink

    sys.argv[0] = "flower-superlink"
    flower_superlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
