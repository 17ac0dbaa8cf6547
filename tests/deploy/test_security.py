"""Attacks on a secure deployment (``mmbind-server --certs``), as real processes on loopback.

A hand-made Flower app whose ServerApp and ClientApp each write a file stands for foreign
code: the files must never appear where the deployment refuses it. Plaintext clients,
clients trusting another CA, unregistered and revoked node keys and garbage bytes are
tried on every port mmbind opens (the SuperLink's and the BindingService's), and the
server must go on serving good calls. A full authenticated run, its Redis behind a
password, must leave no secret in logs, results.json, process arguments or on the wire.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from deploy_harness import BIN, NODES, Deployment, cmdline, descendants, run_id_of
from test_deployment import finish, wait_for

from mmbind.certs import ClientCerts, CoordinatorCerts, add_node, init_certs
from mmbind.errors import StoreError
from mmbind.processes import ManagedProcess, free_port, wait_for_port
from mmbind.protos.v1 import binding_pb2 as pb
from mmbind.protos.v1 import binding_pb2_grpc as pb_grpc
from mmbind.server.operator import flwr, list_nodes, revoke_node, write_flower_home
from mmbind.server.redis_store import RedisBindingStore
from mmbind.server.remote import channel_credentials, wait_until_ready

pytestmark = pytest.mark.integration


def foreign_app(folder: Path, marker: Path) -> Path:
    """A Flower app of someone else: its ServerApp writes MARKER-server, asks every node
    to train and records the replies in MARKER-replies; its ClientApp writes
    MARKER-client-NODE."""
    (folder / "foreignapp").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "foreignapp"
        version = "1.0.0"
        description = "not mmbind"
        license = "Apache-2.0"
        dependencies = []

        [tool.hatch.build.targets.wheel]
        packages = ["."]

        [tool.flwr.app]
        publisher = "someone"

        [tool.flwr.app.components]
        serverapp = "foreignapp.server:app"
        clientapp = "foreignapp.client:app"

        [tool.flwr.app.config]
        marker = "{marker}"
        """)
    )
    (folder / "foreignapp" / "__init__.py").write_text("")
    (folder / "foreignapp" / "server.py").write_text(
        textwrap.dedent("""\
        import time
        from pathlib import Path
        from flwr.app import Message, RecordDict
        from flwr.serverapp import ServerApp

        app = ServerApp()

        @app.main()
        def main(grid, context):
            marker = str(context.run_config["marker"])
            Path(marker + "-server").write_text("foreign code ran on the coordinator")
            nodes = []
            for _ in range(120):
                nodes = list(grid.get_node_ids())
                if nodes:
                    break
                time.sleep(1)
            messages = [Message(RecordDict(), dst_node_id=n, message_type="train")
                        for n in nodes]
            replies = list(grid.send_and_receive(messages, timeout=180))
            Path(marker + "-replies").write_text(
                " ".join(f"{r.metadata.src_node_id}:{r.has_error()}" for r in replies))
        """)
    )
    (folder / "foreignapp" / "client.py").write_text(
        textwrap.dedent("""\
        from pathlib import Path
        from flwr.app import Message, RecordDict
        from flwr.clientapp import ClientApp

        app = ClientApp()

        @app.train()
        def train(msg, context):
            marker = str(context.run_config["marker"])
            Path(f"{marker}-client-{context.node_id}").write_text("foreign code ran")
            return Message(RecordDict(), reply_to=msg)
        """)
    )
    return folder


def _home(tmp: Path, name: str, superlink: str, certs: ClientCerts | None) -> Path:
    return write_flower_home(tmp / name, superlink, certs)


def _refused(proc: subprocess.CompletedProcess[str]) -> bool:
    text = proc.stdout.strip()
    reply = json.loads(text[text.index("{") :]) if "{" in text else {}
    return not reply.get("success", False)


