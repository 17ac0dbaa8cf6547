"""Which app bundles the coordinator admits, its signature, and the SuperLink's API gate."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flwr.cli.build import build_fab_from_disk
from flwr.supercore.fab import Fab
from flwr.supernode.start_client_internal import _verify_fab

from mmbind.certs import APP_SIGNER_ID
from mmbind.run_config import RunConfig
from mmbind.server.admission import AppRefused, check_fab, sign_fab
from mmbind.server.deployment import write_app
from mmbind.server.superlink import _own_host, gate


@pytest.fixture(scope="module")
def mmbind_fab(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bundle ``mmbind run`` submits, built by Flower's own builder."""
    folder = write_app(tmp_path_factory.mktemp("app") / "app", RunConfig().to_flower())
    return build_fab_from_disk(folder)


def _rezip(
    fab: bytes, extra: dict[str, bytes] | None = None, pyproject: str | None = None
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(fab)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "pyproject.toml" and pyproject is not None:
                data = pyproject.encode()
            dst.writestr(name, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return out.getvalue()


def test_mmbinds_own_bundle_is_admitted(mmbind_fab: bytes) -> None:
    # Execute / Assert (no exception)
    check_fab(mmbind_fab)


def test_a_bundle_carrying_code_is_refused(mmbind_fab: bytes) -> None:
    # Prepare
    fab = _rezip(mmbind_fab, {"mmbind/server/app.py": b"import os; os.system('id')"})
    # Execute / Assert
    with pytest.raises(AppRefused, match=r"carries files \['mmbind/server/app.py'\]"):
        check_fab(fab)


def test_foreign_components_are_refused(mmbind_fab: bytes) -> None:
    # Prepare
    with zipfile.ZipFile(io.BytesIO(mmbind_fab)) as z:
        text = z.read("pyproject.toml").decode()
    fab = _rezip(mmbind_fab, pyproject=text.replace("mmbind.server.app:app", "os:system"))
    # Execute / Assert
    with pytest.raises(AppRefused, match="are not mmbind's"):
        check_fab(fab)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04garbage" * 10])
def test_garbage_is_refused(content: bytes) -> None:
    # Execute / Assert
    with pytest.raises(AppRefused, match="not a readable Flower app"):
        check_fab(content)


def test_flowers_supernode_verifies_the_signature_and_nothing_else(mmbind_fab: bytes) -> None:
    # Prepare
    key = ed25519.Ed25519PrivateKey.generate()
    other = ed25519.Ed25519PrivateKey.generate()

    def trusted(k: ed25519.Ed25519PrivateKey) -> dict[str, str]:
        public = k.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
        return {APP_SIGNER_ID: public}

    verifications = sign_fab(mmbind_fab, key, signed_at=1_700_000_000)
    # Execute: flwr 1.42's own check, as a SuperNode with --trusted-entities runs it
    good = _verify_fab(Fab("h", mmbind_fab, verifications), trusted(key))
    wrong_key = _verify_fab(Fab("h", mmbind_fab, verifications), trusted(other))
    tampered = _verify_fab(Fab("h", mmbind_fab + b"x", verifications), trusted(key))
    # Assert
    assert good and not wrong_key and not tampered
    assert verifications["valid_license"]


@pytest.mark.parametrize(
    ("path", "peer", "authorization", "token", "expected"),
    [
        ("/v1/control/start-run", "127.0.0.1", "", "tok", 401),
        ("/v1/control/start-run", "127.0.0.1", "Bearer wrong", "tok", 401),
        ("/v1/control/list-runs", "10.0.0.5", "Basic tok", "tok", 401),
        ("/v1/control/start-run", "10.0.0.5", "Bearer tok", "tok", None),
        ("/v1/control/start-run", "10.0.0.5", "", None, 403),
        ("/v1/control/start-run", "127.0.0.1", "", None, None),
        ("/v1/runtime/acquire-task", "10.0.0.5", "Bearer tok", "tok", 403),
        ("/v1/runtime/acquire-task", "::1", "", "tok", None),
        ("/v1/fleet/pull-messages", "10.0.0.5", "", "tok", None),  # Flower's node auth
        ("/v1/runtime/acquire-task", "10.0.0.2", "", "tok", None),  # the SuperLink's --host
        ("/v1/control/list-runs", "10.0.0.2", "", None, None),
    ],
)
def test_the_superlink_gate(
    path: str, peer: str, authorization: str, token: str | None, expected: int | None
) -> None:
    # Execute
    refusal = gate(path, peer, authorization, token, frozenset({"10.0.0.2"}))
    # Assert
    assert (refusal[0] if refusal else None) == expected


def test_the_superlinks_own_host_counts_as_this_machine() -> None:
    # Execute / Assert
    assert _own_host(["--insecure", "--host", "10.0.0.2", "--port", "9093"]) == {"10.0.0.2"}
    assert _own_host(["--host=::1"]) == {"::1"}
    assert _own_host(["--host", "0.0.0.0"]) == frozenset()
    assert _own_host([]) == frozenset()


def test_write_app_is_what_the_coordinator_admits(tmp_path: Path) -> None:
    # Prepare: a run config of every kind of value
    folder = write_app(tmp_path / "app", {**RunConfig().to_flower(), "seed": 3})
    # Execute / Assert
    check_fab(build_fab_from_disk(folder))
