"""``docker compose up``, for real: the image built and the whole topology run in containers.

Part of the default test command (``MMBIND_COMPOSE_ENGINE=0`` skips it). The Docker engine
that answers is used, or ``dockerd`` is started (and stopped by its PID at the end, even when a
test fails); where no engine can start (no docker.io, not root, no debootstrap for the
offline base), these tests skip with the reason. The image is built by
``deploy/build.sh`` (``--offline``: a debootstrapped Debian base and a wheelhouse made by the
host's pip, both cached in ``~/.cache/mmbind-docker``; the engine keeps its layer cache), then
one compose project runs docker-compose.yml on synthetic data with a seconds-long recipe:
Redis, the coordinator, nodes A, B, C and test, the runner, and ``mmbind simulate`` in its own
container (profile ``simulate``). The project (containers, networks, volumes) is taken down at
the end.

The tests run in file order on the same project: the coordinator container is killed after
the binding checkpoint and started again, ``mmbind run --resume`` finishes the run, and its
figures equal those of ``mmbind simulate``; then a node container is killed in the align phase
of a second run, which finishes without it and records it as a dropout. Last, that project
is taken down and the secure overlay (docker-compose.secure.yml: certificates made in a
volume, TLS on every port, node keys registered by the operator, Redis behind a password) runs
the same recipe to ``mmbind simulate``'s figures, refusing plaintext. How long each step
took is printed at the end (``-s``) and written to ``compose-timings.json`` in pytest's
base temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from compose_harness import (
    SECURE_FILES,
    Compose,
    Engine,
    EngineUnavailable,
    build_image,
    container_logs,
    docker,
    health,
    offline_build_possible,
    wait_container,
)
from cryptography import x509
from deploy_harness import TINY

from mmbind.processes import free_port, port_is_open
from mmbind.server.redis_store import RedisBindingStore

OPT_OUT = "MMBIND_COMPOSE_ENGINE"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get(OPT_OUT) == "0",
        reason=f"{OPT_OUT}=0: the image build and the topology in Docker are skipped",
    ),
]

NODES = ("node-a", "node-b", "node-c", "node-test")
TINY_ARGS = " ".join(["--methods", "mmbind,lower_bound", *(f"-c {k}={v}" for k, v in TINY.items())])
RUN = [
    "mmbind", "run", "--superlink", "127.0.0.1:9093", "--binding-service", "127.0.0.1:9094",
    "--min-nodes", "4", "--quiet",
]  # fmt: skip


class Timings:
    """Seconds each step of the module took, in order (printed and written at the end)."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as ``name``."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = round(time.monotonic() - start, 1)

    def report(self, path: Path) -> str:
        """Write the steps as JSON to ``path``; the text printed for them."""
        path.write_text(json.dumps(self.steps, indent=2) + "\n")
        return "compose engine test, seconds: " + ", ".join(
            f"{name} {seconds:.0f}" for name, seconds in self.steps.items()
        )


