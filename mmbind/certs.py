"""Certificates and credentials of a secure deployment (``mmbind certs init``).

One folder, made once by the operator, holds everything a deployment needs; each machine
gets only its part of it:

* ``ca/``: the certificate authority (``ca.pem``, ``ca.key``). The key stays with the
  operator; no process of a deployment reads it.
* ``coordinator/``: for ``mmbind-server --certs``. ``ca.pem``, the coordinator's TLS
  certificate ``server.pem``/``server.key`` (its subject-alternative names are the
  ``--host`` names: DNS names and IP addresses), the credentials the coordinator checks
  (``operator.token``, ``serverapp.token``: bearer tokens of the operator and of the
  coordinator's own ServerApp) and ``app-signing.key``, the Ed25519 key that signs the
  app bundles the coordinator admits.
* ``nodes/NAME/``: for ``mmbind-client --certs`` on node NAME. ``ca.pem``, the node's EC
  P-256 key pair in OpenSSH format (``auth.key``, ``auth.pub``: Flower's SuperNode
  authentication) and ``trusted-entities.yaml`` (the app-signing public key, Flower's
  ``--trusted-entities``).
* ``operator/``: for ``mmbind run|nodes --certs`` on the operator's machine. ``ca.pem``,
  ``operator.token`` and ``nodes/NAME.pub`` (the keys to register).
* with ``redis=True`` (``--redis``): a Redis password, as ``coordinator/redis.password``
  (``MMBIND_REDIS_PASSWORD_FILE``) and ``redis/redis.conf`` (``requirepass``: the file
  ``redis-server`` is started with).

Every file is created with mode 0600 (folders 0700), with the ``cryptography`` library. The
folder appears whole or not at all: it is written under a temporary name beside it and renamed
at the end, so a folder that exists is one ``init_certs`` finished.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mmbind.errors import ConfigError

CA_DIR = "ca"
COORDINATOR_DIR = "coordinator"
NODES_DIR = "nodes"
OPERATOR_DIR = "operator"
CA_CERT = "ca.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
OPERATOR_TOKEN = "operator.token"
SERVERAPP_TOKEN = "serverapp.token"
APP_SIGNING_KEY = "app-signing.key"
NODE_KEY = "auth.key"
NODE_PUB = "auth.pub"
TRUSTED_ENTITIES = "trusted-entities.yaml"
REDIS_DIR = "redis"
REDIS_PASSWORD = "redis.password"
REDIS_CONF = "redis.conf"
APP_SIGNER_ID = "mmbind-coordinator"
"""The key id under which the coordinator signs admitted app bundles."""

VALID_DAYS = 825
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def parse_hosts(text: str) -> list[str]:
    """``--host a.example,10.0.0.2``: the coordinator's names, each a DNS name or an IP."""
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts:
        raise ConfigError(
            f"--host {text!r} names no host; give the coordinator's DNS names and/or IP "
            "addresses, e.g. coord.example,127.0.0.1"
        )
    for h in hosts:
        try:
            ipaddress.ip_address(h)
        except ValueError:
            labels = h.rstrip(".").split(".")
            if not all(re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x)
                       for x in labels):  # fmt: skip
                raise ConfigError(
                    f"--host {h!r} is neither an IP address nor a DNS name, e.g. "
                    "coord.example or 10.0.0.2"
                ) from None
    return hosts


