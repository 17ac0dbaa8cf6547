"""The binding benchmark runs end to end in --quick mode and writes its JSON and table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_bench_quick(tmp_path: Path) -> None:
    out, md = tmp_path / "bench.json", tmp_path / "PERF.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "binding.py"),
            "--quick",
            "--json",
            str(out),
            "--markdown",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    methods = {r["method"] for r in data["rows"]}
    assert {"exact-both", "exact", "exact-fp16", "faiss-flat", "matmul-peak", "ann-hnsw"} <= methods
    for r in data["rows"]:
        if r["method"].startswith("ann"):
            assert r["recall_at_1"] is not None and 0.0 <= r["recall_at_1"] <= 1.0
        elif r["method"] == "exact-fp16":
            assert r["extra"]["max_sim_error"] < 2.0**-10
    assert "| method |" in md.read_text()