@dataclass
class Stack:
    """The running compose project of this module."""

    compose: Compose
    out: Path
    store: RedisBindingStore
    timings: Timings


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 1) -> Any:
    """Poll ``predicate`` every ``poll`` seconds until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_id_of(container: str, timeout: float = 900) -> str:
    """The run id a runner container prints when it has submitted its run."""

    def printed() -> str:
        match = re.search(r"mmbind run: run id (\w+)", container_logs(container))
        return match.group(1) if match else ""

    run_id: str = wait_for(printed, timeout, f"the run id in the logs of {container}")
    return run_id


def seen(store: RedisBindingStore, run_id: str, kind: str, **match: object) -> bool:
    return any(
        e.kind == kind and all(e.data.get(k) == v for k, v in match.items())
        for e in store.events(run_id)
    )


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """What a run found: each method's accuracy and macro-F1, and the binding's figures."""
    return {
        "methods": {
            name: (m["accuracy"], m["macro_f1"]) for name, m in sorted(results["methods"].items())
        },
        "binding": {
            k: results["binding"][k] for k in ("pairs", "pairing_accuracy", "mean_similarity")
        },
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("compose")
    timings = Timings()
    engine = Engine(tmp / "dockerd.log")
    try:
        with timings.step("engine start"):
            engine.start()
        offline_build_possible()
    except EngineUnavailable as exc:
        engine.stop()
        pytest.skip(f"Docker unavailable: {exc}")
    compose: Compose | None = None
    try:
        with timings.step("deploy/build.sh"):
            exported = build_image(tmp / "build.log")
        (tmp / "data").mkdir()  # synthetic data: the UTD-MHAD mount is an empty folder
        out = tmp / "out"
        out.mkdir()
        compose = Compose(
            f"mmbindtest{os.getpid()}",
            {
                **exported,
                "MMBIND_DATASET": "synthetic",
                "UTD_MHAD_DIR": str(tmp / "data"),
                "MMBIND_OUTPUT": str(out),
                "MMBIND_UID": str(os.getuid()),
                "MMBIND_GID": str(os.getgid()),
                "MMBIND_SUPERLINK_PORT": str(free_port()),
                "MMBIND_RUN_ARGS": TINY_ARGS,
                "MMBIND_SIMULATE_ARGS": TINY_ARGS,
            },
        )
        with timings.step("compose up (redis, coordinator healthy, nodes)"):
            compose("up", "-d", "redis", "coordinator", *NODES, timeout=900)
        store = RedisBindingStore(f"redis://127.0.0.1:{compose.published('redis', 6379)}/0")
        yield Stack(compose, out, store, timings)
    finally:
        with timings.step("compose down, engine stop"):
            try:
                if compose is not None:
                    compose.down()
            finally:
                engine.stop()
        print("\n" + timings.report(tmp_path_factory.getbasetemp() / "compose-timings.json"))


def test_topology_is_up_on_loopback_ports(stack: Stack) -> None:
    # Prepare / Execute: the fixture's `compose up -d` of Redis, the coordinator and the nodes
    compose = stack.compose
    # Assert: Redis and the coordinator passed their health checks; the nodes run
    for service in ("redis", "coordinator"):
        assert health(compose.container(service)) == "healthy", service
    assert all(compose.state(node)[0] == "running" for node in NODES)
    # the coordinator's SuperLink port is published on 127.0.0.1 only, and answers there
    host_port = compose.published("coordinator", 9093)
    assert host_port == int(compose.env["MMBIND_SUPERLINK_PORT"])
    assert port_is_open("127.0.0.1", host_port)
    # the nodes carry their role as a label
    for node, role in zip(NODES, ("A", "B", "C", "test"), strict=True):
        label = docker(
            "inspect", "-f", '{{index .Config.Labels "mmbind.role"}}', compose.container(node)
        )
        assert label == role


def test_coordinator_killed_after_binding_resumes_with_simulate_figures(stack: Stack) -> None:
    compose, store, out, step = stack.compose, stack.store, stack.out, stack.timings.step
    # Prepare: the runner as `docker compose up` starts it
    with step("resume: runner up to the binding checkpoint"):
        compose("up", "-d", "--no-deps", "runner")
        run_id = run_id_of(compose.container("runner"))

        def bound() -> bool:
            cp = store.checkpoint(run_id)
            return cp is not None and cp["step"] == "binding"

        wait_for(bound, 1200, "the binding checkpoint", poll=0.2)
    # Execute: SIGKILL to the coordinator container (SuperLink, BindingService, ServerApp)
    with step("resume: coordinator killed, restarted, healthy"):
        compose("kill", "coordinator")
        assert compose.state("coordinator")[0] == "exited"
        compose("start", "coordinator")
        coordinator = compose.container("coordinator")
        wait_for(lambda: health(coordinator) == "healthy", 300, "the restarted coordinator")
    with step("resume: first runner gives up"):
        # (it shares the killed container's network namespace, so it loses the coordinator
        # for good and exits after 20 s; `docker-compose run` v1 links a one-off container to
        # its service's running containers, which `network_mode: service:` forbids, so the
        # resumed runner starts after that exit, as the README's resume does)
        first_code = compose.wait("runner", 600)
        first_log = compose.logs("runner")
    with step("resume: resumed run"):
        resumed = compose(
            "run", "-d", "--no-deps", "runner", *RUN, "--output", "/results/resumed",
            "--resume", run_id, *TINY_ARGS.split(),
        ).splitlines()[-1].strip()  # fmt: skip
        code = wait_container(resumed, 1200)
        resumed_log = container_logs(resumed)
        docker("rm", "-f", resumed, check=False)
    # ... and `mmbind simulate` in its own container (profile simulate), same seed and recipe
    # (afterwards, not beside the run: on 2 busy cores a ClientApp that takes over 30 s to
    # start is started again by Flower, and again, which only adds load)
    with step("resume: mmbind simulate"):
        simulate = compose.popen("--profile", "simulate", "run", "--rm", "-T", "simulate")
        sim_out, _ = simulate.communicate(timeout=1200)
    # Assert: the first runner gave up on its dead attempt and names the resume command
    assert first_code != 0, first_log[-3000:]
    assert f"--resume {run_id}" in first_log, first_log[-3000:]
    # the resumed run finished after binding, without dropouts
    assert code == 0, resumed_log[-3000:]
    results = json.loads((out / "resumed" / "results.json").read_text())
    assert results["engine"] == "deployment"
    assert (results["run_id"], results["resumed_from"]) == (run_id, "binding")
    assert [a["last_step"] for a in results["attempts"]] == ["binding", "evaluate"]
    assert results["dropouts"] == []
    # and found what mmbind simulate finds for the same seed and recipe
    assert simulate.returncode == 0, sim_out[-3000:]
    expected = json.loads((out / "simulate" / "results.json").read_text())
    assert expected["engine"] == "simulation"
    assert figures(results) == figures(expected)


def test_node_container_killed_mid_align_is_a_dropout(stack: Stack) -> None:
    compose, store, out, step = stack.compose, stack.store, stack.out, stack.timings.step
    # Prepare: a second run, nodes given 5 s to come back once declared unavailable
    with step("dropout: runner up to the align phase"):
        compose(
            "up", "-d", "--no-deps", "--force-recreate", "runner",
            MMBIND_OUTPUT=str(out / "dropout"),
            MMBIND_RUN_ARGS=f"{TINY_ARGS} -c node-grace-seconds=5",
        )  # fmt: skip
        run_id = run_id_of(compose.container("runner"))
        wait_for(
            lambda: seen(store, run_id, "progress", label="align"), 1200, "the align phase", 0.2
        )
    # Execute: node B's container is killed mid-align
    with step("dropout: node-b killed, run finishes"):
        compose("kill", "node-b")
        code = compose.wait("runner", 900)
        log = compose.logs("runner")
    # Assert: the run completed without B, recorded as a dropout of its align message
    assert code == 0, log[-3000:]
    assert compose.state("node-b")[0] == "exited"  # killed, not restarted
    results = json.loads((out / "dropout" / "results.json").read_text())
    assert [d["role"] for d in results["dropouts"]] == ["B"]
    dropout = results["dropouts"][0]
    assert (dropout["phase"], dropout["message"]) == ("align", "train.align")
    assert "Not back within 5 s (node-grace-seconds)" in dropout["reason"]
    assert set(results["methods"]) == {"mmbind", "lower_bound"}
    assert 0.0 <= results["methods"]["mmbind"]["accuracy"] <= 1.0


def _plaintext_refused(port: int) -> bool:
    """Whether a plaintext gRPC channel to 127.0.0.1:``port`` never becomes ready."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=5)
    except grpc.FutureTimeoutError:
        return True
    finally:
        channel.close()
    return False


