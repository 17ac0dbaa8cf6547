"""The ServerApp's watchdog: heartbeats, fencing and the death of its parent process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mmbind.server import liveness
from mmbind.server.liveness import EXIT_FENCED, HEARTBEAT_EVENT, AttemptWatchdog
from mmbind.server.store import END_EVENT, InMemoryBindingStore
from mmbind.server.workflow.checkpoint import OWNER_BLOB

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def kinds(store: InMemoryBindingStore, run_id: str) -> list[str]:
    return [e.kind for e in store.events(run_id)]


def test_heartbeats_name_the_attempt() -> None:
    # Prepare
    store = InMemoryBindingStore()
    watchdog = AttemptWatchdog(store, "r", "a1", interval=0.02)
    # Execute
    with watchdog:
        wait_for(lambda: kinds(store, "r").count(HEARTBEAT_EVENT) >= 3, 10, "heartbeats")
    # Assert
    beats = [e.data for e in store.events("r")]
    assert {b["kind"] for b in beats} == {HEARTBEAT_EVENT}
    assert {b["attempt"] for b in beats} == {"a1"}


def test_a_fenced_off_attempt_is_interrupted_then_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: attempt a1 owns the run
    monkeypatch.setattr(liveness, "FENCED_EXIT_SECONDS", 0.05)
    store = InMemoryBindingStore()
    store.put_blob("r", OWNER_BLOB, b"a1")
    interrupted = threading.Event()
    exits: list[int] = []
    watchdog = AttemptWatchdog(
        store, "r", "a1", interval=0.02, exit_process=exits.append, interrupt=interrupted.set
    )
    with watchdog:
        wait_for(lambda: HEARTBEAT_EVENT in kinds(store, "r"), 10, "a heartbeat")
        assert not interrupted.is_set()
        # Execute: attempt a2 takes the run over
        store.put_blob("r", OWNER_BLOB, b"a2")
        wait_for(lambda: exits == [EXIT_FENCED], 10, "the hard exit")
    # Assert: asked to stop, told the runner why, then ended
    assert interrupted.is_set()
    events = [e.data for e in store.events("r") if e.kind != HEARTBEAT_EVENT]
    assert [e["kind"] for e in events] == ["error", END_EVENT]
    assert "taken over by attempt a2" in events[0]["message"]
    assert {e["attempt"] for e in events} == {"a1"}


def test_an_attempt_that_has_not_claimed_the_run_yet_is_not_fenced() -> None:
    store = InMemoryBindingStore()
    store.put_blob("r", OWNER_BLOB, b"earlier")  # a resumed run, before the workflow claims it
    exits: list[int] = []
    with AttemptWatchdog(store, "r", "a1", interval=0.02, exit_process=exits.append):
        wait_for(lambda: kinds(store, "r").count(HEARTBEAT_EVENT) >= 3, 10, "heartbeats")
    assert exits == []


CHILD = """
import time
from mmbind.server.liveness import AttemptWatchdog
from mmbind.server.store import InMemoryBindingStore
AttemptWatchdog(InMemoryBindingStore(), "r", "a1").start()
print("ready", flush=True)
time.sleep(600)
"""
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.integration
def test_the_serverapp_process_ends_when_its_parent_is_killed() -> None:
    # Prepare: a parent (as Flower's SuperExec) with a child running the watchdog
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"
        assert alive(child)
        # Execute
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        # Assert
        wait_for(lambda: not alive(child), 30, "the orphaned child to end")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
        parent.stdout.close()
