"""Child processes of the CLIs: start in their own process group, stop them whole.

Flower's SuperLink and SuperNode spawn helpers of their own (SuperExec,
ServerApp and ClientApp processes); stopping only the direct child would leave
those behind, so every child gets a session and is signalled as a group.

A child started with ``die_with_parent=True`` is killed by the kernel when the
process that started it dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from mmbind.errors import ConfigError, MMBindError

log = logging.getLogger(__name__)

_DIE_WITH_PARENT = (
    "import ctypes, ctypes.util, os, signal, sys\n"
    "libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"
    "libc.prctl(1, signal.SIGKILL, 0, 0, 0)\n"  # PR_SET_PDEATHSIG, kept across exec
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent died before prctl took effect
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
"""A launcher that asks for SIGKILL when its parent dies, then execs the real command.

It replaces a ``preexec_fn``: with one, ``subprocess`` forks with ``fork()``, whose atfork
handlers restart gRPC's poller thread in the child, which can then abort on the descriptor
``close_fds`` just closed ("epoll_wait error: Bad file descriptor", exit -6, grpc/grpc#43055)
when the parent (mmbind-server) runs a gRPC server. Without one, ``subprocess`` uses
``vfork``, which runs no atfork handlers.
"""


def _die_with_parent_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` behind :data:`_DIE_WITH_PARENT` (Linux); unchanged elsewhere."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    if shutil.which(argv[0]) is None:  # the launcher would fail after the fork
        raise FileNotFoundError(argv[0])
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *argv]


def scripts_path() -> str:
    """``PATH`` with this interpreter's scripts folder first.

    Flower's processes start each other by name (the SuperLink starts ``flower-superexec``,
    a SuperNode ``flwr-clientapp``); with the scripts folder first they find the flwr installed
    beside mmbind even when its virtual environment is not activated.
    """
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def parse_address(address: str, what: str = "address") -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` too); a bad value is a :class:`ConfigError`."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"invalid {what} {address!r}; expected HOST:PORT, e.g. 127.0.0.1:9093")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost), not a network."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (binds it, as uvicorn and gRPC do)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def writable_folder(path: str | Path, what: str) -> Path:
    """Create the folder ``path`` if needed and prove it writable; return it.

    Entry points call this before any work, so a folder that cannot hold their output
    fails in a second instead of after the work is done.

    Raises
    ------
    ConfigError
        ``path`` is a file, or the folder cannot be created or written; the message
        names ``what`` (the flag) and the path.
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {str(folder)!r} is a file; give a folder (created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(
            f"{what} {str(folder)!r} cannot be created or written ({why}); give a folder "
            "you can write"
        ) from None
    return folder


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ManagedProcess:
    """A child process, by default in its own session and stopped with its whole group.

    With ``new_session=False`` the child stays in the caller's process group, so a
    signal to that group (a crash of the whole coordinator, say) reaches it too.
    With ``die_with_parent=True`` the kernel kills the child when this process dies,
    however it dies (Linux; the signal follows the *thread* that started the child,
    so start such children from the main thread).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
        cwd: Path | None = None,
        new_session: bool = True,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.new_session = new_session
        self.argv = list(argv)
        self._log: IO[bytes] | None = open(log_file, "ab") if log_file else None  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                _die_with_parent_argv(self.argv) if die_with_parent else self.argv,
                env={**os.environ, **(env or {})},
                stdout=self._log if self._log else None,
                stderr=subprocess.STDOUT if self._log else None,
                cwd=cwd,
                start_new_session=new_session,
            )
        except FileNotFoundError:
            raise MMBindError(
                f"cannot start {name}: {self.argv[0]!r} not found; is mmbind installed in "
                "this environment (pip install -e .)?"
            ) from None
        log.info("started %s (pid %d): %s", name, self.proc.pid, " ".join(self.argv))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, then SIGKILL it after ``timeout`` seconds."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        else:
            self._signal(signal.SIGKILL)  # reap helpers it left behind
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, as tests simulate it)."""
        self._signal(signal.SIGKILL)
        self.proc.wait(5)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.new_session:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)


def wait_for_port(
    host: str, port: int, timeout: float, *, process: ManagedProcess | None = None
) -> None:
    """Block until ``host:port`` accepts connections; an error if it does not in time."""
    deadline = time.monotonic() + timeout
    while not port_is_open(host, port):
        if process is not None and process.poll() is not None:
            raise MMBindError(
                f"{process.name} exited with code {process.poll()} "
                f"before listening on {host}:{port}"
            )
        if time.monotonic() > deadline:
            raise MMBindError(f"nothing listens on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.1)
