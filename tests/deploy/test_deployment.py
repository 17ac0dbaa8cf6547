"""The deployment topology as real processes on loopback.

Redis, ``mmbind-server`` (Flower SuperLink + BindingService), four
``mmbind-client`` nodes (three modality subsets plus a held-out test node) and
``mmbind run``: a full run; a run that loses a node mid-phase; and a run whose
coordinator crashes and is resumed from its checkpoint in Redis while a node is
still away.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from deploy_harness import NODES, TINY, Deployment, alive, run_id_of

from mmbind.client.data.normalization import ChannelMoments, merge_normalization, normalize
from mmbind.client.data.synthetic import make_synthetic
from mmbind.server.redis_store import RedisBindingStore

pytestmark = pytest.mark.integration

WINDOW_SHAPES = {(120, 3), (40, 60)}


def finish(proc, timeout: float = 1200) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """Wait for an ``mmbind run`` to exit; one still running after ``timeout`` s fails the test."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"mmbind run still running after {timeout:.0f} s: {err[-3000:]}"
        ) from None
    return proc.returncode, out, err


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def window_probes() -> list[bytes]:
    """32-byte slices of every node's windows, raw and normalised as the nodes do it (under
    every normalisation scheme, the default ``axis`` included)."""
    data = make_synthetic(trials=TINY["synthetic-trials"], seed=0)
    probes: list[bytes] = []
    train: dict[str, list[ChannelMoments]] = {m: [] for m in ("acc", "gyro", "skeleton")}
    for _name, modalities, subjects, extra in NODES:
        part = data.for_subjects(int(s) for s in subjects.split(","))
        for m in modalities.split(","):
            if "--test" not in extra:
                train[m].append(ChannelMoments.from_windows(part.windows[m]))
    schemes = [merge_normalization(train, s) for s in ("channel", "axis", "modality")]
    for m, w in data.windows.items():
        for windows in (w, *(normalize(w, *stats[m]) for stats in schemes)):
            for window in windows:
                flat = np.ascontiguousarray(window, dtype=np.float32).ravel()
                mid = flat.size // 2
                probes.append(flat[mid : mid + 8].tobytes())
    return probes


def test_full_run_and_nothing_raw_on_the_wire(
    insecure_deployment: Deployment, tmp_path: Path
) -> None:
    """Plaintext on purpose: what crossed the network can be read and checked (with TLS,
    the secure default, the same bytes are ciphertext; see test_security.py)."""
    # Prepare
    deployment = insecure_deployment
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