def test_a_foreign_app_never_runs_on_the_coordinator(
    deployment: Deployment, tmp_path: Path
) -> None:
    # Prepare
    deployment.start_server()
    assert deployment.certs is not None
    operator = ClientCerts.load(deployment.certs.operator, node=False)
    marker = tmp_path / "pwned"
    app = foreign_app(tmp_path / "foreign", marker)
    callers = {
        "anonymous": replace(operator, token=None),
        "forged token": replace(operator, token=secrets.token_urlsafe(32)),
        "operator": operator,  # even the operator cannot run foreign code
        "plaintext": None,
    }
    # Execute
    outcomes = {}
    for name, certs in callers.items():
        home = _home(tmp_path, name.replace(" ", "-"), deployment.superlink, certs)
        outcomes[name] = _refused(flwr(home, "run", str(app), "mmbind", "--format", "json"))
    anonymous_ls = flwr(
        _home(tmp_path, "ls", deployment.superlink, callers["anonymous"]),
        "ls", "mmbind", "--format", "json",
    )  # fmt: skip
    time.sleep(5)  # a ServerApp that was started would have written its file by now
    # Assert
    assert outcomes == dict.fromkeys(callers, True)
    assert _refused(anonymous_ls)
    assert not list(tmp_path.glob("pwned*"))
    assert "refused a run: app bundle carries files" in (tmp_path / "superlink.log").read_text()


def test_a_node_runs_no_bundle_its_coordinator_did_not_sign(tmp_path: Path) -> None:
    """A SuperLink that does not sign (Flower's own, plaintext): the node started with the
    deployment's trusted entities refuses the foreign bundle, a node without runs it."""
    # Prepare
    certs = init_certs(tmp_path / "certs", ["127.0.0.1"], ["A"])
    port = free_port()
    superlink = f"127.0.0.1:{port}"
    env = {
        "FLWR_TELEMETRY_ENABLED": "0",
        "MMBIND_CERTS_DIR": "",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    processes = [
        ManagedProcess(
            "flower-superlink",
            [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port",
             str(port), "--disable-runtime-dependency-installation"],
            env=env, log_file=tmp_path / "superlink.log",
        )
    ]  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 60, process=processes[0])
        trusted = str(certs.node("A") / "trusted-entities.yaml")
        for name, extra in (("trusting", ["--trusted-entities", trusted]), ("open", [])):
            processes.append(
                ManagedProcess(
                    f"node {name}",
                    [str(BIN / "mmbind-client"), "--superlink", superlink, "--insecure",
                     "--name", name, "--modalities", "acc,gyro", *extra],
                    env=env, log_file=tmp_path / f"node-{name}.log",
                )
            )  # fmt: skip
        marker = tmp_path / "pwned"
        app = foreign_app(tmp_path / "foreign", marker)
        home = _home(tmp_path, "home", superlink, None)
        wait_for(
            lambda: "2 " in flwr(home, "supernode", "list", "mmbind").stdout
            or len(json.loads(flwr(home, "supernode", "list", "mmbind", "--format", "json").stdout
                              or "{}").get("nodes", [])) == 2,
            120, "both nodes registered",
        )  # fmt: skip
        # Execute
        submitted = flwr(home, "run", str(app), "mmbind", "--format", "json")
        wait_for(lambda: Path(f"{marker}-replies").exists(), 400, "the replies of both nodes")
    finally:
        for process in reversed(processes):
            process.stop(5)
    # Assert: both nodes answered; exactly one ran the foreign code: the one not trusting it
    assert not _refused(submitted), submitted.stdout
    replies = dict(r.split(":") for r in Path(f"{marker}-replies").read_text().split())
    assert len(replies) == 2
    ran = sorted(marker.parent.glob("pwned-client-*"))
    assert len(ran) == 1
    assert replies[ran[0].name.rsplit("-", 1)[1]] == "False"
    assert sorted(replies.values()) == ["False", "True"]  # the trusting node replied an error
    log = (tmp_path / "node-trusting.log").read_text()
    assert "The FAB could not be verified" in log  # unsigned: Flower's own refusal


def _binding_stub(
    address: str, credentials: grpc.ChannelCredentials | None
) -> pb_grpc.BindingServiceStub:
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    return pb_grpc.BindingServiceStub(channel)


