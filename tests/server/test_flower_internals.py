"""Every Flower name mmbind uses beyond Flower's public API, pinned in one place.

Flower's public API is ``flwr.app``, ``flwr.serverapp``, ``flwr.clientapp`` and
``flwr.simulation``. Anything else mmbind (or its tests) reaches for is listed in
:data:`INTERNALS` with where it is used, so that a Flower upgrade that moves, renames or
re-signs one fails here in seconds with the whole list of what moved, instead of as a
lost reply in a deployment. The second test keeps the list complete: an import of an
unlisted internal module anywhere in the repository fails it.

Where the internals are used:

* ``server/inprocess.py``: ``Metadata._message_id`` (a SuperLink's message id),
  ``TaskIdentity`` (the process's task identity, as ``flwr.server.compat`` sets it);
* ``server/superlink.py``: the object-store factory of ``flwr.superlink.main``, patched
  so payloads stay in memory, and the link state it restarts with; its middleware list (the
  API gate goes first) and the Control API's ``start_run`` and ``Fab`` (app admission and the
  coordinator's signature on admitted bundles);
* ``server/workflow/channel.py``: ``ErrorCode.NODE_UNAVAILABLE`` of an error reply;
* ``client/cli.py``: Flower's ``--node-config`` parser;
* ``server/deployment.py``: ``python -m flwr.cli.app run|ls``;
* tests: the record serde (``test_wire_messages``), the federation manager
  (``test_superlink_state``), ``Fab`` and the SuperNode's ``_verify_fab``
  (``test_admission``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from mmbind.server.inprocess import assign_message_id, claim_task_identity, task_identity

# Importing flwr.cli.app builds Flower's typer CLI, which warns about its own options.
pytestmark = pytest.mark.filterwarnings("ignore:The 'is_flag' and 'flag_value':DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ("flwr.app", "flwr.serverapp", "flwr.clientapp", "flwr.simulation")
"""Flower's public API: imports from these need no pin."""
SOURCES = ("mmbind", "binding", "client", "server", "lab", "bench", "tests")


@dataclass(frozen=True)
class Internal:
    """One internal Flower name: ``module``'s attribute path ``name`` (empty: the module).

    ``params`` are parameter names a call passes by name or position and relies on;
    ``used_by`` says where.
    """

    module: str
    name: str
    used_by: str
    params: tuple[str, ...] = ()


INTERNALS = (
    Internal("flwr.supercore.task_identity", "TaskIdentity", "server/inprocess.py"),
    Internal("flwr.supercore.task_identity", "TaskIdentity._run_id", "server/inprocess.py"),
    Internal("flwr.supercore.task_identity", "TaskIdentity._node_id", "server/inprocess.py"),
    Internal("flwr.supercore.task_identity", "TaskIdentity._task_id", "server/inprocess.py"),
    Internal("flwr.app", "Metadata.message_id", "server/inprocess.py (its _message_id)"),
    Internal(
        "flwr.superlink.main",
        "get_objectstore_linkstate_factories",
        "server/superlink.py (replaced)",
        ("database", "federation_manager"),
    ),
    Internal("flwr.superlink.main", "create_app", "server/superlink.py (calls the factory)"),
    Internal(
        "flwr.server.superlink.linkstate",
        "LinkStateFactory",
        "server/superlink.py",
        ("database", "federation_manager", "objectstore_factory"),
    ),
    Internal("flwr.server.superlink.linkstate", "LinkStateFactory.state", "server/superlink.py"),
    Internal(
        "flwr.server.superlink.linkstate",
        "LinkState.get_node_info",
        "server/superlink.py",
        ("statuses",),
    ),
    Internal(
        "flwr.server.superlink.linkstate",
        "LinkState.deactivate_node",
        "server/superlink.py",
        ("node_id",),
    ),
    Internal(
        "flwr.supercore.object_store", "ObjectStoreFactory", "server/superlink.py", ("database",)
    ),
    Internal("flwr.supercore.constant", "FLWR_IN_MEMORY_DB_NAME", "server/superlink.py"),
    Internal("flwr.supercore.constant", "NodeStatus.ONLINE", "server/superlink.py"),
    Internal("flwr.superlink.cli", "flower_superlink", "server/superlink.py"),
    Internal("flwr.superlink.main", "_get_middleware", "server/superlink.py (the API gate first)"),
    Internal("flwr.supercore.error", "FlowerError", "server/superlink.py (a refused run)"),
    Internal("flwr.supercore.error", "ApiErrorCode.FORBIDDEN_ACTION", "server/superlink.py"),
    Internal(
        "flwr.superlink.servicer.control",
        "control_handlers.start_run",
        "server/superlink.py (admission: only mmbind's bundle)",
        ("request",),
    ),
    Internal(
        "flwr.superlink.servicer.control",
        "control_handlers.Fab",
        "server/superlink.py (the coordinator signs admitted bundles)",
        ("hash_str", "content", "verifications"),
    ),
    Internal(
        "flwr.supercore.fab", "Fab", "tests/server/test_admission.py", ("hash_str", "content")
    ),
    Internal("flwr.cli.build", "build_fab_from_disk", "tests/server/test_admission.py"),
    Internal(
        "flwr.supernode.start_client_internal",
        "_verify_fab",
        "tests/server/test_admission.py (the SuperNode's --trusted-entities check)",
    ),
    Internal("flwr.common.constant", "ErrorCode.NODE_UNAVAILABLE", "server/workflow/channel.py"),
    Internal("flwr.common.config", "parse_config_args", "client/cli.py", ("config", "flatten")),
    Internal("flwr.cli.app", "app", "server/deployment.py (python -m flwr.cli.app)"),
    Internal("flwr.common.serde", "recorddict_to_proto", "tests/mmbind/test_wire_messages.py"),
    Internal("flwr.common.serde", "recorddict_from_proto", "tests/mmbind/test_wire_messages.py"),
    Internal(
        "flwr.superlink.config_loader",
        "get_federation_manager",
        "tests/server/test_superlink_state.py",
    ),
)


