"""The ``mmbind`` command line: ``mmbind simulate`` and friends.

Errors that mmbind raises on purpose become one line on stderr and a non-zero
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmbind import __version__
from mmbind.errors import ConfigError, MMBindError
from mmbind.processes import parse_address, writable_folder
from mmbind.run_config import RunConfig
from mmbind.settings import MMBindSettings

log = logging.getLogger(__name__)


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad --config entry {pair!r}; use key=value, e.g. align-rounds=6")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler()
    handler.setLevel(numeric)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=numeric, handlers=[handler])
    # Flower and Ray are chatty at INFO; keep them at our level or quieter.
    for name in ("flwr", "ray", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("flwr").addFilter(_DropDeprecation())


class _DropDeprecation(logging.Filter):
    """Flower flags its Python simulation entry point as deprecated; we use it on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DEPRECATED FEATURE" not in record.getMessage()


_DATASET_HELP = (
    "synthetic (default), utd-mhad (with --data-dir), or a data set folder "
    "(docs/dataset-format.md; mmbind data import/export make one)"
)


def _dataset(value: str) -> str:
    """``--dataset``: a built-in name as is, a data set folder as its absolute path (the
    simulation's workers and cells resolve it wherever they run)."""
    from mmbind.dataset_manifest import dataset_folder

    folder = dataset_folder(value)
    return value if folder is None else str(folder.resolve())


def _layout_values(layout: str, values: dict[str, Any]) -> dict[str, Any]:
    """What ``--layout FILE`` sets; a binding or shared modality given otherwise must agree."""
    from mmbind.lab.data import layout_config

    out = layout_config(layout)
    for key in ("binding", "shared_modality"):
        if key in values and key in out and str(values[key]) != out[key]:
            flag = key.replace("_", "-")
            raise ConfigError(
                f"{flag} {values[key]!r} contradicts the layout's {out[key]!r}; "
                f"set it in the layout file {layout}"
            )
    return out


def _check_num_cpus(value: int, what: str) -> None:
    if value < 0:
        raise ConfigError(f"{what} must be >= 0 (0 = all cores), got {value}")


def _progress_display(enabled: bool) -> tuple[Callable[[str, int, int], None] | None, Any]:
    """A rich progress bar on a terminal; nothing when not a TTY."""
    if not enabled:
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
    )
    task = bar.add_task("starting", total=1)

    def update(label: str, step: int, total: int) -> None:
        bar.update(task, description=label, completed=step, total=max(total, 1))

    return update, bar


def cmd_simulate(args: argparse.Namespace, settings: MMBindSettings) -> int:
    from rich.console import Console

    from mmbind.server.results import check_output, write_results

    values: dict[str, Any] = _parse_overrides(args.config or [])
    values.update(
        dataset=_dataset(args.dataset),
        data_dir=str(Path(args.data_dir).expanduser()) if args.data_dir else settings.data_dir,
        seed=args.seed,
        split=args.split,
        nodes_per_role=args.nodes_per_role,
    )
    if args.methods:
        values["methods"] = args.methods
    if args.binding:
        values["binding"] = args.binding
    if args.layout:
        values.update(_layout_values(args.layout, values))
    config = RunConfig.from_mapping(values)
    if config.layout:
        from mmbind.lab.data import check_layout

        check_layout(config)  # a layout that cannot run: refused before anything starts
    _check_num_cpus(settings.num_cpus, "MMBIND_NUM_CPUS")
    output = check_output(args.output or settings.output, overwrite=args.overwrite)
    from mmbind.lab.simulate import simulate  # Flower, Ray, torch: after the checks

    console = Console(stderr=True)
    progress, bar = _progress_display(console.is_terminal and not args.quiet)
    if bar is not None:
        with bar:
            results = simulate(config, num_cpus=settings.num_cpus, progress=progress)
    else:
        results = simulate(config, num_cpus=settings.num_cpus)
    path = write_results(results, output)
    _print_results(results, path, "simulate")
    return 0