def parse_node_names(text: str) -> list[str]:
    """``--nodes A,B,C,test``: names of the nodes to make keys for."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if not _NAME.match(n):
            raise ConfigError(
                f"--nodes: {n!r} is not a valid node name; use letters, digits, '_', '.', '-' "
                "(at most 63 characters, starting with a letter or digit)"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"--nodes {text!r} names a node twice")
    return names


def _subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ssh_private(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _ssh_public(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def _certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    hosts: Sequence[str] = (),
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = (
            builder.add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), False)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False), True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True)
class CertsLayout:
    """Paths of a folder made by :func:`init_certs`."""

    root: Path

    @property
    def coordinator(self) -> Path:
        return self.root / COORDINATOR_DIR

    @property
    def operator(self) -> Path:
        return self.root / OPERATOR_DIR

    def node(self, name: str) -> Path:
        return self.root / NODES_DIR / name


def init_certs(
    folder: str | Path, hosts: Sequence[str], nodes: Sequence[str] = (), *, redis: bool = False
) -> CertsLayout:
    """Create a deployment's CA, coordinator certificate, tokens and node keys in ``folder``.

    Parameters
    ----------
    folder : str or Path
        A folder that does not exist yet or is empty.
    hosts : sequence of str
        The coordinator's DNS names and IP addresses (its certificate's SANs); the first is
        its common name.
    nodes : sequence of str
        Nodes to make key pairs for (more can be added with :func:`add_node`).
    redis : bool
        Also make a Redis password: ``coordinator/redis.password`` and
        ``redis/redis.conf`` (``requirepass``).

    Raises
    ------
    ConfigError
        ``folder`` holds files already (nothing is overwritten), or no host is given.
    """
    root = Path(folder).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(
            f"certificates folder {str(root)!r} exists and is not empty; give a new folder "
            "(nothing is overwritten)"
        )
    if not hosts:
        raise ConfigError("the coordinator needs at least one host name or address (--host)")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Written beside it and renamed at the end: an interrupted init leaves no folder that
    # looks made (a one-shot container that runs `test -d FOLDER || mmbind certs init ...`
    # would otherwise keep a half-written one).
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _write_layout(CertsLayout(tmp), hosts, nodes, redis)
        if root.exists():
            root.rmdir()  # empty (checked above)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CertsLayout(root)


def _write_layout(
    layout: CertsLayout, hosts: Sequence[str], nodes: Sequence[str], redis: bool
) -> None:
    root = layout.root  # made by mkdtemp: mode 0700 already
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = f"mmbind CA {hosts[0]} {secrets.token_hex(4)}"  # one per deployment
    ca_cert = _certificate(ca_name, ca_key.public_key(), None, ca_key, ca=True)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _private_file(root / CA_DIR / CA_CERT, ca_pem)
    _private_file(root / CA_DIR / "ca.key", _pem_key(ca_key))

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate(
        hosts[0], server_key.public_key(), ca_cert.subject, ca_key, ca=False, hosts=hosts
    )
    coord = layout.coordinator
    _private_file(coord / CA_CERT, ca_pem)
    _private_file(coord / SERVER_CERT, server_cert.public_bytes(serialization.Encoding.PEM))
    _private_file(coord / SERVER_KEY, _pem_key(server_key))
    operator_token = new_token()
    _private_file(coord / OPERATOR_TOKEN, operator_token.encode())
    _private_file(coord / SERVERAPP_TOKEN, new_token().encode())
    signing_key = ed25519.Ed25519PrivateKey.generate()
    _private_file(coord / APP_SIGNING_KEY, _ssh_private(signing_key))
    _private_file(coord / TRUSTED_ENTITIES, _trusted_entities(signing_key))
    if redis:
        password = new_token()
        _private_file(coord / REDIS_PASSWORD, password.encode())
        _private_file(root / REDIS_DIR / REDIS_CONF, f"requirepass {password}\n".encode())

    _private_file(layout.operator / CA_CERT, ca_pem)
    _private_file(layout.operator / OPERATOR_TOKEN, operator_token.encode())
    for name in nodes:
        add_node(layout, name)


def _trusted_entities(signing_key: ed25519.Ed25519PrivateKey) -> bytes:
    return f"{APP_SIGNER_ID}: {_ssh_public(signing_key).decode()}\n".encode()


def add_node(layout: CertsLayout, name: str) -> Path:
    """Make node ``name``'s folder: CA certificate, EC key pair (OpenSSH), trusted entities."""
    (name,) = parse_node_names(name)
    if not (layout.coordinator / TRUSTED_ENTITIES).is_file():
        raise ConfigError(f"{str(layout.root)!r} is not a folder made by `mmbind certs init`")
    folder = layout.node(name)
    if folder.exists():
        raise ConfigError(f"node {name!r} has keys already in {str(folder)!r}")
    key = ec.generate_private_key(ec.SECP256R1())
    _private_file(folder / CA_CERT, (layout.coordinator / CA_CERT).read_bytes())
    _private_file(folder / NODE_KEY, _ssh_private(key))
    _private_file(folder / NODE_PUB, _ssh_public(key) + f" mmbind-node-{name}\n".encode())
    _private_file(folder / TRUSTED_ENTITIES, (layout.coordinator / TRUSTED_ENTITIES).read_bytes())
    _private_file(layout.operator / NODES_DIR / f"{name}.pub", (folder / NODE_PUB).read_bytes())
    return folder


