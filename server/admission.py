"""Which app bundles the coordinator admits, and the signature it gives them.

``mmbind run`` submits a Flower app bundle (FAB) that carries only a ``pyproject.toml``
whose components are the *installed* mmbind apps (:func:`mmbind.server.deployment.write_app`):
no code travels. The coordinator admits exactly that shape (:func:`check_fab`): any file
beside ``pyproject.toml`` (and Flower's ``.info/CONTENT`` manifest), or any component
other than ``mmbind.server.app:app`` / ``mmbind.client.app:app``, is refused before a run
exists, so a foreign ServerApp never runs on the coordinator.

Admitted bundles are signed (:func:`sign_fab`) with the coordinator's Ed25519 key in the
form flwr 1.42's SuperNode verifies with ``--trusted-entities``: a node started by
``mmbind-client --certs`` runs only bundles whose signature verifies against that key, so a
bundle that did not pass this check never runs on a node either. (Flower drops the
verifications a ``flwr run`` submitter sends with a local bundle, see
``flwr/superlink/servicer/control/control_handlers.py``, ``start_run``: only bundles from
Flower's hub keep theirs. Hence the coordinator, after its admission check, is the signer.)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import tomllib
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mmbind.certs import APP_SIGNER_ID
from mmbind.errors import ConfigError

COMPONENTS = {"serverapp": "mmbind.server.app:app", "clientapp": "mmbind.client.app:app"}
"""The only components an admitted bundle may name."""
ALLOWED_FILES = frozenset({"pyproject.toml", ".info/CONTENT"})
MAX_FAB_BYTES = 1 << 20


class AppRefused(ConfigError):
    """An app bundle is not mmbind's own app; the coordinator does not run it."""

    grpc_status = "PERMISSION_DENIED"


def check_fab(content: bytes) -> None:
    """Admit ``content`` only if it is mmbind's app bundle (see the module).

    Raises
    ------
    AppRefused
        The message says what is foreign in the bundle.
    """
    if len(content) > MAX_FAB_BYTES:
        raise AppRefused(f"app bundle of {len(content)} bytes; mmbind's is under 64 KiB")
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            names = set(z.namelist())
            extra = sorted(names - ALLOWED_FILES)
            if extra:
                raise AppRefused(
                    f"app bundle carries files {extra[:5]}; this coordinator runs only "
                    "mmbind's installed app (a bundle of pyproject.toml alone, as `mmbind run` "
                    "submits it)"
                )
            if "pyproject.toml" not in names:
                raise AppRefused("app bundle has no pyproject.toml")
            project = tomllib.loads(z.read("pyproject.toml").decode())
    except (zipfile.BadZipFile, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AppRefused(f"app bundle is not a readable Flower app: {exc}") from None
    app = project.get("tool", {}).get("flwr", {}).get("app", {})
    components = app.get("components", {})
    if components != COMPONENTS:
        raise AppRefused(
            f"app components {components!r} are not mmbind's ({COMPONENTS!r}); this "
            "coordinator runs only mmbind's installed app"
        )


def load_signing_key(path: str | Path) -> ed25519.Ed25519PrivateKey:
    """The coordinator's app-signing key (OpenSSH Ed25519, from ``mmbind certs init``)."""
    key = serialization.load_ssh_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"app-signing key {str(path)!r} is not an Ed25519 key")
    return key


def sign_fab(
    content: bytes, key: ed25519.Ed25519PrivateKey, signed_at: int | None = None
) -> dict[str, str]:
    """A bundle's ``verifications`` as flwr 1.42's SuperNode checks them.

    The signed message is ``signed_at`` (8 bytes big-endian) followed by the bundle's
    SHA-256 digest; the signature travels base64url-encoded under :data:`APP_SIGNER_ID`.
    """
    when = int(time.time()) if signed_at is None else int(signed_at)
    message = when.to_bytes(8, "big") + hashlib.sha256(content).digest()
    signature = base64.urlsafe_b64encode(key.sign(message)).decode().rstrip("=")
    record = json.dumps({"signature": signature, "signed_at": when})
    return {"valid_license": "Valid", APP_SIGNER_ID: record}


__all__ = ["COMPONENTS", "AppRefused", "check_fab", "load_signing_key", "sign_fab"]