def cmd_experiment(args: argparse.Namespace, settings: MMBindSettings) -> int:
    from rich.console import Console

    from mmbind.lab.experiment import Grid, default_methods, run_experiment

    if args.num_cpus is None:
        _check_num_cpus(settings.num_cpus, "MMBIND_NUM_CPUS")
    else:
        _check_num_cpus(args.num_cpus, "--num-cpus")
    output = Path(args.output).expanduser()
    layouts = [x.strip() for x in args.layout.split(",") if x.strip()] if args.layout else [""]
    if len(set(layouts)) != len(layouts):
        raise ConfigError(f"--layout {args.layout!r} names a layout twice")
    # Several layouts: one experiment folder each (OUTPUT/<layout file stem>), all checked
    # before any cell runs.
    grids: list[tuple[Grid, Path]] = []
    for layout in layouts:
        overrides = _parse_overrides(args.config or [])
        if layout:
            overrides.update(_layout_values(layout, overrides))
        grid = Grid(
            dataset=_dataset(args.dataset),
            data_dir=str(Path(args.data_dir).expanduser()) if args.data_dir else settings.data_dir,
            methods=args.methods or default_methods(),
            label_budgets=args.label_budgets,
            splits=args.splits,
            seeds=args.seeds,
            nodes_per_role=args.nodes_per_role,
            overrides=overrides,
            protocol=args.protocol,
        )
        if layout:
            from mmbind.lab.data import check_layout

            check_layout(grid.config_for(grid.cells()[0]))  # refused before any cell runs
        folder = output if len(layouts) == 1 else output / Path(layout).stem
        grids.append((grid, folder))
    stems = [folder for _, folder in grids]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"--layout {args.layout!r}: two layout files share a file name")
    num_cpus = settings.num_cpus if args.num_cpus is None else args.num_cpus
    for _, folder in grids:
        writable_folder(folder, "--output")
    for grid, folder in grids:
        # results.json there is the grid's aggregate, rewritten by every invocation (resumable).
        console = Console(stderr=True)
        progress, bar = _progress_display(console.is_terminal and not args.quiet)
        kwargs: dict[str, Any] = {
            "num_cpus": num_cpus,
            "fresh": args.fresh,
            "progress": progress,
            "compare": args.compare or None,
        }
        if bar is not None:
            with bar:
                outcome = run_experiment(grid, folder, **kwargs)
        else:
            outcome = run_experiment(grid, folder, **kwargs)
        _print_experiment(outcome.results, outcome.path)
        print(
            f"cells: {len(outcome.ran)} run, {len(outcome.reused)} reused "
            f"({len(outcome.cells)} in the grid) · report: {outcome.path.parent / 'report.md'}"
        )
    return 0