def _resolve(item: Internal) -> Any:
    obj: Any = importlib.import_module(item.module)
    for part in filter(None, item.name.split(".")):
        obj = inspect.getattr_static(obj, part) if part.startswith("_") else getattr(obj, part)
    return obj


def _problem(item: Internal) -> str | None:
    """What moved about ``item``, or None when it is where mmbind expects it."""
    try:
        obj = _resolve(item)
    except (ImportError, AttributeError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    if item.params:
        try:
            have = inspect.signature(obj).parameters
        except (TypeError, ValueError) as exc:
            return f"no signature: {exc}"
        missing = [p for p in item.params if p not in have]
        if missing:
            return f"parameters {missing} gone; it takes {list(have)}"
    return None


def _behaviour_problems() -> list[str]:
    """How mmbind uses the internals, checked for what it relies on."""
    problems = []
    import flwr.superlink.main as superlink_main
    from flwr.supercore.task_identity import TaskIdentity

    # server/superlink.py replaces the factory in flwr.superlink.main: that only works while
    # create_app looks it up there, as a module global, at call time.
    names = superlink_main.create_app.__code__.co_names
    if "get_objectstore_linkstate_factories" not in names:
        problems.append(
            "flwr.superlink.main.create_app: no longer calls get_objectstore_linkstate_factories "
            "by its module-global name (server/superlink.py's patch would do nothing)"
        )
    # server/inprocess.py: the task identity is settable and reads back.
    with task_identity(run_id=7):
        if (TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id) != (7, 0, 0):
            problems.append("TaskIdentity: claim_task_identity's values do not read back")
        # A message's id is its metadata's _message_id; a reply points back to it.
        msg = Message(
            RecordDict({"c": ConfigRecord({"x": 1})}), dst_node_id=5, message_type="query"
        )
        assign_message_id(msg, "pinned-1")
        reply = Message(RecordDict(), reply_to=msg)
        if msg.metadata.message_id != "pinned-1":
            problems.append("Metadata._message_id: message_id no longer reads it")
        if reply.metadata.reply_to_message_id != "pinned-1":
            problems.append("Metadata._message_id: a reply no longer points back to it")
    claim_task_identity()  # leave the process as the in-process grid would
    return problems


def test_every_flower_internal_mmbind_uses_is_where_it_expects() -> None:
    # Execute: look every pinned name up, and use the ones whose behaviour mmbind relies on
    problems = [
        f"{item.module}.{item.name} (used by {item.used_by}): {why}"
        for item in INTERNALS
        if (why := _problem(item)) is not None
    ]
    problems += _behaviour_problems()
    # Assert: one failure listing everything that moved
    assert not problems, "Flower internals that moved:\n" + "\n".join(problems)


def _flwr_imports(path: Path) -> set[str]:
    """Modules of ``flwr`` that ``path`` imports (``import`` and ``from ... import``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "flwr" or m.startswith("flwr.")}


def test_the_pinned_list_covers_every_internal_flower_import() -> None:
    # Prepare: every Python file of the repository
    files = [p for d in SOURCES for p in sorted((ROOT / d).rglob("*.py"))]
    pinned = {item.module for item in INTERNALS}
    # Execute
    unpinned = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in files
        for module in _flwr_imports(path)
        if module not in PUBLIC and module not in pinned
    }
    # Assert
    assert files
    assert not unpinned, "internal Flower imports missing from INTERNALS:\n" + "\n".join(
        sorted(unpinned)
    )
