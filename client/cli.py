"""``mmbind-client``: run one node of a deployment.

It validates its arguments and its local data first (clear errors, non-zero
exit), then runs a Flower SuperNode whose node config carries them. The data
never leaves the node: only weights, metrics and embeddings cross the network.

With ``--certs DIR`` (this node's nodes/NAME/ folder of ``mmbind certs init``, or
``MMBIND_CERTS_DIR``) the SuperNode speaks TLS trusting only the deployment's CA,
authenticates with the node's key (registered by the operator: ``mmbind nodes
register``) and runs only app bundles the coordinator signed (Flower's
``--trusted-entities``). Without certificates it joins only a SuperLink on this machine,
unless ``--insecure`` says otherwise explicitly (and it then warns on every start).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mmbind import __version__
from mmbind.client.local_data import NodeSpec, build_node
from mmbind.dataset_manifest import activate_dataset, dataset_folder
from mmbind.errors import ConfigError, MMBindError
from mmbind.modalities import parse_modalities
from mmbind.processes import free_port, is_loopback, parse_address, port_is_free, scripts_path
from mmbind.run_config import RunConfig
from mmbind.settings import MMBindSettings

log = logging.getLogger(__name__)

SUPERNODE_HOST = "127.0.0.1"
"""Where ``flower-supernode`` listens for its ClientApps (its ``--host`` default)."""
_FLAGS = {"role": "--name", "data-dir": "--data-dir", "modalities": "--modalities"}
"""The flag each free-text node-config value comes from (for messages)."""


def _subjects(text: str | None) -> tuple[int, ...]:
    """``--subjects``: omitted (None) means every subject; given, it must name some."""
    if text is None:
        return ()
    try:
        subjects = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(
            f"--subjects {text!r} must be a comma list of integers, e.g. 1,2"
        ) from None
    if not subjects:
        raise ConfigError(
            f"--subjects {text!r} names no subject; give a comma list, e.g. 1,2 "
            "(omit --subjects for every subject of the dataset)"
        )
    return subjects


def node_config_arg(config: dict[str, str | bool]) -> str:
    """Flower's ``--node-config`` syntax: space-separated ``key=value``, strings quoted.

    Each entry is parsed back with Flower's own parser (what ``flower-supernode`` does
    with it), so a value Flower would reject or change is an error here.

    Raises
    ------
    ConfigError
        A value that Flower's quoting cannot carry (``"``, ``\\``, control characters).
    """
    import click
    from flwr.common.config import parse_config_args

    parts = []
    for key, value in config.items():
        if isinstance(value, bool):
            part = f"{key}={'true' if value else 'false'}"
        else:
            if '"' in value:
                raise ConfigError(f"{_FLAGS.get(key, key)} {value!r} must not contain '\"'")
            part = f'{key}="{value}"'
        try:
            parsed = parse_config_args([part])
        except (ValueError, click.ClickException):  # what flower-supernode would fail with
            parsed = {}
        if parsed != {key: value}:
            raise ConfigError(
                f"{_FLAGS.get(key, key)} {value!r} cannot be passed to the SuperNode (Flower's "
                "--node-config quoting cannot carry '\\' or control characters); choose a "
                "value without them"
            )
        parts.append(part)
    return " ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmbind-client",
        description="Join an mmbind deployment as a node holding some modalities.",
    )
    p.add_argument("--version", action="version", version=f"mmbind {__version__}")
    p.add_argument(
        "--modalities", default="",
        help="what this node holds, e.g. acc,gyro (with --dataset DIR, default: every "
        "modality of the data set's manifest)",
    )  # fmt: skip
    p.add_argument("--superlink", required=True, help="HOST:PORT of the coordinator's SuperLink")
    p.add_argument(
        "--dataset", default="synthetic",
        help="synthetic, utd-mhad, or a data set folder (docs/dataset-format.md): the node "
        "reads only its subjects' recordings of it",
    )  # fmt: skip
    p.add_argument("--data-dir", default="", help="UTD-MHAD folder holding Inertial/ and Skeleton/")
    p.add_argument(
        "--subjects",
        default=None,
        help="comma list of subjects whose recordings this node holds, e.g. 1,2 "
        "(omitted: every subject of the dataset; given, it must name at least one)",
    )
    p.add_argument("--labelled", action="store_true", help="its labels may train the classifier")
    p.add_argument(
        "--test", action="store_true",
        help="an evaluation-only node (held-out data); not with --labelled",
    )  # fmt: skip
    p.add_argument(
        "--name", default="",
        help="a name for reports, unique in the deployment (default: from modalities)",
    )  # fmt: skip
    p.add_argument(
        "--paired-data", action="store_true",
        help="allow the upper-bound baseline to use every modality of this node's files",
    )  # fmt: skip
    p.add_argument(
        "--port", type=int, default=0,
        help="local ClientApp API port on 127.0.0.1, 1..65535 (0 = any free)",
    )  # fmt: skip
    p.add_argument(
        "--max-retries", type=int, default=None, help="reconnect attempts, >= 0 (default ∞)"
    )
    p.add_argument(
        "--certs", default="",
        help="this node's folder from `mmbind certs init` (nodes/NAME/): TLS, node key, "
        "trusted app signer (default: MMBIND_CERTS_DIR)",
    )  # fmt: skip
    p.add_argument(
        "--root-certificates", default="", help="CA certificate to trust (instead of --certs)"
    )
    p.add_argument(
        "--auth-key", default="", help="the node's OpenSSH EC private key (instead of --certs)"
    )
    p.add_argument(
        "--trusted-entities", default="",
        help="YAML of the Ed25519 keys whose signed app bundles may run (instead of --certs)",
    )  # fmt: skip
    p.add_argument(
        "--insecure", action="store_true",
        help="plaintext and no node authentication, even to another machine (outranks "
        "MMBIND_CERTS_DIR)",
    )  # fmt: skip
    p.add_argument(
        "--check", action="store_true",
        help="validate arguments and data as a real start does, then exit",
    )  # fmt: skip
    p.add_argument("--log-level", default=None)
    return p


def spec_from_args(args: argparse.Namespace) -> NodeSpec:
    dataset = args.dataset
    folder = dataset_folder(dataset)
    held = args.modalities
    if folder is not None:  # a data set folder: by its absolute path, its modalities known
        dataset = str(folder.resolve())
        manifest = activate_dataset(dataset)
        if not held.strip() and manifest is not None:
            held = ",".join(manifest.modality_names)
    if not held.strip():
        raise ConfigError(
            "--modalities is required: name what this node holds, e.g. --modalities acc,gyro"
        )
    modalities = parse_modalities(held)
    subjects = _subjects(args.subjects)
    if args.labelled and args.test:
        raise ConfigError(
            "--labelled and --test exclude each other: a --test node only evaluates, "
            "a --labelled one trains the classifier with its labels; pick one"
        )
    if args.name != args.name.strip():
        raise ConfigError(f"--name {args.name!r} must not start or end with spaces")
    data_dir = str(Path(args.data_dir).expanduser().resolve()) if args.data_dir else ""
    name = args.name or ("test-" if args.test else "") + "+".join(modalities)
    return NodeSpec(
        modalities=modalities,
        subjects=subjects,
        labelled=args.labelled,
        test=args.test,
        role=name,
        paired_data=args.paired_data,
        dataset=dataset,
        data_dir=data_dir,
    )


def check_port(port: int) -> int:
    """``--port``: 0 (any free port) or a port the SuperNode can listen on at 127.0.0.1."""
    if not 0 <= port < 65536:
        raise ConfigError(f"--port must be in 1..65535 (0 = any free port), got {port}")
    if port and not port_is_free(SUPERNODE_HOST, port):
        raise ConfigError(
            f"--port {port}: {SUPERNODE_HOST}:{port} is already in use; pick another port "
            "or 0 for any free one"
        )
    return port


def security_args(args: argparse.Namespace, settings: MMBindSettings) -> list[str]:
    """``flower-supernode``'s TLS, authentication and trust flags; fails closed.

    Raises
    ------
    ConfigError
        A SuperLink on another machine without certificates and without ``--insecure``,
        or ``--insecure`` beside certificate flags, or a missing file.
    """
    explicit = [
        f for f, v in (("--certs", args.certs), ("--root-certificates", args.root_certificates),
                       ("--auth-key", args.auth_key)) if v
    ]  # fmt: skip
    if args.insecure:
        if explicit:
            raise ConfigError(f"--insecure and {explicit[0]} exclude each other; give one")
        trusting = args.trusted_entities
        return ["--insecure", *(["--trusted-entities", trusting] if trusting else [])]
    root, key, trusted = args.root_certificates, args.auth_key, args.trusted_entities
    folder = args.certs or ("" if root or key else settings.certs_dir)
    if folder:
        from mmbind.certs import ClientCerts

        certs = ClientCerts.load(folder, node=True)
        root, key = root or str(certs.ca), key or str(certs.node_key)
        trusted = trusted or str(certs.trusted_entities)
    if not root and not key:
        host, _ = parse_address(args.superlink, "--superlink")
        if not is_loopback(host):
            raise ConfigError(
                f"--superlink {args.superlink} is another machine: give --certs (this node's "
                "folder of `mmbind certs init`) or, for plaintext without authentication, "
                "--insecure"
            )
        return ["--insecure"]
    if not root or not key:
        raise ConfigError(
            "--root-certificates and --auth-key go together (TLS needs node "
            "authentication here); or give --certs"
        )
    out = []
    for flag, value in (("--root-certificates", root), ("--auth-supernode-private-key", key),
                        ("--trusted-entities", trusted)):  # fmt: skip
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ConfigError(f"{flag} {str(path)!r} is not a file")
            out += [flag, str(path)]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = MMBindSettings.load()
        logging.basicConfig(
            level=(args.log_level or settings.log_level).upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        parse_address(args.superlink, "--superlink")
        spec = spec_from_args(args)
        if args.max_retries is not None and args.max_retries < 0:
            raise ConfigError(
                f"--max-retries must be >= 0 (omit it to retry forever), got {args.max_retries}"
            )
        node_config = node_config_arg(spec.to_node_config())
        port = check_port(args.port)
        security = security_args(args, settings)
        # Validate the node's data where it lives, before joining: the same code path
        # the ClientApp will take for each message.
        node = build_node(RunConfig(), spec)
        print(
            f"mmbind-client: {spec.role}: {len(node.data)} samples of "
            f"{', '.join(spec.modalities)}"
            f"{' (labelled)' if spec.labelled else ''}{' (test)' if spec.test else ''}",
            file=sys.stderr,
        )
        if args.check:
            return 0
        if args.insecure:
            print(
                "mmbind-client: WARNING: --insecure: plaintext and no node authentication; "
                "whoever sits between this node and the coordinator sees and alters its "
                "traffic, and any SuperLink can run code here",
                file=sys.stderr,
            )
        argv_node = [
            "flower-supernode",
            *security,
            "--superlink", args.superlink,
            "--port", str(port or free_port()),
            "--node-config", node_config,
        ]  # fmt: skip
        if args.max_retries is not None:
            argv_node += ["--max-retries", str(args.max_retries)]
        # Become the SuperNode (exec): signals, exit code and process group are then
        # the node's own, as if flower-supernode had been started directly.
        sys.stderr.flush()
        path = scripts_path()  # the SuperNode starts flwr-clientapp by name
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "PATH": path}
        executable = shutil.which("flower-supernode", path=path)
        if executable is None:
            raise MMBindError("flower-supernode not found; is flwr installed in this environment?")
        os.execve(executable, argv_node, env)
    except MMBindError as exc:
        print(f"mmbind-client: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
