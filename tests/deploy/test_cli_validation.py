"""mmbind-client and mmbind-server refuse bad input before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmbind.client.cli import main as client_main
from mmbind.server.coordinator import main as server_main
from mmbind.server.deployment import default_binding_address

UTD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "utd_mhad"


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


@pytest.mark.skipif(not UTD.is_dir(), reason=f"UTD-MHAD not found at {UTD}")
@pytest.mark.data
def test_client_reads_utd_mhad_subjects(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = client(
        capsys, "--modalities", "skeleton,gyro", "--dataset", "utd-mhad",
        "--data-dir", str(UTD), "--subjects", "5,6", "--labelled",
    )  # fmt: skip
    assert code == 0
    assert "215 samples" in err and "(labelled)" in err


def test_server_with_redis_down_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = server_main(["--port", "1", "--redis-url", "redis://127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert code == 5
    assert "redis://127.0.0.1:1/0" in err and "Traceback" not in err


def test_binding_service_defaults_next_to_the_superlink() -> None:
    assert default_binding_address("10.0.0.5:9093") == "10.0.0.5:9094"
