"""Recipe bench: the real federated workflow, run in one process on a chosen subject layout.

``mmbind simulate`` spreads the nodes over Flower's simulation engine (Ray workers, a fresh
message round trip per phase step). To iterate on the training recipe quickly this bench runs
*the same code*: the coordinator's :class:`~mmbind.server.workflow.Workflow` and the node's
ClientApp handlers (:func:`~mmbind.client.app.make_client_app`, hence the same
:class:`~mmbind.client.node.LocalNode` steps), connected by an in-process grid that hands each
message straight to the ClientApp. Only the transport differs; phases, FedAvg, binding, partner
features, weights, fine-tuning and evaluation are the pipeline's own.

Protocols (the subject layouts; never tune on a split's test subjects)::

    dev     A = {1, 2}, B = {3, 4}, C = {5} (labelled), test = {6}
    dev2    A = {3, 4}, B = {5, 6}, C = {1} (labelled), test = {2}
    split0  A = {1, 2}, B = {3, 4}, C = {5, 6},           test = {7, 8}   (report only, once)

``dev`` and ``dev2`` use subjects 1-6 only: the split-0 test subjects 7 and 8 are never loaded.
C holds one subject (about 108 labelled samples) instead of two.

Usage::

    python bench/recipe.py --protocol dev --set align_rounds=2 --set align_epochs=10
    python bench/recipe.py --protocol dev2 --methods mmbind,lower_bound --json out.json

Each ``--set key=value`` overrides one :class:`~mmbind.run_config.RunConfig` field.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

PROTOCOLS: dict[str, dict[str, tuple[int, ...]]] = {
    "dev": {"A": (1, 2), "B": (3, 4), "C": (5,), "test": (6,)},
    "dev2": {"A": (3, 4), "B": (5, 6), "C": (1,), "test": (2,)},
    "dev3": {"A": (5, 6), "B": (1, 2), "C": (3,), "test": (4,)},
    "split0": {"A": (1, 2), "B": (3, 4), "C": (5, 6), "test": (7, 8)},
}


def _loso(fold: int) -> dict[str, tuple[int, ...]]:
    """The package's dev-loso fold (``mmbind experiment --protocol dev-loso``), by role."""
    from mmbind.client.data.partition import plan_protocol

    plans = plan_protocol("dev-loso", range(1, 9), split=fold)
    return {p.role.name: p.subjects for p in plans}


PROTOCOLS.update({f"loso{t}": _loso(t - 1) for t in range(1, 7)})
DATA_DIR = "/work/shared/data/utd_mhad"


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    return text


def build_nodes(protocol: str, config: Any) -> list[Any]:
    """LocalNodes of a protocol's four roles, as ``local_data._simulated_node`` builds them."""
    from mmbind.client.data.partition import PAPER_ROLES, NodePlan, node_dataset
    from mmbind.client.data.utd_mhad import load_utd_mhad
    from mmbind.client.local_data import ALL_MODALITIES
    from mmbind.client.node import LocalNode

    layout = PROTOCOLS[protocol]
    subjects = sorted({s for subs in layout.values() for s in subs})
    full = load_utd_mhad(Path(config.data_dir), subjects=subjects, modalities=ALL_MODALITIES)
    nodes = []
    for i, role in enumerate(PAPER_ROLES):
        plan = NodePlan(i, role, tuple(layout[role.name]))
        own = node_dataset(plan, full)
        oracle = node_dataset(replace(plan, role=replace(role, modalities=ALL_MODALITIES)), full)
        nodes.append(
            LocalNode(
                role.name, own, config, labelled=role.labelled, trains=role.trains, oracle=oracle
            )
        )
    return nodes


class InProcessGrid:
    """The subset of Flower's ``Grid`` the workflow uses, delivering to an in-process ClientApp."""

    def __init__(self, client_app: Any, run_config: dict[str, Any], num_nodes: int) -> None:
        from flwr.app import Context, RecordDict

        self.client_app = client_app
        self.contexts = {
            nid: Context(
                run_id=1,
                node_id=nid,
                node_config={"partition-id": nid - 1, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config=run_config,
            )
            for nid in range(1, num_nodes + 1)
        }
        self.seconds: dict[str, float] = {}
        self._count = 0
        self._replies: dict[str, Any] = {}

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Any]) -> Iterator[str]:
        """Deliver each message now; its reply waits for :meth:`pull_messages`."""
        ids = []
        for msg in messages:
            # The SuperLink gives every message an id; replies point back to it.
            self._count += 1
            msg.metadata.__dict__["_message_id"] = f"bench-{self._count}"
            start = time.perf_counter()
            reply = self.client_app(msg, self.contexts[msg.metadata.dst_node_id])
            kind = msg.metadata.message_type
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - start
            self._replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return iter(ids)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterator[Any]:
        return iter([self._replies.pop(i) for i in list(message_ids) if i in self._replies])


