"""``mmbind certs init``: the CA, the coordinator's certificate, node keys and tokens."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from mmbind.certs import (
    APP_SIGNER_ID,
    CertsLayout,
    ClientCerts,
    CoordinatorCerts,
    add_node,
    init_certs,
    parse_hosts,
    parse_node_names,
    read_secret,
)
from mmbind.errors import ConfigError


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> CertsLayout:
    return init_certs(
        tmp_path_factory.mktemp("certs") / "deploy", ["coord.example", "127.0.0.1"], ["A", "test"]
    )


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_coordinator_certificate_names_every_host_and_chains_to_the_ca(
    layout: CertsLayout,
) -> None:
    # Prepare
    ca = _cert(layout.coordinator / "ca.pem")
    server = _cert(layout.coordinator / "server.pem")
    # Execute
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # Assert
    assert sans.get_values_for_type(x509.DNSName) == ["coord.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    server.verify_directly_issued_by(ca)  # raises when the signature does not verify
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    key = serialization.load_pem_private_key((layout.coordinator / "server.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key().public_numbers() == server.public_key().public_numbers()  # type: ignore[union-attr]


def test_a_certificate_from_another_ca_does_not_chain(layout: CertsLayout, tmp_path: Path) -> None:
    # Prepare
    other = init_certs(tmp_path / "other", ["127.0.0.1"])
    # Execute / Assert
    with pytest.raises((ValueError, InvalidSignature)):  # another issuer name, or signature
        _cert(other.coordinator / "server.pem").verify_directly_issued_by(
            _cert(layout.coordinator / "ca.pem")
        )


def test_node_keys_are_openssh_ec_p256_and_their_public_key_matches(layout: CertsLayout) -> None:
    # Prepare
    node = layout.node("A")
    # Execute
    private = serialization.load_ssh_private_key((node / "auth.key").read_bytes(), None)
    public = serialization.load_ssh_public_key((node / "auth.pub").read_bytes())
    # Assert
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert private.public_key().public_numbers() == public.public_numbers()
    assert (layout.operator / "nodes" / "A.pub").read_bytes() == (node / "auth.pub").read_bytes()
    assert (node / "auth.pub").read_text().startswith("ecdsa-sha2-nistp256 ")


def test_trusted_entities_hold_the_app_signing_public_key(layout: CertsLayout) -> None:
    # Prepare
    import yaml

    signing = serialization.load_ssh_private_key(
        (layout.coordinator / "app-signing.key").read_bytes(), None
    )
    # Execute
    trusted = yaml.safe_load((layout.node("test") / "trusted-entities.yaml").read_text())
    # Assert
    assert isinstance(signing, ed25519.Ed25519PrivateKey)
    public = serialization.load_ssh_public_key(trusted[APP_SIGNER_ID].encode())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert public.public_bytes(*raw) == signing.public_key().public_bytes(*raw)


def test_every_file_is_private_and_tokens_differ(layout: CertsLayout) -> None:
    # Prepare
    files = [p for p in layout.root.rglob("*") if p.is_file()]
    # Execute
    modes = {stat.S_IMODE(p.stat().st_mode) for p in files}
    coordinator = CoordinatorCerts.load(layout.coordinator)
    operator = ClientCerts.load(layout.operator, node=False)
    # Assert
    assert len(files) >= 15 and modes == {0o600}
    assert coordinator.operator_token == operator.token
    assert coordinator.operator_token != coordinator.serverapp_token
    assert len(coordinator.operator_token) >= 40
    assert coordinator.role_of(coordinator.serverapp_token) == "serverapp"
    assert coordinator.role_of(operator.token or "") == "operator"
    assert coordinator.role_of("guess") is None


def test_init_refuses_a_folder_that_holds_files(layout: CertsLayout) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="exists and is not empty"):
        init_certs(layout.root, ["127.0.0.1"])


def test_redis_password_is_one_secret_in_two_private_files(tmp_path: Path) -> None:
    # Execute
    made = init_certs(tmp_path / "d", ["coordinator", "127.0.0.1"], ["A"], redis=True)
    # Assert: the coordinator's password file and redis-server's requirepass say the same
    password = read_secret(made.coordinator / "redis.password", "Redis password")
    conf = (made.root / "redis" / "redis.conf").read_text()
    assert conf == f"requirepass {password}\n" and len(password) >= 40
    for path in (made.coordinator / "redis.password", made.root / "redis" / "redis.conf"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # without redis=True there is neither
    assert not (init_certs(tmp_path / "e", ["127.0.0.1"]).root / "redis").exists()


def test_an_interrupted_init_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: node keys fail half-way (after the CA, the coordinator's and operator's files)
    import mmbind.certs as certs

    def broken(layout: CertsLayout, name: str) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(certs, "add_node", broken)
    # Execute
    with pytest.raises(OSError, match="disk full"):
        init_certs(tmp_path / "d", ["127.0.0.1"], ["A"])
    # Assert: neither the folder nor its temporary sibling is left
    assert list(tmp_path.iterdir()) == []
    # ... and an empty folder given is kept empty
    (tmp_path / "e").mkdir()
    with pytest.raises(OSError, match="disk full"):
        init_certs(tmp_path / "e", ["127.0.0.1"], ["A"])
    assert [p.name for p in tmp_path.iterdir()] == ["e"] and not any((tmp_path / "e").iterdir())


def test_add_node_makes_one_more_and_refuses_a_known_name(layout: CertsLayout) -> None:
    # Execute
    folder = add_node(layout, "B")
    # Assert
    assert ClientCerts.load(folder, node=True).node_key == (folder / "auth.key").resolve()
    with pytest.raises(ConfigError, match="has keys already"):
        add_node(layout, "B")


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "names no host"), ("coord..example", "neither an IP address nor a DNS name"),
     ("a b", "neither an IP address nor a DNS name")],
)  # fmt: skip
def test_bad_hosts_are_named(text: str, message: str) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=message):
        parse_hosts(text)


def test_hosts_and_node_names_parse() -> None:
    # Execute / Assert
    assert parse_hosts("coord.example, 10.0.0.2,::1") == ["coord.example", "10.0.0.2", "::1"]
    assert parse_node_names("A,B,test") == ["A", "B", "test"]
    with pytest.raises(ConfigError, match="twice"):
        parse_node_names("A,A")
    with pytest.raises(ConfigError, match="not a valid node name"):
        parse_node_names("../x")


def test_a_folder_without_its_files_is_a_clear_error(layout: CertsLayout) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"has no server\.pem"):
        CoordinatorCerts.load(layout.operator)
    with pytest.raises(ConfigError, match=r"has no operator\.token"):
        ClientCerts.load(layout.node("A"), node=False)
    with pytest.raises(ConfigError, match=r"has no auth\.key"):
        ClientCerts.load(layout.operator, node=True)
