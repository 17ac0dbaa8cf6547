"""mmbind-client and mmbind-server refuse bad input before starting anything."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from utd_mhad_files import UTD_DIR

from mmbind.certs import init_certs
from mmbind.client.cli import main as client_main
from mmbind.errors import FederationError
from mmbind.processes import free_port
from mmbind.server.cli import main as mmbind_main
from mmbind.server.coordinator import main as server_main
from mmbind.server.deployment import default_binding_address


def client(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = client_main(["--superlink", "127.0.0.1:9093", "--check", *args])
    return code, capsys.readouterr().err


def test_client_checks_its_data_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = client(capsys, "--modalities", "acc,gyro", "--subjects", "3,4")
    assert code == 0
    assert "acc, gyro" in err and "samples" in err


def test_client_unknown_modality(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = client(capsys, "--modalities", "acc,gyroscope")
    assert code == 2
    assert "unknown modality 'gyroscope'" in err and "acc, gyro, mag, skeleton" in err


def test_client_missing_data_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    code, err = client(
        capsys, "--modalities", "acc", "--dataset", "utd-mhad", "--data-dir", str(missing)
    )
    assert code == 3
    assert str(missing) in err and err.count("\n") == 1


def test_client_bad_subjects(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = client(capsys, "--modalities", "acc", "--subjects", "one,two")
    assert code == 2
    assert "'one,two'" in err


def test_client_bad_superlink_address(capsys: pytest.CaptureFixture[str]) -> None:
    code = client_main(["--superlink", "localhost", "--modalities", "acc", "--check"])
    assert code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


@pytest.mark.skipif(not UTD_DIR.is_dir(), reason=f"UTD_DIR-MHAD not found at {UTD_DIR}")
@pytest.mark.data
def test_client_reads_utd_mhad_subjects(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = client(
        capsys, "--modalities", "skeleton,gyro", "--dataset", "utd-mhad",
        "--data-dir", str(UTD_DIR), "--subjects", "5,6", "--labelled",
    )  # fmt: skip
    assert code == 0
    assert "215 samples" in err and "(labelled)" in err


def test_server_with_redis_down_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = server_main(
        ["--port", "1", "--redis-url", "redis://127.0.0.1:1/0", "--state-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 5
    assert "redis://127.0.0.1:1/0" in err and "Traceback" not in err


def test_binding_service_defaults_next_to_the_superlink() -> None:
    assert default_binding_address("10.0.0.5:9093") == "10.0.0.5:9094"


def one_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error:"), err
    return lines[0]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a real socket listens on for the test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subjects", ""], "--subjects '' names no subject"),
        (["--subjects", ","], "--subjects ',' names no subject"),
        (["--labelled", "--test"], "--labelled and --test exclude each other"),
        (["--name", "a\\b"], "--name 'a\\\\b' cannot be passed to the SuperNode"),
        (["--name", 'a"b'], "--name 'a\"b' must not contain"),
        (["--name", "a\nb"], "--name 'a\\nb' cannot be passed to the SuperNode"),
        (["--name", " "], "--name ' ' must not start or end with spaces"),
        (["--max-retries", "-1"], "--max-retries must be >= 0"),
        (["--port", "70000"], "--port must be in 1..65535"),
    ],
)
def test_client_check_refuses_what_a_real_start_would(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # Execute
    code, err = client(capsys, "--modalities", "acc,gyro", *args)
    # Assert
    assert code == 2
    assert message in one_line(err, "mmbind-client")


def test_client_port_in_use_is_refused(
    capsys: pytest.CaptureFixture[str], listening_port: int
) -> None:
    code, err = client(capsys, "--modalities", "acc", "--port", str(listening_port))
    assert code == 2
    assert f"127.0.0.1:{listening_port} is already in use" in one_line(err, "mmbind-client")


def test_client_names_flower_can_carry_pass_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = client(capsys, "--modalities", "acc", "--name", "node A=1 (it's é)")
    assert code == 0, err
    assert "node A=1 (it's é): " in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--binding-port", "{port}"], "--binding-port {port} is the SuperLink's --port"),
        (["--binding-port", "70000"], "invalid --binding-port"),
        (["--redis-url", "redis://127.0.0.1:6379/abc"], "the database 'abc' must be a number"),
        (["--redis-url", "http://127.0.0.1:6379"], "the scheme must be one of redis://"),
        (["--state-dir", "/proc/mmbind-x"], "--state-dir '/proc/mmbind-x' cannot be created"),
        (["--log-dir", "{file}"], "--log-dir '{file}' is a file"),
        # the secure path: fail closed, no secret on the command line
        (["--host", "0.0.0.0"], "--host 0.0.0.0 is reachable from other machines: give --certs"),
        (["--binding-host", "10.0.0.9"], "--binding-host 10.0.0.9 is reachable from other"),
        (["--insecure", "--certs", "{tmp}"], "--insecure and --certs exclude each other"),
        (["--certs", "{tmp}"], "has no ca.pem (the CA certificate)"),
        (["--redis-url", "redis://:s3cret@127.0.0.1:6379/0"], "carries a password, which `ps`"),
    ],
)
def test_server_refuses_bad_arguments_before_starting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    # Prepare
    port = free_port()
    a_file = tmp_path / "hostname"
    a_file.write_text("x")
    values = {"port": port, "file": a_file, "tmp": tmp_path}
    args = [a.format(**values) for a in args]
    # Execute
    code = server_main(["--port", str(port), "--state-dir", str(tmp_path / "state"), *args])
    # Assert
    assert code == 2
    err = one_line(capsys.readouterr().err, "mmbind-server")
    assert message.format(**values) in err
    assert "s3cret" not in err
    assert not port_in_use(port)  # nothing was started


def test_server_refuses_a_certificate_its_own_processes_cannot_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prepare: a certificate for coord.example only (no 127.0.0.1)
    layout = init_certs(tmp_path / "c", ["coord.example"])
    # Execute
    code = server_main(
        ["--port", str(free_port()), "--state-dir", str(tmp_path / "s"),
         "--certs", str(layout.coordinator)]
    )  # fmt: skip
    # Assert
    assert code == 2
    err = one_line(capsys.readouterr().err, "mmbind-server")
    assert "connect to 127.0.0.1, which the certificate" in err and "coord.example" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--superlink", "10.0.0.9:9093"], "is another machine: give --certs"),
        (["--superlink", "127.0.0.1:9093", "--insecure", "--certs", "x"], "exclude each other"),
        (["--superlink", "127.0.0.1:9093", "--auth-key", "{file}"], "go together"),
        (["--superlink", "127.0.0.1:9093", "--certs", "{tmp}"], "has no ca.pem"),
    ],
)
def test_client_fails_closed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    # Prepare
    a_file = tmp_path / "key"
    a_file.write_text("x")
    args = [a.format(file=a_file, tmp=tmp_path) for a in args]
    # Execute
    code = client_main(["--modalities", "acc,gyro", *args])
    # Assert
    assert code == 2
    assert message in one_line(capsys.readouterr().err, "mmbind-client")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_run_checks_its_output_before_submitting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a run_deployment that records the submission and stops
    submitted: list[Path] = []

    def run_deployment(_config: object, *, output: Path, **_kwargs: object) -> None:
        submitted.append(output)
        raise FederationError("stopped by the test")

    monkeypatch.setattr("mmbind.server.deployment.run_deployment", run_deployment)
    (tmp_path / "results.json").write_text('{"kept": true}')
    run = ["run", "-q", "--superlink", "127.0.0.1:1", "--output"]
    # Execute
    unwritable = mmbind_main([*run, "/proc/mmbind-x"])
    unwritable_err = capsys.readouterr().err
    existing = mmbind_main([*run, str(tmp_path)])
    existing_err = capsys.readouterr().err
    overwrite = mmbind_main([*run, str(tmp_path), "--overwrite"])
    # Assert
    assert unwritable == 2
    assert "--output '/proc/mmbind-x' cannot be created" in one_line(unwritable_err, "mmbind")
    assert existing == 2
    assert "results.json already exists; pass --overwrite" in one_line(existing_err, "mmbind")
    assert overwrite == FederationError.exit_code and submitted == [tmp_path]
    assert json.loads((tmp_path / "results.json").read_text()) == {"kept": True}


def test_server_bad_environment_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMBIND_NUM_CPUS", "many")
    assert server_main(["--port", "19999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MMBIND_NUM_CPUS" in err[0]
