"""Run one recipe over the leave-one-subject-out dev protocol and compare it with another.

Each of subjects 1-6 is the test subject in turn (``bench/recipe.py`` protocols ``loso1`` ..
``loso6``; subjects 7 and 8 are never loaded), for every seed asked; runs go to a JSON-lines
file, tagged. ``--compare TAG`` prints, per method, the mean and std of both tags over the runs
they share and the paired differences (mean, and how many runs the new tag wins / loses / ties).

Usage::

    python bench/dev_protocol.py --tag base --seeds 3 --jobs 2 --json bench/dev.jsonl
    python bench/dev_protocol.py --tag axisnorm --set normalization=axis --seeds 3 \\
        --json bench/dev.jsonl --compare base
    python bench/dev_protocol.py --summary --json bench/dev.jsonl --tag axisnorm --compare base
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FOLDS = tuple(f"loso{t}" for t in range(1, 7))


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def runs_of(rows: list[dict[str, Any]], tag: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The latest run of ``tag`` per (protocol, seed)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        if row.get("tag") == tag:
            out[(row["protocol"], int(row["overrides"]["seed"]))] = row
    return out


def summary(rows: list[dict[str, Any]], tag: str, compare: str | None) -> str:
    new = runs_of(rows, tag)
    old = runs_of(rows, compare) if compare else {}
    lines = []
    methods = sorted({m for r in new.values() for m in r["methods"]})
    for metric in ("accuracy", "macro_f1"):
        for m in methods:
            a = [r["methods"][m][metric] for r in new.values() if m in r["methods"]]
            if not a:
                continue
            mean, std = statistics.mean(a), _std(a)
            text = f"{tag:>14} {m:<16} {metric:<9} {mean:.4f} ± {std:.4f} (n={len(a)})"
            if compare:
                keys = [
                    k for k in new if k in old and m in new[k]["methods"] and m in old[k]["methods"]
                ]
                if keys:
                    d = [new[k]["methods"][m][metric] - old[k]["methods"][m][metric] for k in keys]
                    b = [old[k]["methods"][m][metric] for k in keys]
                    wins = sum(x > 0 for x in d)
                    losses = sum(x < 0 for x in d)
                    text += (
                        f" | {compare}: {statistics.mean(b):.4f} ± {_std(b):.4f} · paired diff "
                        f"{statistics.mean(d):+.4f} ± {_std(d):.4f} · "
                        f"+{wins}/-{losses}/={len(d) - wins - losses}"
                    )
            lines.append(text)
    pair = [
        r["binding"].get("pairing_accuracy")
        for r in new.values()
        if r["binding"].get("pairing_accuracy")
    ]
    if pair:
        lines.append(f"{tag:>14} pairing accuracy {statistics.mean(pair):.4f} ± {_std(pair):.4f}")
    secs = [r["seconds"] for r in new.values()]
    if secs:
        lines.append(f"{tag:>14} seconds per run {statistics.mean(secs):.1f} (sum {sum(secs):.0f})")
    return "\n".join(lines)


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", default=",".join(FOLDS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", required=True)
    parser.add_argument("--compare", default=None)
    parser.add_argument("--summary", action="store_true", help="only print the summary")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--patch", action="append", default=[])
    parser.add_argument("--methods", default="mmbind,lower_bound,upper_bound")
    args, extra = parser.parse_known_args(argv)
    path = Path(args.json)
    if not args.summary:
        done = runs_of(load(path), args.tag)
        todo = [
            (fold, seed)
            for seed in range(args.seeds)
            for fold in args.folds.split(",")
            if (fold, seed) not in done
        ]

        def one(item: tuple[str, int]) -> None:
            fold, seed = item
            cmd = [
                sys.executable, str(HERE / "recipe.py"), "--protocol", fold, "--seed", str(seed),
                "--tag", args.tag, "--json", str(path), "--methods", args.methods,
                *[x for s in args.set for x in ("--set", s)],
                *[x for s in args.patch for x in ("--patch", s)],
                *extra,
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            tail = (proc.stdout.strip().splitlines() or [""])[-1]
            if proc.returncode:
                print(f"FAILED {fold} s{seed}: {proc.stderr.strip()[-2000:]}", flush=True)
            else:
                print(tail, flush=True)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, todo))
    print(summary(load(path), args.tag, args.compare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
