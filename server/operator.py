"""The operator's side of a coordinator: Flower's CLI with mmbind's credentials.

``mmbind run`` and ``mmbind nodes`` drive the coordinator's SuperLink through Flower's
own CLI (``flwr run``, ``flwr ls``, ``flwr supernode register|list|unregister``), each in
a private ``FLWR_HOME`` made here: its ``config.toml`` names the SuperLink (with the
deployment's CA certificate when TLS is on) and its ``credentials.yaml`` holds the
operator's token where Flower's CLI keeps account tokens, so Flower sends it as
``Authorization: Bearer ...`` on every Control API call (the coordinator checks it, see
:mod:`mmbind.server.superlink`). The token thus never appears on a command line.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import tomli_w

from mmbind.certs import ClientCerts
from mmbind.errors import ConfigError, FederationError
from mmbind.processes import is_loopback, parse_address

log = logging.getLogger(__name__)

CONNECTION = "mmbind"
KEY_IN_USE = "Public key already in use"
"""What Flower 1.42's SuperLink answers to a ``supernode register`` of a key it holds."""
# Flower's CLI keys (flwr/cli/constant.py, 1.42): where its OIDC plugin keeps tokens.
_AUTHN_TYPE_KEY = "flower.account-auth.%s.authn-type"
_ACCESS_TOKEN_KEY = "flower.account-auth.%s.oidc-access-token"
_REFRESH_TOKEN_KEY = "flower.account-auth.%s.oidc-refresh-token"


def operator_certs(
    superlink: str, certs: str | Path | None, *, insecure: bool = False
) -> ClientCerts | None:
    """The operator's credentials for ``superlink``; None (plaintext) on loopback, or
    anywhere with ``insecure`` (which outranks ``certs`` from the environment).

    Raises
    ------
    ConfigError
        A non-loopback SuperLink without ``--certs`` (the operator/ folder of
        ``mmbind certs init``) and without ``--insecure``.
    """
    host, _ = parse_address(superlink, "--superlink")
    if insecure:
        return None
    if certs:
        return ClientCerts.load(certs, node=False)
    if not is_loopback(host):
        raise ConfigError(
            f"--superlink {superlink} is not on this machine: give --certs (the operator/ "
            "folder of `mmbind certs init`) or MMBIND_CERTS_DIR (or, to a coordinator "
            "started with --insecure, --insecure)"
        )
    return None


def write_flower_home(folder: Path, superlink: str, certs: ClientCerts | None = None) -> Path:
    """A private ``FLWR_HOME`` whose connection ``mmbind`` is the coordinator's SuperLink."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    connection: dict[str, Any] = {"address": superlink}
    if certs is None:
        connection["insecure"] = True
    else:
        connection["root-certificates"] = str(certs.ca)
    config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
    (folder / "config.toml").write_text(tomli_w.dumps(config))
    if certs is not None and certs.token:
        stored = {
            _AUTHN_TYPE_KEY % superlink: b"oidc",
            _ACCESS_TOKEN_KEY % superlink: certs.token.encode(),
            _REFRESH_TOKEN_KEY % superlink: b"-",  # Flower wants one; never sent
        }
        encoded = {k: base64.b64encode(v).decode() for k, v in stored.items()}
        path = folder / "credentials.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(encoded, f)  # JSON is YAML: Flower's credential store reads it
    return folder


def flwr(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run Flower's CLI (``flwr ARGS``) with ``FLWR_HOME=home``."""
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"}
    cmd = [sys.executable, "-m", "flwr.cli.app", *args]
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise FederationError(f"flwr {args[0]} did not finish in {timeout:.0f} s") from None


def json_reply(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    """The JSON document a ``flwr ... --format json`` printed; an error when it failed."""
    text = proc.stdout.strip()
    try:
        reply = json.loads(text[text.index("{") :]) if "{" in text else {}
    except json.JSONDecodeError:
        reply = {}
    if proc.returncode != 0 or not reply.get("success", False):
        lines = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        why = reply.get("error-message") or (lines[0] if lines else f"exit {proc.returncode}")
        raise FederationError(f"{what}: {why}")
    return dict(reply)


def _nodes_home(superlink: str, certs: str | Path | None, tmp: str) -> Path:
    client = operator_certs(superlink, certs)
    if client is None:
        raise ConfigError(
            "managing nodes needs TLS and node authentication: start mmbind-server with "
            "--certs and give the operator/ folder here with --certs"
        )
    return write_flower_home(Path(tmp) / "flwr-home", superlink, client)


def register_node(
    superlink: str,
    certs: str | Path | None,
    public_key: str,
    name: str,
    *,
    exist_ok: bool = False,
) -> int | None:
    """Admit the node whose OpenSSH public key is in ``public_key``; return its node id.

    With ``exist_ok``, a key the SuperLink holds already (Flower answers "Public key already
    in use") returns ``None`` instead of raising; nothing about that node changes.

    Raises
    ------
    ConfigError
        No key file, or no operator certificates.
    FederationError
        The SuperLink refused the registration (the message says why).
    """
    key = Path(public_key).expanduser()
    if not key.is_file():
        raise ConfigError(f"public key file {str(key)!r} not found (a node's auth.pub)")
    with tempfile.TemporaryDirectory(prefix="mmbind-nodes-") as tmp:
        home = _nodes_home(superlink, certs, tmp)
        extra = ["--name", name] if name else []
        proc = flwr(home, "supernode", "register", str(key), CONNECTION, *extra, "--format", "json")
        try:
            reply = json_reply(proc, f"the SuperLink at {superlink} refused to register {key}")
        except FederationError as exc:
            if exist_ok and KEY_IN_USE in str(exc):
                return None
            raise
    return int(reply.get("node-id", 0))


def list_nodes(superlink: str, certs: str | Path | None) -> list[dict[str, Any]]:
    """The nodes the SuperLink knows (Flower's ``flwr supernode list`` records)."""
    with tempfile.TemporaryDirectory(prefix="mmbind-nodes-") as tmp:
        home = _nodes_home(superlink, certs, tmp)
        proc = flwr(home, "supernode", "list", CONNECTION, "--format", "json")
        reply = json_reply(proc, f"the SuperLink at {superlink} did not list its nodes")
    return [dict(n) for n in reply.get("nodes", [])]


def revoke_node(superlink: str, certs: str | Path | None, node: str) -> int:
    """Unregister a node (by id or name): its key is refused from now on; return its id."""
    nodes = list_nodes(superlink, certs)
    matches = [n for n in nodes if str(n.get("node-id")) == node or (n.get("name") or "") == node]
    if len(matches) != 1:
        known = ", ".join(f"{n.get('node-id')} ({n.get('name') or '-'})" for n in nodes)
        raise ConfigError(f"no single registered node is {node!r}; registered: {known or 'none'}")
    node_id = int(matches[0]["node-id"])
    with tempfile.TemporaryDirectory(prefix="mmbind-nodes-") as tmp:
        home = _nodes_home(superlink, certs, tmp)
        proc = flwr(home, "supernode", "unregister", str(node_id), CONNECTION, "--format", "json")
        json_reply(proc, f"the SuperLink at {superlink} did not unregister node {node_id}")
    return node_id


__all__ = [
    "CONNECTION",
    "flwr",
    "json_reply",
    "list_nodes",
    "operator_certs",
    "register_node",
    "revoke_node",
    "write_flower_home",
]