def _code(stub: pb_grpc.BindingServiceStub) -> grpc.StatusCode:
    try:
        stub.ListRuns(pb.ListRunsRequest(), timeout=5)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def _garbage(port: int) -> None:
    for data in (
        os.urandom(4096),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01" + os.urandom(600),
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(data)
            with contextlib.suppress(OSError):
                s.recv(1024)


def _node(deployment: Deployment, name: str, folder: Path, *extra: str) -> ManagedProcess:
    return ManagedProcess(
        f"node {name}",
        [str(BIN / "mmbind-client"), "--superlink", deployment.superlink, "--name", name,
         "--modalities", "acc,gyro", "--certs", str(folder), *extra],
        env=deployment.env, log_file=deployment.tmp / f"node-{name}.log",
    )  # fmt: skip


def test_every_port_refuses_strangers_and_serves_on(deployment: Deployment, tmp_path: Path) -> None:
    # Prepare
    deployment.start_server()
    assert deployment.certs is not None
    layout = deployment.certs
    operator = ClientCerts.load(layout.operator, node=False)
    coordinator = CoordinatorCerts.load(layout.coordinator)
    other = init_certs(tmp_path / "other", ["127.0.0.1"], ["A"])
    other_operator = ClientCerts.load(other.operator, node=False)
    add_node(layout, "stranger")  # this deployment's CA, a key nobody registered
    binding = f"127.0.0.1:{deployment.binding_port}"
    ca = coordinator.ca.read_bytes()
    # Execute: the SuperLink's port
    ls = ("ls", "mmbind", "--format", "json")
    stolen_token = replace(other_operator, token=operator.token)
    superlink = {
        "plaintext": flwr(_home(tmp_path, "p", deployment.superlink, None), *ls),
        "another CA": flwr(_home(tmp_path, "o", deployment.superlink, stolen_token), *ls),
    }
    # ... the BindingService's port
    other_ca = (other.operator / "ca.pem").read_bytes()
    binding_codes = {
        "plaintext": _code(_binding_stub(binding, None)),
        "another CA": _code(_binding_stub(binding, channel_credentials(other_ca, operator.token))),
        "a node (no token)": _code(_binding_stub(binding, channel_credentials(ca))),
    }
    # ... nodes: of another deployment, with an unregistered key, registered then revoked
    deployment.register_nodes()
    env = {**os.environ, **deployment.env}
    register_a = deployment.register_command("A")
    twice = {
        flag: subprocess.run(
            [*register_a, *flag], capture_output=True, text=True, timeout=120, check=False, env=env
        )
        for flag in ((), ("--exist-ok",))
    }
    retries = ("--max-retries", "2")
    strangers = {
        "another CA": _node(deployment, "other", other.node("A"), *retries),
        "unregistered key": _node(deployment, "stranger", layout.node("stranger"), *retries),
    }
    good = _node(deployment, "A", layout.node("A"))
    node_a = deployment.registered["A"]

    def online(node_id: int) -> bool:
        return any(
            int(n["node-id"]) == node_id and n.get("status") == "online"
            for n in list_nodes(deployment.superlink, layout.operator)
        )

    try:
        wait_for(lambda: online(node_a), 120, "node A online")
        exits = {name: p.proc.wait(120) for name, p in strangers.items()}
        revoke_node(deployment.superlink, layout.operator, str(node_a))
        good.proc.wait(120)  # a revoked node is refused at its next call and stops
        statuses = {
            int(n["node-id"]): n.get("status")
            for n in list_nodes(deployment.superlink, layout.operator)
        }
        again = _node(deployment, "A-again", layout.node("A"), "--max-retries", "2")
        again_exit = again.proc.wait(120)
        # ... garbage on every port
        _garbage(deployment.port)
        _garbage(deployment.binding_port)
        listed = flwr(
            _home(tmp_path, "op", deployment.superlink, operator),
            "ls",
            "mmbind",
            "--format",
            "json",
        )
        wait_until_ready(binding, 10, credentials=channel_credentials(ca))
        operator_code = _code(_binding_stub(binding, channel_credentials(ca, operator.token)))
    finally:
        for p in (*strangers.values(), good):
            p.stop(5)
    # Assert
    assert all(_refused(proc) for proc in superlink.values()), superlink
    assert binding_codes == {
        "plaintext": grpc.StatusCode.UNAVAILABLE,
        "another CA": grpc.StatusCode.UNAVAILABLE,
        "a node (no token)": grpc.StatusCode.UNAUTHENTICATED,
    }
    assert all(code != 0 for code in exits.values()), exits
    assert statuses[node_a] == "unregistered" and again_exit != 0
    # a key registered twice: refused, unless --exist-ok (what a compose one-shot runs)
    assert twice[()].returncode != 0 and "Public key already in use" in twice[()].stderr
    assert twice[("--exist-ok",)].returncode == 0, twice[("--exist-ok",)].stderr
    assert "registered already" in twice[("--exist-ok",)].stdout
    assert not _refused(listed) and operator_code == grpc.StatusCode.OK


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Redis of this test behind a password: (url without the password, password)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    password = secrets.token_urlsafe(24)
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\nrequirepass {password}\n'
    )
    conf.chmod(0o600)
    proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, 20)
        yield f"redis://127.0.0.1:{port}/0", password
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_secure_run_completes_and_leaks_no_secret(
    tmp_path: Path, password_redis: tuple[str, str]
) -> None:
    # Prepare
    url, password = password_redis
    deployment = Deployment(tmp_path, url, redis_password=password)
    assert deployment.certs is not None
    coordinator = CoordinatorCerts.load(deployment.certs.coordinator)
    node_keys = [
        line
        for n, *_ in NODES
        for line in (deployment.certs.node(n) / "auth.key").read_text().splitlines()[1:-1]
    ]
    secrets_ = {
        "redis password": password,
        "operator token": coordinator.operator_token,
        "serverapp token": coordinator.serverapp_token,
        **{f"node key line {i}": k for i, k in enumerate(node_keys[:8])},
    }
    seen_argv: set[str] = set()
    stop = threading.Event()

    def sample_arguments() -> None:  # what `ps` shows, while the run goes
        while not stop.is_set():
            seen_argv.update(cmdline(pid) for pid in descendants(os.getpid()))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample_arguments, daemon=True)
    out = tmp_path / "out"
    try:
        deployment.start_server()
        deployment.start_nodes(relay=True)
        sampler.start()
        # Execute
        proc = deployment.run("--methods", "mmbind,lower_bound", output=out)
        run_id = run_id_of(proc)
        code, stdout, stderr = finish(proc)
    finally:
        stop.set()
        deployment.close()
    # Assert: an authenticated deployment completes a full run
    assert code == 0, stderr[-3000:]
    results_text = (out / "results.json").read_text()
    results = json.loads(results_text)
    assert results["engine"] == "deployment" and results["dropouts"] == []
    assert set(results["traffic"]) == {"A", "B", "C", "test"}
    # ... its Redis wanted the password, and got it
    with pytest.raises(StoreError):
        RedisBindingStore(url, retries=0).runs()
    assert RedisBindingStore(url, retries=0, password=password).checkpoint(run_id) is not None
    # ... the wire carried ciphertext only
    assert deployment.relay is not None
    captured = bytes(deployment.relay.captured)
    assert len(captured) > 1_000_000 and b"acc,skeleton" not in captured
    # ... and no secret is in a log, results.json, the output, an argument or on the wire
    texts = {str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*.log")}
    texts.update({"results.json": results_text, "stdout": stdout, "stderr": stderr})
    texts.update({f"argv {i}": argv for i, argv in enumerate(sorted(seen_argv))})
    assert len(seen_argv) > 10 and any("flower-supernode" in a for a in seen_argv)
    assert any("flwr-serverapp" in a for a in seen_argv)  # sampled while the run ran
    texts["wire"] = captured.decode("latin-1")
    leaks = [
        (what, where)
        for what, secret in secrets_.items()
        for where, text in texts.items()
        if secret in text
    ]
    assert leaks == []
    assert "TLS, authenticated nodes and operator" in texts[str(tmp_path / "server.log")]


def test_the_coordinator_fails_closed_off_loopback(tmp_path: Path) -> None:
    # Prepare
    env = {**os.environ, "MMBIND_CERTS_DIR": "", "FLWR_TELEMETRY_ENABLED": "0"}
    state = ["--state-dir", str(tmp_path / "s")]
    # Execute
    server = subprocess.run(
        [str(BIN / "mmbind-server"), "--host", "0.0.0.0", "--port", str(free_port()), *state],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    client = subprocess.run(
        [str(BIN / "mmbind-client"), "--superlink", "10.1.2.3:9093", "--modalities", "acc"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    runner = subprocess.run(
        [sys.executable, "-m", "mmbind.server.cli", "run", "--superlink", "10.1.2.3:9093",
         "--output", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    # Assert
    assert (
        server.returncode == 2
        and "--host 0.0.0.0 is reachable from other machines" in server.stderr
    )
    assert client.returncode == 2 and "give --certs" in client.stderr
    assert runner.returncode == 2 and "give --certs" in runner.stderr
