"""A Docker engine, the mmbind image and the compose topology, for the compose tests.

:class:`Engine` uses the engine that answers, or starts ``dockerd`` (as root) and stops it by
its PID afterwards; where neither works the tests skip with the reason. :func:`build_image`
runs ``deploy/build.sh`` (``--offline`` unless ``MMBIND_COMPOSE_BUILD=registry``: the
debootstrapped base and the host's wheelhouse, both cached in ``~/.cache/mmbind-docker``).
:class:`Compose` drives one compose project (``docker compose`` v2 where the CLI has it, else
Debian's ``docker-compose`` v1.29) and takes all of it down at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from host_tools import system_tool_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (ROOT / "docker-compose.yml", Path(__file__).with_name("compose.ci.yml"))
SECURE_FILES = (ROOT / "docker-compose.yml", ROOT / "docker-compose.secure.yml")


class EngineUnavailable(Exception):
    """No Docker engine answers and none can be started here, or the offline image cannot be
    built (no debootstrap): the tests skip, the reason being the message."""


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run the docker CLI; its stdout (stripped)."""
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout,
        env=system_tool_env(), check=False,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(
            ["docker", "info", "-f", "{{.ServerVersion}}"], capture_output=True, timeout=20,
            env=system_tool_env(), check=False,
        ).returncode == 0  # fmt: skip
    except subprocess.TimeoutExpired:
        return False


class Engine:
    """The Docker engine of the tests: the one that answers, or a ``dockerd`` started here."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Use the engine that answers, or start one; raise :class:`EngineUnavailable`."""
        if engine_answers():
            return
        if shutil.which("docker") is None:
            raise EngineUnavailable("no docker CLI (apt-get install docker.io)")
        dockerd = shutil.which("dockerd") or (
            "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
        )
        if dockerd is None:
            raise EngineUnavailable("no engine answers and no dockerd to start (docker.io)")
        if os.geteuid() != 0:
            raise EngineUnavailable("no engine answers, and dockerd needs root to start")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [dockerd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=system_tool_env(),
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-1500:]
                self.proc = None
                raise EngineUnavailable(f"dockerd exited at once: {tail}")
            if engine_answers():
                return
            time.sleep(0.5)
        self.stop()
        raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the dockerd this started (by its PID; an engine found running is left alone)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def offline_build() -> bool:
    """Whether :func:`build_image` builds offline (all but ``MMBIND_COMPOSE_BUILD=registry``)."""
    return os.environ.get("MMBIND_COMPOSE_BUILD", "offline") != "registry"


def offline_build_possible() -> None:
    """Raise :class:`EngineUnavailable` when the offline base can be neither found nor made.

    ``deploy/build.sh --offline`` reuses the base image, or its cached root file system, and
    makes it with ``debootstrap`` otherwise.
    """
    if not offline_build() or shutil.which("debootstrap") or Path("/usr/sbin/debootstrap").exists():
        return
    cache = Path(os.environ.get("MMBIND_DOCKER_CACHE", Path.home() / ".cache" / "mmbind-docker"))
    base = os.environ.get("MMBIND_LOCAL_BASE", "local/mmbind-base:bookworm")
    if any(cache.glob("base-*.tar")):
        return
    present = subprocess.run(
        ["docker", "image", "inspect", base], capture_output=True, env=system_tool_env(),
        timeout=60, check=False,
    )  # fmt: skip
    if present.returncode == 0:
        return
    raise EngineUnavailable(
        "no debootstrap to make the offline base (apt-get install debootstrap), "
        "or MMBIND_COMPOSE_BUILD=registry where a registry is reachable"
    )


