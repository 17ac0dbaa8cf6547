"""``mmbind-server``: the coordinator of a deployment, on one host.

It runs the Flower SuperLink (nodes join it, ``mmbind run`` submits to it) and
the BindingService (gRPC, backed by Redis when ``--redis-url`` is given, else
in-process), and stops both cleanly on SIGTERM or Ctrl-C. If it dies otherwise (even
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

from mmbind import __version__
from mmbind.errors import ConfigError, MMBindError
from mmbind.processes import (
    ManagedProcess,
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
        "--redis-url", default=None, help="Redis for the binding state, e.g. redis://h:6379/0"
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
        from mmbind.server.redis_store import check_redis_url

        check_redis_url(redis_url)
    # main()'s default state folder, checked (and created) like a given one
    state_dir = args.state_dir or Path.home() / ".cache" / "mmbind" / f"coordinator-{args.port}"
    writable_folder(state_dir, "--state-dir")
    if args.log_dir:
        writable_folder(args.log_dir, "--log-dir")


def open_store(redis_url: str) -> BindingStore:
    """Redis when a URL is given (checked now, with retries), else the in-process store."""
    if not redis_url:
        return InMemoryBindingStore()
    from mmbind.server.redis_store import RedisBindingStore

    store = RedisBindingStore(redis_url)
    store.runs()  # fail now, with a clear StoreError, if Redis does not answer
    return store


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
        for port in (args.port, binding_port):
            if port_is_open(args.host, port):
                raise ConfigError(f"port {args.host}:{port} is already in use; pick another --port")
        redis_url = args.redis_url if args.redis_url is not None else settings.redis_url
        store = open_store(redis_url)
        from mmbind.server.grpc_service import serve

        server = serve(args.host, binding_port, store)
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
                sys.executable, "-m", "mmbind.server.superlink", "--insecure",
                "--host", args.host, "--port", str(args.port),
                "--disable-runtime-dependency-installation",
                # Registered nodes outlive a restart: they keep their ids and reconnect.
                "--database", str(state_dir / "superlink.db"),
            ],
            # It starts flower-superexec by name: from this environment's scripts folder.
            env={"FLWR_TELEMETRY_ENABLED": "0", "PATH": scripts_path()},
            log_file=log_file,
            new_session=False,  # dies with mmbind-server's process group,
            die_with_parent=True,  # and with mmbind-server alone, even on SIGKILL
        )  # fmt: skip
        wait_for_port(args.host, args.port, 60, process=superlink)
        print(
            f"mmbind-server: SuperLink at {args.host}:{args.port}, BindingService at "
            f"{args.host}:{binding_port} (store: {redis_url or 'in-process'})",
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
