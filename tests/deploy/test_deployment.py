"""The deployment topology as real processes on loopback.

Redis, ``mmbind-server`` (Flower SuperLink + BindingService), four
``mmbind-client`` nodes (three modality subsets plus a held-out test node) and
``mmbind run``: a full run; a run that loses a node mid-phase; and a run whose
coordinator crashes and is resumed from its checkpoint in Redis.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from deploy_harness import NODES, TINY, Deployment, run_id_of

from mmbind.client.data.normalization import ChannelMoments, normalize
from mmbind.client.data.synthetic import make_synthetic
from mmbind.server.redis_store import RedisBindingStore

pytestmark = pytest.mark.integration

WINDOW_SHAPES = {(120, 3), (40, 60)}


def finish(proc, timeout: float = 600) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def window_probes() -> list[bytes]:
    """32-byte slices of every node's windows, raw and normalised as the nodes do it."""
    data = make_synthetic(trials=TINY["synthetic-trials"], seed=0)
    probes: list[bytes] = []
    train = {m: [] for m in ("acc", "gyro", "skeleton")}
    for _name, modalities, subjects, extra in NODES:
        part = data.for_subjects(int(s) for s in subjects.split(","))
        for m in modalities.split(","):
            if "--test" not in extra:
                train[m].append(ChannelMoments.from_windows(part.windows[m]))
    stats = {m: ChannelMoments.sum(parts) for m, parts in train.items()}
    for m, w in data.windows.items():
        mean, std = stats[m].mean.astype(np.float32), stats[m].std.astype(np.float32)
        for windows in (w, normalize(w, mean, std)):
            for window in windows:
                flat = np.ascontiguousarray(window, dtype=np.float32).ravel()
                mid = flat.size // 2
                probes.append(flat[mid : mid + 8].tobytes())
    return probes


def test_full_run_and_nothing_raw_on_the_wire(deployment: Deployment, tmp_path: Path) -> None:
    # Prepare
    deployment.start_server()
    deployment.start_nodes(relay=True)
    out = tmp_path / "out"
    # Execute
    proc = deployment.run("--methods", "mmbind,lower_bound", output=out)
    run_id = run_id_of(proc)
    code, stdout, stderr = finish(proc)
    # Assert: results.json as from simulate, with engine "deployment"
    assert code == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["engine"] == "deployment"
    assert set(results["methods"]) == {"mmbind", "lower_bound"}
    assert results["binding"]["pairs"] > 0
    assert results["dropouts"] == []
    assert set(results["traffic"]) == {"A", "B", "C", "test"}
    assert all(t["sent"] > 0 and t["received"] > 0 for t in results["traffic"].values())
    for phase in ("manifest", "pretrain", "binding", "partner_features", "align", "finetune"):
        assert results["phases"][phase]["seconds"] > 0
    assert "MMBind" in stdout
    # What nodes sent, per the coordinator's audit: no array shaped like a window.
    events = RedisBindingStore(deployment.redis_url).events(run_id)
    wire = [e.data for e in events if e.kind == "wire"]
    assert wire
    for entry in wire:
        for array in entry["arrays"]:
            assert tuple(array["shape"][-2:]) not in WINDOW_SHAPES, entry
    # What crossed the network, byte for byte: no slice of any window, raw or normalised.
    assert deployment.relay is not None
    captured = bytes(deployment.relay.captured)
    assert len(captured) > 1_000_000  # models and embeddings did cross
    assert b"acc,skeleton" in captured  # and the capture sees message contents
    leaks = [p for p in window_probes() if p in captured]
    assert leaks == []


def test_node_dying_mid_phase_is_recorded_and_the_run_finishes(
    deployment: Deployment, tmp_path: Path
) -> None:
    # Prepare
    deployment.start_server()
    deployment.start_nodes()
    out = tmp_path / "out"
    store = RedisBindingStore(deployment.redis_url)
    proc = deployment.run("--methods", "mmbind", output=out)
    run_id = run_id_of(proc)

    def aligning() -> bool:
        return any(
            e.kind == "progress" and str(e.data["label"]).endswith("align")
            for e in store.events(run_id)
        )

    wait_for(aligning, 300, "the align phase")
    # Execute: node B crashes in the middle of phase 5
    deployment.nodes["B"].kill()
    code, _, stderr = finish(proc)
    # Assert
    assert code == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [d["role"] for d in results["dropouts"]] == ["B"]
    assert results["dropouts"][0]["phase"] in {"align", "partner_features"}
    assert 0.0 <= results["methods"]["mmbind"]["accuracy"] <= 1.0
    assert "dropped out" in stderr


def test_coordinator_restart_resumes_from_checkpoint(
    deployment: Deployment, tmp_path: Path
) -> None:
    # Prepare
    deployment.start_server()
    deployment.start_nodes()
    store = RedisBindingStore(deployment.redis_url)
    first = deployment.run("--methods", "mmbind", output=tmp_path / "first")
    run_id = run_id_of(first)

    def bound() -> bool:
        cp = store.checkpoint(run_id)
        return cp is not None and cp["step"] == "binding"

    wait_for(bound, 300, "the binding checkpoint")
    # Execute: the coordinator crashes, comes back, and the run is resumed
    deployment.stop_server(crash=True)
    code, _, stderr = finish(first, timeout=120)
    assert code != 0 and f"--resume {run_id}" in stderr
    deployment.start_server()
    second = deployment.run("--resume", run_id, output=tmp_path / "second")
    code, _, stderr = finish(second)
    # Assert: finished, resumed after binding, and no phase ran twice
    assert code == 0, stderr[-3000:]
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert results["resumed_from"] == "binding"
    assert results["run_id"] == run_id
    assert "mmbind" in results["methods"]
    progress = [e.data for e in store.events(run_id) if e.kind == "progress"]
    starts = [(p["label"], p["step"]) for p in progress if p["step"] == 0]
    assert starts.count(("pretrain", 0)) == 1
    assert starts.count(("binding", 0)) == 1
    assert starts.count(("align", 0)) == 1
