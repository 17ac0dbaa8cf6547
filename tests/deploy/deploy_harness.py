"""A deployment as real processes on loopback: redis, mmbind-server, mmbind-client nodes.

Secure by default, as a real deployment: certificates from ``mmbind certs init``, the
coordinator started with ``--certs``, every node registered (``mmbind nodes register``)
and started with its own folder, ``mmbind run --certs`` with the operator's folder.
``Deployment(..., secure=False)`` is the zero-configuration loopback coordinator.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from mmbind.certs import CertsLayout, add_node, init_certs
from mmbind.processes import ManagedProcess, free_port, port_is_open, wait_for_port

BIN = Path(sys.executable).parent

# Small settings: every phase runs, each with few messages (a message costs seconds here).
TINY = {
    "pretrain-rounds": 1, "pretrain-epochs": 2, "align-rounds": 1, "align-epochs": 1,
    "refresh-every": 1, "finetune-epochs": 5, "synthetic-trials": 3,
}  # fmt: skip
NODES = [
    ("A", "acc,skeleton", "1,2", ()),
    ("B", "acc,gyro", "3,4", ()),
    ("C", "skeleton,gyro", "5,6", ("--labelled",)),
    ("test", "skeleton,gyro", "7,8", ("--test",)),
]


class Relay:
    """A TCP relay that records every byte nodes and the SuperLink exchange."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.captured = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                conn.close()
                continue
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sockets = [a, b]
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select(sockets, [], [], 0.2)
                for s in ready:
                    data = s.recv(1 << 16)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
                    with self._lock:
                        self.captured += data
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def close(self) -> None:
        self._stop.set()
        self.server.close()


