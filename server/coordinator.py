"""``mmbind-server``: the coordinator of a deployment, on one host.

It runs the Flower SuperLink (nodes join it, ``mmbind run`` submits to it) and
the BindingService (gRPC, backed by Redis when ``--redis-url`` is given, else
in-process), and stops both cleanly on SIGTERM or Ctrl-C.

Security (``--certs DIR``, the coordinator/ folder of ``mmbind certs init``, or
``MMBIND_CERTS_DIR``): the SuperLink serves TLS and admits only registered nodes
(``--enable-supernode-auth``), its Control API needs the operator's token and runs only
mmbind's own app (:mod:`mmbind.server.superlink`); the BindingService serves TLS and
checks every caller's token and role (:mod:`mmbind.server.grpc_service`). Without
certificates it starts only on loopback addresses, unless ``--insecure`` says otherwise
explicitly (and it then warns on every start). If it dies otherwise (even
SIGKILL) the SuperLink dies with it (``die_with_parent``), the SuperLink's SuperExec
follows (Flower watches its parent) and so does a run's ServerApp
(:mod:`mmbind.server.liveness`): nothing it started outlives it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from mmbind import __version__
from mmbind.errors import ConfigError, MMBindError
from mmbind.processes import (
    ManagedProcess,
    is_loopback,
    parse_address,
    port_is_open,
    scripts_path,
    wait_for_port,
    writable_folder,
)
from mmbind.server.store import BindingStore, InMemoryBindingStore
from mmbind.settings import MMBindSettings

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmbind-server",
        description="Start an mmbind coordinator: Flower SuperLink + BindingService.",
    )
    p.add_argument("--version", action="version", version=f"mmbind {__version__}")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9093, help="SuperLink port (nodes, mmbind run)")
    p.add_argument(
        "--binding-port", type=int, default=0, help="BindingService port (default PORT+1)"
    )
    p.add_argument(
        "--binding-host",
        default="127.0.0.1",
        help="address the BindingService listens on (default 127.0.0.1: only this machine; "
        "give 0.0.0.0 for `mmbind run` from other machines, with --certs)",
    )
    p.add_argument(
        "--redis-url",
        default=None,
        help="Redis for the binding state, e.g. redis://h:6379/0 or rediss://user@h:6380/0 "
        "(no password here: MMBIND_REDIS_PASSWORD or --redis-password-file)",
    )
    p.add_argument(
        "--redis-password-file", default="", help="file holding the Redis password (one line)"
    )
    p.add_argument(
        "--certs",
        default="",
        help="the coordinator/ folder of `mmbind certs init`: TLS, node and operator "
        "authentication (default: MMBIND_CERTS_DIR)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext and no authentication, even on a network address (outranks "
        "MMBIND_CERTS_DIR); anyone who reaches the ports can read the data and run code",
    )
    p.add_argument(
        "--state-dir",
        default="",
        help="folder for the SuperLink's database, so nodes survive a coordinator restart "
        "(default: ~/.cache/mmbind/coordinator-PORT)",
    )
    p.add_argument("--log-dir", default="", help="folder for the SuperLink's log (default: stderr)")
    p.add_argument("--log-level", default=None)
    return p


def check_args(args: argparse.Namespace, settings: MMBindSettings) -> None:
    """Refuse bad arguments before anything starts; each error names the value and the fix."""
    parse_address(f"{args.host}:{args.port}", "--host/--port")
    if args.binding_port:
        parse_address(f"{args.host}:{args.binding_port}", "--binding-port")
        if args.binding_port == args.port:
            raise ConfigError(
                f"--binding-port {args.binding_port} is the SuperLink's --port; give the "
                f"BindingService another port (default: PORT+1 = {args.port + 1})"
            )
    elif args.port + 1 > 65535:
        raise ConfigError(
            f"--port {args.port} leaves no PORT+1 for the BindingService; give --binding-port"
        )
    redis_url = args.redis_url if args.redis_url is not None else settings.redis_url
    if redis_url:
        from mmbind.server.redis_store import check_redis_url, redact_url

        check_redis_url(redis_url)
        if args.redis_url and redact_url(args.redis_url) != args.redis_url:
            raise ConfigError(
                f"--redis-url {redact_url(args.redis_url)!r} carries a password, which `ps` "
                "shows to every user; put it in MMBIND_REDIS_PASSWORD or "
                "--redis-password-file and leave it out of the URL"
            )
    if args.binding_host != args.host:
        parse_address(f"{args.binding_host}:{args.port}", "--binding-host")
    certs_dir(args, settings)  # refuses a network address without certificates
    # main()'s default state folder, checked (and created) like a given one
    state_dir = args.state_dir or Path.home() / ".cache" / "mmbind" / f"coordinator-{args.port}"
    writable_folder(state_dir, "--state-dir")
    if args.log_dir:
        writable_folder(args.log_dir, "--log-dir")


def certs_dir(args: argparse.Namespace, settings: MMBindSettings) -> str:
    """The certificates folder to use, ``""`` for none; fails closed.

    ``--insecure`` outranks ``MMBIND_CERTS_DIR``; without certificates only loopback
    addresses are served unless ``--insecure`` is given.
    """
    if args.insecure and args.certs:
        raise ConfigError("--insecure and --certs exclude each other; give one")
    if args.insecure:
        return ""
    folder = str(args.certs or settings.certs_dir)
    if folder:
        from mmbind.certs import CoordinatorCerts

        names = CoordinatorCerts.load(folder).names()  # every file there, or a clear error
        for flag, host in (("--host", args.host), ("--binding-host", args.binding_host)):
            local = _connect_host(host)  # where this machine's own processes connect
            if local not in names:
                raise ConfigError(
                    f"{flag} {host}: this machine's processes connect to {local}, which the "
                    f"certificate in {folder!r} does not name (it names "
                    f"{', '.join(sorted(names))}); make the certificates with "
                    f"`mmbind certs init --host ...,{local}`"
                )
        return folder
    for flag, host in (("--host", args.host), ("--binding-host", args.binding_host)):
        if not is_loopback(host):
            raise ConfigError(
                f"{flag} {host} is reachable from other machines: give --certs (the "
                "coordinator/ folder of `mmbind certs init`) or, to serve plaintext to anyone "
                "who can connect, --insecure"
            )
    return ""


def redis_password(args: argparse.Namespace, settings: MMBindSettings) -> str | None:
    """The Redis password from ``--redis-password-file``, MMBIND_REDIS_PASSWORD(_FILE)."""
    from mmbind.certs import read_secret

    path = args.redis_password_file or settings.redis_password_file
    if path:
        return read_secret(path, "Redis password")
    return settings.redis_password.get_secret_value() or None


def open_store(redis_url: str, password: str | None = None) -> BindingStore:
    """Redis when a URL is given (checked now, with retries), else the in-process store."""
    if not redis_url:
        return InMemoryBindingStore()
    from mmbind.server.redis_store import RedisBindingStore

    store = RedisBindingStore(redis_url, password=password)
    store.runs()  # fail now, with a clear StoreError, if Redis does not answer
    return store


def _connect_host(host: str) -> str:
    """Where a process of this machine reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host