def build_image(log: Path) -> dict[str, str]:
    """``deploy/build.sh``: the variables it exports for compose."""
    offline = offline_build()
    env = {**system_tool_env(), "PYTHON": sys.executable}
    with log.open("w") as err:
        proc = subprocess.run(
            ["bash", "deploy/build.sh", *(["--offline"] if offline else [])],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, env=env, timeout=1800,
            check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"deploy/build.sh failed: {log.read_text()[-3000:]}")
    exported: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export "):
            for pair in line.removeprefix("export ").split():
                key, _, value = pair.partition("=")
                exported[key] = value
    assert "MMBIND_IMAGE" in exported, proc.stdout
    return exported


def wait_container(container: str, timeout: float) -> int:
    """Wait for a container to exit; its exit code (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, code = container_state(container)
        if status in ("exited", "dead"):
            return code
        time.sleep(2)
    raise AssertionError(
        f"container {container} still running after {timeout:.0f} s: "
        f"{container_logs(container)[-3000:]}"
    )


def container_state(container: str) -> tuple[str, int]:
    """(status, exit code) of a container, e.g. ("running", 0) or ("exited", 137)."""
    status, code = docker(
        "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container
    ).split()
    return status, int(code)


def container_logs(container: str) -> str:
    """A container's output so far (stdout and stderr)."""
    proc = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, env=system_tool_env(),
        check=False, timeout=60,
    )  # fmt: skip
    return proc.stdout + proc.stderr


def health(container: str) -> str:
    """A container's health-check status ("starting", "healthy", "unhealthy")."""
    return docker("inspect", "-f", "{{.State.Health.Status}}", container)


def compose_command() -> list[str]:
    """``docker compose`` (v2) where the docker CLI has it, else ``docker-compose`` (v1)."""
    v2 = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, env=system_tool_env(), check=False
    )
    if v2.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None:
        raise EngineUnavailable("neither `docker compose` nor docker-compose is installed")
    return ["docker-compose"]


class Compose:
    """One compose project of ``files`` (default: docker-compose.yml + compose.ci.yml), taken
    down by ``down``."""

    def __init__(
        self, project: str, env: dict[str, str], files: tuple[Path, ...] = COMPOSE_FILES
    ) -> None:
        self.project = project
        self.env = {**system_tool_env(), **env}
        self.base = [*compose_command(), "-p", project]
        for f in files:
            self.base += ["-f", str(f)]

    def __call__(self, *args: str, timeout: float = 600, **env: str) -> str:
        """Run a compose command (extra variables in ``env``); its stdout, or fail the test."""
        proc = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=timeout,
            env={**self.env, **env}, cwd=ROOT, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)}: {proc.stderr.strip()[-3000:]}")
        return proc.stdout.strip()

    def container(self, service: str) -> str:
        """The id of the service's container (not of its ``compose run`` one-offs)."""
        ids = docker(
            "ps", "-a", "-q", "--no-trunc",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
            "--filter", "label=com.docker.compose.oneoff=False",
        ).split()  # fmt: skip
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def state(self, service: str) -> tuple[str, int]:
        """(status, exit code) of the service's container, e.g. ("running", 0)."""
        return container_state(self.container(service))

    def published(self, service: str, port: int) -> int:
        """The host port the service's ``port`` is published on (at 127.0.0.1)."""
        host, _, number = self("port", service, str(port)).rpartition(":")
        assert host == "127.0.0.1", f"{service}:{port} published on {host!r}"
        return int(number)

    def wait(self, service: str, timeout: float) -> int:
        """Wait for the service's container to exit; its exit code (fails after ``timeout``)."""
        return wait_container(self.container(service), timeout)

    def logs(self, service: str) -> str:
        return container_logs(self.container(service))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """A compose command in the background, its output (stdout and stderr) to read."""
        return subprocess.Popen(
            [*self.base, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=self.env, cwd=ROOT,
        )  # fmt: skip

    def down(self) -> None:
        """Remove every container, network and volume of the project."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [*self.base, "--profile", "simulate", "down", "-v", "--remove-orphans",
                 "-t", "5"],
                capture_output=True, env=self.env, cwd=ROOT, check=False, timeout=180,
            )  # fmt: skip