def test_frozen_node_is_retried_and_a_dead_one_dropped(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Node A freezes in pretraining until the SuperLink declares it unavailable (no
    heartbeat for 2 x 30 s), then thaws: it is sent its message again, not dropped.
    Node B dies in the align phase: it is dropped once the grace period is over."""
    # Prepare
    deployment.start_server()
    deployment.start_nodes()
    out = tmp_path / "out"
    store = RedisBindingStore(deployment.redis_url)
    proc = deployment.run("--methods", "mmbind", "-c", "node-grace-seconds=30", output=out)
    run_id = run_id_of(proc)

    def seen(kind: str, **match: object) -> bool:
        return any(
            e.kind == kind and all(e.data.get(k) == v for k, v in match.items())
            for e in store.events(run_id)
        )

    wait_for(lambda: seen("progress", label="pretrain"), 600, "the pretrain phase")
    # Execute: A freezes until it is declared unavailable, then thaws
    deployment.pause_node("A")
    wait_for(lambda: seen("unavailable", role="A"), 150, "node A declared unavailable")
    deployment.continue_node("A")
    # ... and node B crashes in the middle of phase 5 (its partner features are in)
    wait_for(lambda: seen("progress", label="align"), 600, "the align phase")
    deployment.nodes["B"].kill()
    code, _, stderr = finish(proc)
    # Assert: A retried; B dropped after the grace period, in the phase of its message
    assert code == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [d["role"] for d in results["dropouts"]] == ["B"]
    dropout = results["dropouts"][0]
    assert (dropout["phase"], dropout["message"]) == ("align", "train.align")
    assert "Not back within 30 s (node-grace-seconds)" in dropout["reason"]
    assert 0.0 <= results["methods"]["mmbind"]["accuracy"] <= 1.0
    assert "node A is unavailable in pretrain" in stderr
    assert "node B is unavailable in align" in stderr and "node B dropped out" in stderr
    assert {n["role"] for n in results["nodes"]} == {"A", "B", "C", "test"}


def test_coordinator_restart_resumes_from_checkpoint(
    deployment: Deployment, tmp_path: Path
) -> None:
    """mmbind-server is SIGKILLed just after the binding checkpoint, with node A frozen.

    The coordinator is back 9 s later and the run is resumed at once, while A is still
    away: the resumed run waits for A (registered before the crash, not reconnected),
    the first ``mmbind run`` gives up on its dead attempt with the resume command, the
    dead coordinator leaves no process behind, and results.json accounts for both
    attempts.
    """
    # Prepare
    deployment.start_server()
    deployment.start_nodes()
    store = RedisBindingStore(deployment.redis_url)
    first = deployment.run(
        "--methods", "mmbind", "-c", "wait-seconds=300", "--attempt-timeout", "60",
        output=tmp_path / "first",
    )  # fmt: skip
    run_id = run_id_of(first)

    def bound() -> bool:
        cp = store.checkpoint(run_id)
        return cp is not None and cp["step"] == "binding"

    wait_for(bound, 600, "the binding checkpoint")
    # Execute: A freezes (no heartbeats); 0.5 s later mmbind-server alone gets SIGKILL
    deployment.pause_node("A")
    paused = time.monotonic()
    time.sleep(0.5)
    family = deployment.kill_server_alone()
    killed = time.monotonic()
    wait_for(
        lambda: not any(alive(pid) for pid in family), 30, f"the coordinator's orphans {family}"
    )
    time.sleep(max(0.0, killed + 9 - time.monotonic()))
    deployment.start_server()
    second = deployment.run("--resume", run_id, output=tmp_path / "second")
    code, _, first_err = finish(first, timeout=60 + 150)
    time.sleep(max(0.0, paused + 65 - time.monotonic()))  # A's last heartbeat has lapsed
    deployment.continue_node("A")
    code_second, _, stderr = finish(second)
    # Assert: nothing the coordinator started outlived it (a run was in flight)
    assert any("flwr-serverapp" in argv for argv in family.values()), family
    assert any("superlink" in argv for argv in family.values()), family
    # The first mmbind run noticed its attempt was gone and names the resume command
    assert code != 0, first_err[-3000:]
    assert "gave no sign of life" in first_err, first_err[-3000:]
    assert f"mmbind run --superlink {deployment.superlink} --resume {run_id}" in first_err
    # The resumed run waited for A and finished after binding, no phase run twice
    assert code_second == 0, stderr[-3000:]
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert results["resumed_from"] == "binding"
    assert results["run_id"] == run_id
    assert "mmbind" in results["methods"]
    assert results["dropouts"] == []
    progress = [e.data for e in store.events(run_id) if e.kind == "progress"]
    starts = [(p["label"], p["step"]) for p in progress if p["step"] == 0]
    assert starts.count(("pretrain", 0)) == 1
    assert starts.count(("binding", 0)) == 1
    assert starts.count(("align", 0)) == 1
    # results.json: every attempt listed; phases and total sum the attempts' own seconds
    attempts = results["attempts"]
    assert [a["last_step"] for a in attempts] == ["binding", "evaluate"]
    assert [a["resumed_from"] for a in attempts] == ["", "binding"]
    assert "pretrain" in attempts[0]["phases"] and "pretrain" not in attempts[1]["phases"]
    phases = results["phases"]
    total = sum(a["seconds"] for a in attempts)
    assert abs(phases["total"]["seconds"] - total) < 0.01
    for name, value in phases.items():
        if name != "total":
            own = sum(a["phases"].get(name, {}).get("seconds", 0.0) for a in attempts)
            assert abs(value["seconds"] - own) < 0.01, name
    assert phases["pretrain"]["seconds"] < phases["total"]["seconds"] <= results["wall_seconds"]