def _local_address(host: str, port: int) -> str:
    connect = _connect_host(host)
    return f"[{connect}]:{port}" if ":" in connect else f"{connect}:{port}"


def _serve_binding(host: str, port: int, store: BindingStore, folder: str) -> Any:
    """The BindingService: TLS and token roles with certificates, plaintext without."""
    from mmbind.server.grpc_service import OPERATOR, SERVERAPP, Authorizer, serve

    if not folder:
        return serve(host, port, store)
    import grpc

    from mmbind.certs import CoordinatorCerts

    certs = CoordinatorCerts.load(folder)
    credentials = grpc.ssl_server_credentials([(certs.key.read_bytes(), certs.cert.read_bytes())])
    authorizer = Authorizer({SERVERAPP: certs.serverapp_token, OPERATOR: certs.operator_token})
    return serve(host, port, store, credentials=credentials, authorizer=authorizer)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = MMBindSettings.load()
    except MMBindError as exc:
        print(f"mmbind-server: error: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(
        level=(args.log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    superlink: ManagedProcess | None = None
    server = None
    try:
        check_args(args, settings)
        parse_address(f"{args.host}:{args.port}", "--host/--port")
        binding_port = args.binding_port or args.port + 1
        for host, port in ((args.host, args.port), (args.binding_host, binding_port)):
            if port_is_open(_connect_host(host), port):
                raise ConfigError(f"port {args.host}:{port} is already in use; pick another --port")
        redis_url = args.redis_url if args.redis_url is not None else settings.redis_url
        store = open_store(redis_url, redis_password(args, settings))
        folder = certs_dir(args, settings)
        if args.insecure:
            print(
                "mmbind-server: WARNING: --insecure: plaintext, no node or operator "
                "authentication; anyone who reaches these ports can read the data, forge "
                "results and run code on this machine and on the nodes",
                file=sys.stderr,
                flush=True,
            )
        server = _serve_binding(args.binding_host, binding_port, store, folder)
        superlink_security = ["--insecure"]
        if folder:
            from mmbind.certs import CoordinatorCerts

            certs = CoordinatorCerts.load(folder)
            superlink_security = [
                "--ssl-ca-certfile", str(certs.ca), "--ssl-certfile", str(certs.cert),
                "--ssl-keyfile", str(certs.key), "--enable-supernode-auth",
            ]  # fmt: skip
        state_dir = Path(
            args.state_dir or Path.home() / ".cache" / "mmbind" / f"coordinator-{args.port}"
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        log_file = Path(args.log_dir) / "superlink.log" if args.log_dir else None
        if log_file:
            log_file.parent.mkdir(parents=True, exist_ok=True)
        superlink = ManagedProcess(
            "flower-superlink",
            [
                # flower-superlink, with message payloads kept in memory (see the module)
                sys.executable, "-m", "mmbind.server.superlink", *superlink_security,
                "--host", args.host, "--port", str(args.port),
                "--disable-runtime-dependency-installation",
                # Registered nodes outlive a restart: they keep their ids and reconnect.
                "--database", str(state_dir / "superlink.db"),
            ],
            # It starts flower-superexec by name: from this environment's scripts folder.
            # The SuperLink, and the ServerApps it starts, read the certificates (or none:
            # --insecure outranks an inherited MMBIND_CERTS_DIR) and the BindingService.
            env={
                "FLWR_TELEMETRY_ENABLED": "0",
                "PATH": scripts_path(),
                "MMBIND_CERTS_DIR": folder,
                "MMBIND_BINDING_SERVICE": _local_address(args.binding_host, binding_port),
                "MMBIND_REDIS_PASSWORD": "",  # only this process talks to Redis
            },
            log_file=log_file,
            new_session=False,  # dies with mmbind-server's process group,
            die_with_parent=True,  # and with mmbind-server alone, even on SIGKILL
        )  # fmt: skip
        wait_for_port(_connect_host(args.host), args.port, 60, process=superlink)
        from mmbind.server.redis_store import redact_url

        print(
            f"mmbind-server: SuperLink at {args.host}:{args.port}, BindingService at "
            f"{args.binding_host}:{binding_port} (store: "
            f"{redact_url(redis_url) if redis_url else 'in-process'}; "
            f"{'TLS, authenticated nodes and operator' if folder else 'plaintext'})",
            file=sys.stderr,
            flush=True,
        )
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop.is_set():
            if superlink.poll() is not None:
                raise MMBindError(f"the SuperLink exited with code {superlink.poll()}")
            time.sleep(0.5)
        return 0
    except MMBindError as exc:
        print(f"mmbind-server: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if superlink is not None:
            superlink.stop()
        if server is not None:
            server.stop(2).wait()


if __name__ == "__main__":
    sys.exit(main())
