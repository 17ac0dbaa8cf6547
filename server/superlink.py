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

Its Control API (``flwr run``, ``ls``, ``stop``, ``supernode register``) and Runtime API
(the SuperExec and the ServerApps) share the nodes' port in flwr 1.42 (one HTTP server),
so they are guarded here (:class:`ApiGate`, :func:`gate`): with ``MMBIND_CERTS_DIR`` set
(``mmbind-server --certs``) a Control API call needs the operator's bearer token, and
without it only callers on this machine may use the Control API; the Runtime API serves
callers on this machine only. A run starts only with mmbind's own app bundle, which the
coordinator then signs for the nodes (:mod:`mmbind.server.admission`).

Run as ``python -m mmbind.server.superlink [flower-superlink arguments]``.
"""

from __future__ import annotations

import hmac
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mmbind.processes import is_loopback

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/v1/control/"
RUNTIME_PREFIX = "/v1/runtime/"


def gate(
    path: str,
    peer: str,
    authorization: str,
    token: str | None,
    local: frozenset[str] = frozenset(),
) -> tuple[int, str] | None:
    """Whether an HTTP call to the SuperLink may pass: None, or (status, reason) to refuse.

    Parameters
    ----------
    path : str
        The request path (``/v1/control/start-run`` ...).
    peer : str
        The caller's IP address.
    authorization : str
        Its ``Authorization`` header (``""`` when absent).
    token : str or None
        The operator's token; None when the coordinator runs without certificates.
    local : frozenset of str
        This machine's own addresses besides loopback (the SuperLink's ``--host`` when it
        names one: Flower's own processes then connect from it).
    """
    here = is_loopback(peer) or peer in local
    if path.startswith(RUNTIME_PREFIX) and not here:
        return 403, "the Runtime API serves this machine's processes only"
    if path.startswith(CONTROL_PREFIX):
        if token is None:
            if not here:
                return 403, "without certificates the Control API serves this machine only"
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return 401, "the Control API needs the operator's token (mmbind run --certs)"
    return None


class ApiGate:
    """ASGI middleware applying :func:`gate` before any of Flower's own handling."""

    def __init__(self, app: ASGIApp, token: str | None, local: frozenset[str]) -> None:
        self.app = app
        self.token = token
        self.local = local

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            peer = str((scope.get("client") or ("", 0))[0])
            path = str(scope.get("path", ""))
            refusal = gate(path, peer, authorization, self.token, self.local)
            if refusal is not None:
                status, reason = refusal
                body = reason.encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _own_host(argv: list[str]) -> frozenset[str]:
    """The SuperLink's ``--host`` when it is one address of this machine (not 0.0.0.0/::)."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--host" and i + 1 < len(argv) else ""
        value = arg.split("=", 1)[1] if arg.startswith("--host=") else value
        if value and value not in ("0.0.0.0", "::", "[::]"):
            return frozenset({value.strip("[]")})
    return frozenset()


def _guard_apis(token: str | None) -> None:
    """Put :class:`ApiGate` first in flwr 1.42's SuperLink middleware stack."""
    import flwr.superlink.main as superlink_main
    from starlette.middleware import Middleware

    original = superlink_main._get_middleware

    def middleware() -> list[Middleware]:
        local = _own_host(sys.argv[1:])
        return [Middleware(ApiGate, token=token, local=local), *original()]

    setattr(superlink_main, "_get_middleware", middleware)  # noqa: B010


def _admit_only_mmbind(signing_key: Any) -> None:
    """Refuse every run but mmbind's app bundle; sign admitted bundles for the nodes."""
    from flwr.supercore.error import ApiErrorCode, FlowerError
    from flwr.superlink.servicer.control import control_handlers

    from mmbind.server.admission import AppRefused, check_fab, sign_fab

    original = control_handlers.start_run
    fab_class = getattr(control_handlers, "Fab")  # noqa: B009

    def start_run(request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.app_spec or not request.fab.content:
            raise FlowerError(
                ApiErrorCode.FORBIDDEN_ACTION,
                "this coordinator runs only mmbind's app, as `mmbind run` submits it",
            )
        try:
            check_fab(bytes(request.fab.content))
        except AppRefused as exc:
            print(f"mmbind: refused a run: {exc}", file=sys.stderr, flush=True)
            raise FlowerError(ApiErrorCode.FORBIDDEN_ACTION, str(exc)) from None
        return original(request, *args, **kwargs)

    setattr(control_handlers, "start_run", start_run)  # noqa: B010
    if signing_key is not None:

        def signed_fab(hash_str: str, content: bytes, verifications: dict[str, str]) -> Any:
            # Reached only through start_run above, after check_fab admitted `content`.
            return fab_class(hash_str, content, verifications or sign_fab(content, signing_key))

        setattr(control_handlers, "Fab", signed_fab)  # noqa: B010


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
    from mmbind.settings import MMBindSettings

    certs_dir = MMBindSettings.load().certs_dir  # set by mmbind-server (its --certs or "")
    token = signing_key = None
    if certs_dir:
        from mmbind.certs import CoordinatorCerts
        from mmbind.server.admission import load_signing_key

        certs = CoordinatorCerts.load(certs_dir)
        token = certs.operator_token
        signing_key = load_signing_key(certs.signing_key)
    # Flower's legacy gRPC Control API (opt-in by this variable) would bypass the gate.
    os.environ.pop("FLWR_INTERNAL_GRPC_CONTROL_API", None)
    _guard_apis(token)
    _admit_only_mmbind(signing_key)
    from flwr.superlink.cli import flower_superlink

    sys.argv[0] = "flower-superlink"
    flower_superlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