def run(
    protocol: str, overrides: dict[str, Any], ft_variants: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Run the workflow on ``protocol``; return methods, binding report, phases and timings.

    ``ft_variants``: extra fine-tuning configurations (RunConfig overrides). Each one fine-tunes
    and evaluates a copy of the model the method reached before fine-tuning, reported as
    ``<method>@<i>``; the main run then goes on with the run's own configuration.
    """
    from flwr.supercore.task_identity import TaskIdentity

    import mmbind.client.app as client_app_module
    from mmbind.client.app import make_client_app
    from mmbind.run_config import RunConfig
    from mmbind.server.store import InMemoryBindingStore
    from mmbind.server.workflow import Workflow

    torch.set_num_threads(1)
    values = {"dataset": "utd-mhad", "data_dir": DATA_DIR, "min_nodes": 4, **overrides}
    config = RunConfig.from_mapping(values)
    nodes = build_nodes(protocol, config)

    variant: dict[str, Any] = {}

    def node_from_context(cfg: Any, node_config: Any) -> Any:
        node = nodes[int(node_config["partition-id"])]
        node.config = cfg.model_copy(update=variant) if variant else cfg
        return node

    client_app_module.node_from_context = node_from_context  # type: ignore[assignment]
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 0
    run_config = config.to_flower()
    grid = InProcessGrid(make_client_app(run_config), run_config, len(nodes))
    start = time.perf_counter()
    workflow = Workflow(grid, config, InMemoryBindingStore(), run_id="bench")  # type: ignore[arg-type]
    extra: dict[str, dict[str, float]] = {}
    if ft_variants:
        base_finetune = workflow.finetune
        base_evaluate = workflow.evaluate

        def finetune(models: Any, tracks: Any) -> Any:
            for i, upd in enumerate(ft_variants):
                twins = copy.deepcopy(models)
                variant.clear()
                variant.update(upd)
                workflow.config = config.model_copy(update=upd)
                try:
                    base_finetune(twins, tracks)
                    scores = base_evaluate(twins, tracks)
                finally:
                    variant.clear()
                    workflow.config = config
                for name, metrics in scores.items():
                    extra[f"{name}@{i}"] = {k: float(v) for k, v in metrics.items()}
            return base_finetune(models, tracks)

        workflow.finetune = finetune  # type: ignore[method-assign]
    result = workflow.run()
    result.methods.update(extra)
    return {
        "protocol": protocol,
        "overrides": overrides,
        "methods": {
            k: {kk: round(float(vv), 4) for kk, vv in v.items()} for k, v in result.methods.items()
        },
        "binding": {
            k: round(float(v), 4) for k, v in result.binding.items() if isinstance(v, int | float)
        },
        "phases": {k: round(v, 2) for k, v in result.phases.items()},
        "messages": {k: round(v, 2) for k, v in grid.seconds.items()},
        "history": {k: [round(x, 4) for x in v] for k, v in result.history.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="dev")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--methods", default="mmbind,lower_bound,upper_bound")
    parser.add_argument(
        "--patch",
        action="append",
        default=[],
        metavar="MODULE.ATTR=VALUE",
        help="set a module-level default, e.g. mmbind.binding.encoders.DEFAULT_ARCH=conv",
    )
    parser.add_argument(
        "--ft",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="an extra fine-tuning variant evaluated from the same pre-fine-tuning model",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="")
    parser.add_argument("--json", default="", help="append the result as one JSON line here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    overrides: dict[str, Any] = {"methods": args.methods, "seed": args.seed}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip().replace("-", "_")] = _parse_value(value.strip())
    for item in args.patch:
        target, _, value = item.partition("=")
        module_name, _, attr = target.strip().rpartition(".")
        module = importlib.import_module(module_name)
        if not hasattr(module, attr):
            parser.error(f"{module_name} has no attribute {attr}")
        setattr(module, attr, _parse_value(value.strip()))
    variants = [
        {
            kv.partition("=")[0].strip().replace("-", "_"): _parse_value(kv.partition("=")[2])
            for kv in item.split(",")
            if kv.strip()
        }
        for item in args.ft
    ]
    out = run(args.protocol, overrides, variants)
    out["ft_variants"] = variants
    out["patches"] = args.patch
    out["tag"] = args.tag
    m = out["methods"]
    line = " ".join(f"{k}={v['accuracy']:.3f}/{v['macro_f1']:.3f}" for k, v in m.items())
    pair = out["binding"].get("pairing_accuracy")
    print(
        f"[{args.protocol} s{args.seed} {args.tag}] {line} pair={pair} "
        f"sim={out['binding'].get('mean_similarity')} {out['seconds']}s",
        flush=True,
    )
    if args.json:
        import fcntl

        with open(args.json, "a") as fh:  # several runs may append at once
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps(out) + "\n")
    else:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