def _certificate_names(port: int) -> list[str]:
    """The DNS names of the certificate 127.0.0.1:``port`` presents (not verified: the CA
    stays in the project's volume)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), 10) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return list(san.value.get_values_for_type(x509.DNSName))


def test_the_secure_overlay_runs_over_tls_to_the_same_figures(stack: Stack) -> None:
    step, out = stack.timings.step, stack.out
    # Prepare: the first project's runs are done: it goes down, the secure one takes its place
    # on the same image (no Redis port for the host: the password stays in the volume)
    with step("secure: first project down"):
        stack.compose.down()
    env = {k: v for k, v in stack.compose.env.items() if k.startswith("MMBIND_")}
    env.update(MMBIND_OUTPUT=str(out / "secure"), UTD_MHAD_DIR=stack.compose.env["UTD_MHAD_DIR"])
    (out / "secure").mkdir()
    secure = Compose(f"{stack.compose.project}s", env, files=SECURE_FILES)
    try:
        # Execute: `up` of the whole overlay (certs, Redis, coordinator, register, nodes, runner)
        with step("secure: up (certs, redis, coordinator, register, nodes)"):
            secure("up", "-d", "runner", *NODES, timeout=900)
        with step("secure: run"):
            code = secure.wait("runner", 1200)
            log = secure.logs("runner")
        port = secure.published("coordinator", 9093)
        plaintext_refused = _plaintext_refused(port)
        names = _certificate_names(port)
        registered = secure.logs("register")
        # a second `up` keeps the certificates and accepts the registered keys (--exist-ok)
        with step("secure: certs and register again"):
            again = secure("run", "--rm", "-T", "certs") + secure("run", "--rm", "-T", "register")
        commands = " ".join(
            docker("inspect", "-f", '{{.Path}} {{join .Args " "}}', secure.container(s))
            for s in ("coordinator", *NODES, "runner")
        )
    finally:
        with step("secure: down"):
            secure.down()
    # Assert: the run finished on the secure topology with simulate's figures
    assert code == 0, log[-3000:]
    results = json.loads((out / "secure" / "results.json").read_text())
    assert results["engine"] == "deployment" and results["dropouts"] == []
    expected = json.loads((out / "simulate" / "results.json").read_text())
    assert figures(results) == figures(expected)
    # every node's key was registered by the operator, and nothing runs with --insecure
    admitted = re.findall(r"registered (\S+) as node \d+", registered)
    assert admitted == ["A", "B", "C", "test"]
    assert "--insecure" not in commands and commands.count("--certs") == 6
    # the published SuperLink port speaks TLS only, as the coordinator named in the certificate
    assert plaintext_refused
    assert "coordinator" in names
    assert "certs: kept /certs/deploy" in again and again.count("registered already") == 4