class Deployment:
    """mmbind-server and mmbind-client processes for one test, stopped at the end."""

    def __init__(
        self, tmp: Path, redis_url: str, *, secure: bool = True, redis_password: str = ""
    ) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.certs: CertsLayout | None = (
            init_certs(tmp / "certs", ["localhost", "127.0.0.1"], [n[0] for n in NODES])
            if secure
            else None
        )
        self.registered: dict[str, int] = {}
        self.port = free_port()
        self.binding_port = free_port()
        self.server: ManagedProcess | None = None
        self.nodes: dict[str, ManagedProcess] = {}
        self.relay: Relay | None = None
        self.paused: set[str] = set()
        self.runners: list[subprocess.Popen[str]] = []
        self.env = {
            "FLWR_TELEMETRY_ENABLED": "0",
            "MMBIND_LOG_LEVEL": "WARNING",
            # As a user calling .venv/bin/mmbind-server without activating the environment:
            # Flower's processes must still find each other (mmbind.processes.scripts_path).
            "PATH": os.pathsep.join(
                p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != BIN
            ),
            "MMBIND_CERTS_DIR": "",  # each process gets its folder by --certs
        }
        self.server_env = {**self.env, "MMBIND_REDIS_PASSWORD": redis_password}

    @property
    def superlink(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_server(self) -> None:
        self.server = ManagedProcess(
            "mmbind-server",
            [
                str(BIN / "mmbind-server"), "--port", str(self.port),
                "--binding-port", str(self.binding_port), "--redis-url", self.redis_url,
                "--log-dir", str(self.tmp), "--state-dir", str(self.tmp / "state"),
                *self.server_security(),
            ],
            env=self.server_env, log_file=self.tmp / "server.log",
        )  # fmt: skip
        wait_for_port("127.0.0.1", self.port, 60, process=self.server)
        wait_for_port("127.0.0.1", self.binding_port, 30, process=self.server)

    def server_security(self) -> list[str]:
        return ["--certs", str(self.certs.coordinator)] if self.certs is not None else []

    def node_security(self, name: str) -> list[str]:
        return ["--certs", str(self.certs.node(name))] if self.certs is not None else []

    def operator_security(self) -> list[str]:
        return ["--certs", str(self.certs.operator)] if self.certs is not None else []

    def register_command(self, name: str) -> list[str]:
        """``mmbind nodes register`` of node ``name``'s key, as the operator runs it."""
        assert self.certs is not None
        return [
            str(BIN / "mmbind"), "nodes", "register", "--superlink", self.superlink,
            *self.operator_security(), str(self.certs.operator / "nodes" / f"{name}.pub"),
            "--name", name,
        ]  # fmt: skip

    def register_nodes(self, names: list[str] | None = None) -> None:
        """Register each node's key with the coordinator (``mmbind nodes register``).

        ``names`` defaults to the paper's four nodes; a name without keys yet gets them
        (``mmbind certs add-node``).
        """
        if self.certs is None:
            return
        for name in names or [n[0] for n in NODES]:
            if name in self.registered:
                continue
            if not self.certs.node(name).exists():
                add_node(self.certs, name)
            out = subprocess.run(
                self.register_command(name), capture_output=True, text=True,
                env={**os.environ, **self.env}, timeout=120, check=False,
            )  # fmt: skip
            match = re.search(r"as node (\d+)", out.stdout)
            if out.returncode != 0 or match is None:
                raise AssertionError(f"mmbind nodes register {name} failed: {out.stderr}")
            self.registered[name] = int(match.group(1))

    def stop_server(self, *, crash: bool) -> None:
        if self.server is not None:
            if crash:
                # The whole coordinator host goes down: every process it started.
                family = descendants(self.server.pid)
                self.server.kill()
                for pid in family:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            else:
                self.server.stop()
            self.server = None
        deadline = time.monotonic() + 10
        while port_is_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def kill_server_alone(self) -> dict[int, str]:
        """SIGKILL mmbind-server's own process only; return what it had started (pid: argv).

        Unlike ``stop_server(crash=True)`` nothing else is signalled: whatever survives is
        an orphan of the coordinator.
        """
        assert self.server is not None
        family = {pid: cmdline(pid) for pid in descendants(self.server.pid)}
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.proc.wait(5)
        self.server = None
        return family

    def pause_node(self, name: str) -> None:
        """Freeze a node (its whole process group): it neither works nor sends heartbeats."""
        os.killpg(self.nodes[name].pid, signal.SIGSTOP)
        self.paused.add(name)

    def continue_node(self, name: str) -> None:
        os.killpg(self.nodes[name].pid, signal.SIGCONT)
        self.paused.discard(name)

    def start_nodes(
        self,
        *,
        relay: bool = False,
        node_args: tuple[str, ...] = (),
        nodes: list[tuple[str, str, str, tuple[str, ...]]] | None = None,
    ) -> None:
        chosen = nodes or NODES
        self.register_nodes([name for name, *_ in chosen])
        target = self.superlink
        if relay:
            self.relay = Relay(("127.0.0.1", self.port))
            target = f"127.0.0.1:{self.relay.port}"
        for name, modalities, subjects, extra in chosen:
            self.nodes[name] = ManagedProcess(
                f"node {name}",
                [
                    str(BIN / "mmbind-client"), "--superlink", target, "--name", name,
                    "--modalities", modalities, "--subjects", subjects, *extra, *node_args,
                    *self.node_security(name),
                ],
                env=self.env, log_file=self.tmp / f"node-{name}.log",
            )  # fmt: skip

    def run(self, *args: str, output: Path) -> subprocess.Popen[str]:
        cmd = [
            str(BIN / "mmbind"), "run", "--superlink", self.superlink,
            "--binding-service", f"127.0.0.1:{self.binding_port}", "--output", str(output),
            "--min-nodes", str(len(NODES)), "--quiet", *self.operator_security(), *args,
        ]  # fmt: skip
        for key, value in TINY.items():
            cmd += ["-c", f"{key}={value}"]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **self.env},
        )  # fmt: skip
        self.runners.append(proc)
        return proc

    def close(self) -> None:
        for runner in self.runners:
            if runner.poll() is None:
                runner.kill()
                runner.communicate()
        for name in list(self.paused):
            self.continue_node(name)
        for node in self.nodes.values():
            node.stop(5)
        self.stop_server(crash=False)
        if self.relay is not None:
            self.relay.close()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def run_id_of(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Read ``mmbind run: run id X`` from a running ``mmbind run``'s stderr."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        match = re.search(r"run id (\w+)", line)
        if match:
            return match.group(1)
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"mmbind run printed no run id: {seen[-2000:]}")