def _need(folder: Path, name: str, what: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise ConfigError(
            f"--certs {str(folder)!r} has no {name} ({what}); give the folder that "
            "`mmbind certs init` made for this machine"
        )
    return path


def read_secret(path: str | Path, what: str) -> str:
    """The one-line secret in ``path`` (a token or a password), without surrounding spaces."""
    p = Path(path).expanduser()
    try:
        text = p.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {str(p)!r}: {exc.strerror or exc}") from None
    if not text or "\n" in text:
        raise ConfigError(f"{what} file {str(p)!r} must hold one non-empty line")
    return text


@dataclass(frozen=True)
class CoordinatorCerts:
    """What ``mmbind-server --certs DIR`` reads (see the module for the layout)."""

    folder: Path
    ca: Path
    cert: Path
    key: Path
    operator_token: str
    serverapp_token: str
    signing_key: Path

    @classmethod
    def load(cls, folder: str | Path) -> CoordinatorCerts:
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"--certs {str(root)!r} is not a folder")
        return cls(
            folder=root,
            ca=_need(root, CA_CERT, "the CA certificate"),
            cert=_need(root, SERVER_CERT, "the coordinator's certificate"),
            key=_need(root, SERVER_KEY, "the coordinator's key"),
            operator_token=read_secret(_need(root, OPERATOR_TOKEN, "a token"), "token"),
            serverapp_token=read_secret(_need(root, SERVERAPP_TOKEN, "a token"), "token"),
            signing_key=_need(root, APP_SIGNING_KEY, "the app-signing key"),
        )

    def names(self) -> set[str]:
        """The DNS names and IP addresses the coordinator's certificate is valid for."""
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        return ips | set(sans.get_values_for_type(x509.DNSName))

    def role_of(self, token: str) -> str | None:
        """``"serverapp"``, ``"operator"`` or None for a bearer token (constant time)."""
        found = None
        for role, expected in (
            ("serverapp", self.serverapp_token),
            ("operator", self.operator_token),
        ):
            if hmac.compare_digest(token.encode(), expected.encode()):
                found = role
        return found


@dataclass(frozen=True)
class ClientCerts:
    """What a node (``mmbind-client --certs``) or an operator (``mmbind run --certs``) reads."""

    folder: Path
    ca: Path
    node_key: Path | None
    trusted_entities: Path | None
    token: str | None

    @classmethod
    def load(cls, folder: str | Path, *, node: bool) -> ClientCerts:
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"--certs {str(root)!r} is not a folder")
        ca = _need(root, CA_CERT, "the CA certificate")
        if node:
            return cls(
                root,
                ca,
                _need(root, NODE_KEY, "this node's key"),
                _need(root, TRUSTED_ENTITIES, "the app-signing key to trust"),
                None,
            )
        token = read_secret(_need(root, OPERATOR_TOKEN, "the operator's token"), "token")
        return cls(root, ca, None, None, token)


__all__ = [
    "APP_SIGNER_ID",
    "CertsLayout",
    "ClientCerts",
    "CoordinatorCerts",
    "add_node",
    "init_certs",
    "new_token",
    "parse_hosts",
    "parse_node_names",
    "read_secret",
]