def _print_experiment(results: dict[str, Any], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from mmbind.lab.experiment import METHOD_TITLES
    from mmbind.lab.report import dec, pct

    out = Console()
    budgets = results["label_budgets"]
    table = Table(
        title=f"mmbind experiment · {results['dataset']} · accuracy % / macro-F1, "
        "mean ± std over seeds × splits"
    )
    table.add_column("method")
    for budget in budgets:
        table.add_column(f"budget {budget}", justify="right")
    for name in results["methods"]:
        cells = []
        for group in budgets.values():
            m = group["methods"].get(name, {})
            cells.append(
                f"{pct(m.get('accuracy'), m.get('accuracy_std'))} / "
                f"{dec(m.get('macro_f1'), m.get('macro_f1_std'))} ({m.get('runs', 0)})"
            )
        table.add_row(METHOD_TITLES.get(name, name), *cells)
    out.print(table)
    b = results["binding"]
    if b.get("runs"):
        out.print(
            f"binding: pairing accuracy {pct(b['pairing_accuracy'], b['pairing_accuracy_std'], 1)}"
            f" %, mean similarity {dec(b['mean_similarity'], b['mean_similarity_std'])}"
        )
    for npr, entry in (results.get("nodes_per_role") or {}).items():
        group = entry["label_budgets"][str(results["headline"]["label_budget"])]
        mm = group["methods"].get("mmbind", {})
        acc = pct(mm.get("accuracy"), mm.get("accuracy_std"))
        out.print(
            f"nodes per role {npr}: mmbind accuracy {acc}"
            f" %, pairing accuracy {pct(group['binding'].get('pairing_accuracy'), digits=1)} %"
        )
    out.print(
        f"wall: {results['wall_seconds']:.1f} s over {len(results['cells'])} cells "
        f"(this invocation {results['elapsed_seconds']:.1f} s) · results: {path}"
    )


def cmd_run(args: argparse.Namespace, settings: MMBindSettings) -> int:
    from rich.console import Console

    from mmbind.server.results import check_output

    values: dict[str, Any] = _parse_overrides(args.config or [])
    values["seed"] = args.seed
    values["min_nodes"] = args.min_nodes
    if args.methods:
        values["methods"] = args.methods
    if args.binding:
        values["binding"] = args.binding
    config = RunConfig.from_mapping(values)
    parse_address(args.superlink, "--superlink")
    if args.binding_service:
        parse_address(args.binding_service, "--binding-service")
    output = check_output(args.output or settings.output, overwrite=args.overwrite)
    from mmbind.server.deployment import default_binding_address, run_deployment
    from mmbind.server.operator import operator_certs

    binding = args.binding_service or default_binding_address(args.superlink)
    if args.insecure and args.certs:
        raise ConfigError("--insecure and --certs exclude each other; give one")
    certs = operator_certs(args.superlink, args.certs or settings.certs_dir, insecure=args.insecure)
    if args.insecure:
        print(
            "mmbind run: WARNING: --insecure: plaintext to the coordinator, no operator "
            "authentication",
            file=sys.stderr,
        )
    console = Console(stderr=True)
    progress, bar = _progress_display(console.is_terminal and not args.quiet)
    kwargs: dict[str, Any] = {
        "superlink": args.superlink,
        "binding_service": binding,
        "output": output,
        "resume": args.resume,
        "progress": progress,
        "certs": certs,
    }
    if args.attempt_timeout is not None:
        kwargs["attempt_timeout"] = args.attempt_timeout
    if bar is not None:
        with bar:
            results = run_deployment(config, **kwargs)
    else:
        results = run_deployment(config, **kwargs)
    _print_results(results, output / "results.json", "run")
    return 0


def _print_results(results: dict[str, Any], path: Path, command: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from mmbind.server.results import format_table

    out = Console()
    table = Table(title=f"mmbind {command} · {results['dataset']} · {results['engine']}")
    table.add_column("method")
    table.add_column("accuracy", justify="right")
    table.add_column("macro-F1", justify="right")
    for row in format_table(results):
        table.add_row(*row)
    out.print(table)
    b = results["binding"]
    if b["pairs"]:
        acc = b["pairing_accuracy"]
        out.print(
            f"binding: {b['pairs']} pairs, pairing accuracy "
            f"{'n/a' if acc is None else f'{acc:.3f}'}, mean similarity {b['mean_similarity']:.3f}"
        )
    for d in results.get("dropouts", []):
        out.print(f"dropout: node {d['role']} in {d['phase']}: {d['reason']}")
    out.print(f"wall: {results['wall_seconds']:.1f} s · results: {path}")


def cmd_data(args: argparse.Namespace, settings: MMBindSettings) -> int:
    from mmbind.lab import data

    if args.data_command == "export":
        data_dir = args.data_dir or settings.data_dir
        path = data.export(args.dataset, args.target, data_dir=data_dir, seed=args.seed)
        print(data.check(path).summary().splitlines()[1] + f" · written to {path}")
        return 0
    if args.data_command == "import":
        path = data.import_csv(
            args.kind, args.source, args.mapping, args.target, format=args.format
        )
        print(data.check(path).summary().splitlines()[1] + f" · written to {path}")
        return 0
    if args.data_command == "check":
        report = data.check(args.folder)
        print(report.summary())
        return 0 if report.ok else 3
    raise ConfigError(f"unknown data command {args.data_command!r}")


def _add_data_parser(sub: Any) -> None:
    data = sub.add_parser(
        "data",
        help="make, check and import data set folders (docs/dataset-format.md)",
        description="Data set folders: a manifest (mmbind-dataset.toml) and one .npz file "
        "per recording. See docs/dataset-format.md.",
    )
    data_sub = data.add_subparsers(dest="data_command", required=True)
    export = data_sub.add_parser(
        "export",
        help="write a built-in data set (synthetic, utd-mhad) as a data set folder",
        description="Write a built-in data set as a data set folder. UTD-MHAD keeps its raw "
        "sequences (windowing 'whole': the folder reads back bit for bit as the built-in "
        "loader); synthetic keeps its generated windows for --seed.",
    )
    export.add_argument("dataset", choices=["synthetic", "utd-mhad"])
    export.add_argument("target", help="the folder to create (must not exist or be empty)")
    export.add_argument("--data-dir", default="", help="UTD-MHAD folder (Inertial/, Skeleton/)")
    export.add_argument("--seed", type=int, default=0, help="synthetic: the generator's seed")
    check = data_sub.add_parser(
        "check",
        help="validate a data set folder and summarise it",
        description="Read every recording as a run would; print subjects, classes per "
        "subject, recordings, windows per modality, and every problem found (NaN/inf runs, "
        "constant channels, duplicates, invalid files). Exit 3 when there are errors.",
    )
    check.add_argument("folder")
    imp = data_sub.add_parser(
        "import",
        help="import CSV or Parquet data (a long table, or a folder of per-recording files)",
        description="Import CSV or Parquet data into a new data set folder, as a mapping file "
        "(TOML) says: 'table' reads one long CSV or Parquet table (subject, label, optional "
        "trial column, sensor columns); 'files' reads a folder of CSVs whose paths match the "
        "mapping's pattern. "
        "Nothing appears at TARGET unless the whole import succeeds.",
    )
    imp.add_argument("kind", choices=["table", "files"])
    imp.add_argument(
        "source", help="the CSV or Parquet file (table) or the folder of CSV files (files)"
    )
    imp.add_argument("target", help="the data set folder to create (must not exist or be empty)")
    imp.add_argument("--mapping", required=True, help="the mapping file (TOML)")
    imp.add_argument(
        "--format",
        choices=["csv", "parquet"],
        default=None,
        help="the table's format (default: parquet for a .parquet or .pq file, else csv)",
    )
    data.set_defaults(func=cmd_data)


def cmd_certs_init(args: argparse.Namespace, settings: MMBindSettings) -> int:
    from mmbind.certs import init_certs, parse_hosts, parse_node_names

    layout = init_certs(
        args.folder, parse_hosts(args.host), parse_node_names(args.nodes), redis=args.redis
    )
    redis = ", redis/ to the Redis server (redis-server redis.conf)" if args.redis else ""
    print(
        f"mmbind certs: made {layout.root}: copy coordinator/ to the coordinator "
        f"(mmbind-server --certs), nodes/NAME/ to node NAME (mmbind-client --certs), "
        f"operator/ to where you run `mmbind run --certs`{redis}; keep ca/ offline"
    )
    return 0


def cmd_certs_add_node(args: argparse.Namespace, settings: MMBindSettings) -> int:
    from mmbind.certs import CertsLayout, add_node

    folder = add_node(CertsLayout(Path(args.folder).expanduser()), args.name)
    print(f"mmbind certs: made {folder} (copy it to node {args.name}; register its auth.pub)")
    return 0


def cmd_nodes(args: argparse.Namespace, settings: MMBindSettings) -> int:
    from mmbind.server.operator import list_nodes, register_node, revoke_node

    certs = args.certs or settings.certs_dir
    if args.action == "register":
        node_id = register_node(
            args.superlink, certs, args.public_key, args.name, exist_ok=args.exist_ok
        )
        who = args.name or args.public_key
        if node_id is None:
            print(f"mmbind nodes: {who} is registered already (its key is in use)")
        else:
            print(f"mmbind nodes: registered {who} as node {node_id}")
    elif args.action == "revoke":
        node_id = revoke_node(args.superlink, certs, args.node)
        print(f"mmbind nodes: revoked node {node_id}")
    else:
        for node in list_nodes(args.superlink, certs):
            print(f"{node['node-id']}\t{node.get('status', '')}\tonline at {node.get('online-at')}")
    return 0


def _add_security_parsers(sub: Any) -> None:
    certs = sub.add_parser("certs", help="make the certificates and keys of a deployment")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    init = certs_sub.add_parser(
        "init",
        help="create a CA, the coordinator's certificate, tokens and node keys in FOLDER",
        description="Create FOLDER with ca/ (keep offline), coordinator/ (mmbind-server "
        "--certs), nodes/NAME/ (mmbind-client --certs on node NAME) and operator/ "
        "(mmbind run|nodes --certs). Every file is private (0600).",
    )
    init.add_argument("folder", help="a new (or empty) folder")
    init.add_argument(
        "--host",
        required=True,
        help="the coordinator's DNS names and IP addresses, comma separated "
        "(its certificate's subject-alternative names), e.g. coord.example,127.0.0.1",
    )
    init.add_argument("--nodes", default="", help="node names to make keys for, e.g. A,B,C,test")
    init.add_argument(
        "--redis",
        action="store_true",
        help="also make a Redis password: coordinator/redis.password (for "
        "MMBIND_REDIS_PASSWORD_FILE) and redis/redis.conf (requirepass, for redis-server)",
    )
    init.set_defaults(func=cmd_certs_init)
    add = certs_sub.add_parser("add-node", help="make one more node's keys in FOLDER")
    add.add_argument("folder", help="a folder made by `mmbind certs init`")
    add.add_argument("name", help="the node's name")
    add.set_defaults(func=cmd_certs_add_node)

    nodes = sub.add_parser("nodes", help="register, list or revoke the nodes a coordinator admits")
    nodes_sub = nodes.add_subparsers(dest="action", required=True)
    for name, text in (
        ("register", "admit a node's public key (its nodes/NAME/auth.pub)"),
        ("list", "list the registered nodes"),
        ("revoke", "unregister a node: its key is refused from now on"),
    ):
        p = nodes_sub.add_parser(name, help=text)
        p.add_argument("--superlink", required=True, help="HOST:PORT of mmbind-server")
        p.add_argument(
            "--certs", default="", help="the operator/ folder of `mmbind certs init` "
            "(default: MMBIND_CERTS_DIR)"
        )  # fmt: skip
        if name == "register":
            p.add_argument("public_key", help="the node's OpenSSH public key file (auth.pub)")
            p.add_argument("--name", default="", help="a name for Flower's records")
            p.add_argument(
                "--exist-ok",
                action="store_true",
                help="a key the SuperLink holds already is not an error (nothing about that "
                "node changes); for scripts that register on every start",
            )
        if name == "revoke":
            p.add_argument("node", help="the node's id (printed by register; mmbind nodes list)")
        p.set_defaults(func=cmd_nodes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmbind", description="Federated MMBind: bind heterogeneous multimodal IoT data."
    )
    parser.add_argument("--version", action="version", version=f"mmbind {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default), ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser(
        "simulate",
        help="run the whole pipeline and its baselines on Flower's simulation engine",
        description="Run MMBind, the lower bound and the upper bound on a simulated federation "
        "(the paper's roles: A acc+skeleton, B acc+gyro, C skeleton+gyro labelled, "
        "test skeleton+gyro) and write OUTPUT/results.json.",
    )
    sim.add_argument("--dataset", default="synthetic", help=_DATASET_HELP)
    sim.add_argument(
        "--data-dir", default="", help="UTD-MHAD folder holding Inertial/ and Skeleton/"
    )
    sim.add_argument("--output", default="", help="output folder (default ./mmbind-output)")
    sim.add_argument(
        "--overwrite", action="store_true", help="replace a results.json already in OUTPUT"
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--split", type=int, default=0, help="subject assignment (0 = DESIGN.md's)")
    sim.add_argument("--nodes-per-role", type=int, default=1)
    sim.add_argument(
        "--layout",
        default="",
        metavar="FILE",
        help="node layout (TOML: nodes with modalities, subjects, labelled/test, and the "
        "shared modality), or 'paper' for the shipped paper layout; replaces the roles and "
        "--split (docs/dataset-format.md)",
    )
    sim.add_argument(
        "--methods",
        default="",
        help="comma list of lower_bound,unimodal,mim,mpm,mmbind,mmbind_label,upper_bound "
        "(default: mmbind,lower_bound,upper_bound)",
    )
    sim.add_argument("--binding", choices=["modality", "label"], default="")
    sim.add_argument(
        "-c",
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="any run-config value, e.g. -c align-rounds=6 (repeatable)",
    )
    sim.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    sim.set_defaults(func=cmd_simulate)

    exp = sub.add_parser(
        "experiment",
        help="run a resumable grid of simulations and write results.json and report.md",
        description="Run methods x label budgets x subject splits x seeds x nodes per role on "
        "the simulation engine. Each finished cell is kept in OUTPUT/cells/<key>.json; "
        "repeating the command runs only the missing cells (a cell recorded with another "
        "recipe is an error unless --fresh). Writes OUTPUT/results.json (mean and sample std "
        "over seeds x splits) and OUTPUT/report.md with PNG figures; both are the grid's "
        "aggregate and are rewritten, from every recorded cell, by each invocation.",
    )
    exp.add_argument("--dataset", default="synthetic", help=_DATASET_HELP)
    exp.add_argument(
        "--data-dir", default="", help="UTD-MHAD folder holding Inertial/ and Skeleton/"
    )
    exp.add_argument(
        "--output",
        required=True,
        help="experiment folder (resumable: its results.json and report.md are rewritten "
        "from all recorded cells each time)",
    )
    exp.add_argument(
        "--methods",
        default="",
        help="comma list (default: every method of this install), e.g. "
        "lower_bound,unimodal,mim,mpm,mmbind,mmbind_label,mmbind_centralised,upper_bound",
    )
    exp.add_argument(
        "--label-budgets",
        default="216,162,108,54",
        help="comma list of labelled samples per labelled node; the first is the headline "
        "(216 = all of C's samples on UTD-MHAD)",
    )
    exp.add_argument(
        "--protocol",
        choices=["paper", "dev-loso"],
        default="paper",
        help="subject layout: the paper's 2/2/2/2 roles rotated by --splits (<= 4), or "
        "dev-loso: leave one of subjects 1-6 out per split (<= 6; subjects 7, 8 never "
        "loaded) to choose recipes on",
    )
    exp.add_argument(
        "--splits", type=int, default=1, help="subject splits 0..K-1 (paper: K <= 4, dev-loso: 6)"
    )
    exp.add_argument(
        "--compare",
        default="",
        metavar="DIR",
        help="another experiment folder (e.g. the default recipe on the same grid): report "
        "each method's paired differences on the cells both ran",
    )
    exp.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    exp.add_argument(
        "--layout",
        default="",
        metavar="FILE",
        help="node layout for every cell (TOML, or 'paper'), instead of the protocol's roles "
        "and splits (--splits 1); a comma list runs the grid once per layout, in "
        "OUTPUT/<layout file name>",
    )
    exp.add_argument(
        "--nodes-per-role", default="1", help="comma list, e.g. 1,2,4 (the first is the headline)"
    )
    exp.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs for the simulation engine (0 = all)"
    )
    exp.add_argument(
        "--fresh", action="store_true", help="run every cell again, overwriting recorded ones"
    )
    exp.add_argument(
        "-c",
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="a run-config value for every cell, e.g. -c align-rounds=6 (repeatable)",
    )
    exp.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    exp.set_defaults(func=cmd_experiment)

    run = sub.add_parser(
        "run",
        help="submit the pipeline to a running mmbind-server and collect results.json",
        description="Run the pipeline on a deployment (mmbind-server + mmbind-client nodes) "
        "and write OUTPUT/results.json with engine 'deployment'.",
    )
    run.add_argument("--superlink", required=True, help="HOST:PORT of mmbind-server's SuperLink")
    run.add_argument(
        "--binding-service", default="", help="HOST:PORT of its BindingService (default PORT+1)"
    )
    run.add_argument(
        "--certs",
        default="",
        help="the operator/ folder of `mmbind certs init` (TLS and the operator's token; "
        "default MMBIND_CERTS_DIR; needed unless the coordinator is on this machine)",
    )
    run.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, no token: only for a coordinator started with --insecure",
    )
    run.add_argument("--output", default="", help="output folder (default ./mmbind-output)")
    run.add_argument(
        "--overwrite", action="store_true", help="replace a results.json already in OUTPUT"
    )
    run.add_argument(
        "--resume", default="", metavar="RUN_ID", help="continue a run from its checkpoint"
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--min-nodes", type=int, default=1, help="nodes to wait for before starting")
    run.add_argument(
        "--attempt-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up (exit 6, printing the resume command) when the run's ServerApp sends no "
        "heartbeat for this long, e.g. after a coordinator restart (default 60)",
    )
    run.add_argument(
        "--methods",
        default="",
        help="comma list of lower_bound,unimodal,mim,mpm,mmbind,mmbind_label,upper_bound "
        "(default: mmbind,lower_bound,upper_bound)",
    )
    run.add_argument("--binding", choices=["modality", "label"], default="")
    run.add_argument("-c", "--config", action="append", metavar="KEY=VALUE")
    run.add_argument("-q", "--quiet", action="store_true")
    run.set_defaults(func=cmd_run)
    _add_data_parser(sub)
    _add_security_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = MMBindSettings.load()
        _setup_logging(args.log_level or settings.log_level)
        code: int = args.func(args, settings)
        return code
    except MMBindError as exc:
        print(f"mmbind: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mmbind: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
