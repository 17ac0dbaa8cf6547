"""``mmbind run`` follows its own attempt and gives up on a lost one with the resume command.

Real BindingService (gRPC, in-memory store) on loopback; the ServerApp's side of the
event log is written straight into the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mmbind.errors import FederationError
from mmbind.server.deployment import follow_attempt
from mmbind.server.grpc_service import BindingServer, serve
from mmbind.server.liveness import HEARTBEAT_EVENT
from mmbind.server.remote import RemoteBindingStore
from mmbind.server.store import END_EVENT, InMemoryBindingStore

HINT = "resume it with `mmbind run --superlink H:1 --resume r`"


@pytest.fixture
def backing() -> InMemoryBindingStore:
    return InMemoryBindingStore()


@pytest.fixture
def server(backing: InMemoryBindingStore) -> Iterator[BindingServer]:
    with serve("127.0.0.1", 0, backing, poll_interval=0.05) as srv:
        yield srv


def later(seconds: float, fn) -> threading.Timer:  # type: ignore[no-untyped-def]
    timer = threading.Timer(seconds, fn)
    timer.start()
    return timer


def test_returns_the_attempts_error_at_its_end_event(
    server: BindingServer, backing: InMemoryBindingStore
) -> None:
    # Prepare: another attempt's end comes first; this attempt reports an error, then ends
    backing.append_event("r", {"kind": END_EVENT, "attempt": "old"})
    backing.append_event("r", {"kind": HEARTBEAT_EVENT, "attempt": "a1"})
    backing.append_event("r", {"kind": "error", "message": "boom", "attempt": "a1"})
    backing.append_event("r", {"kind": END_EVENT, "attempt": "a1"})
    # Execute
    error = follow_attempt(RemoteBindingStore(server.address), "r", "a1", hint=HINT, poll=0.05)
    # Assert
    assert error == "boom"


def test_an_attempt_that_falls_silent_is_lost(
    server: BindingServer, backing: InMemoryBindingStore
) -> None:
    # Prepare: a1 sends a heartbeat, then nothing (its coordinator died); a2 is alive
    backing.append_event("r", {"kind": HEARTBEAT_EVENT, "attempt": "a1"})

    def beat() -> None:
        backing.append_event("r", {"kind": HEARTBEAT_EVENT, "attempt": "a2"})

    beats = [later(0.2 * i, beat) for i in range(1, 8)]
    # Execute / Assert
    with pytest.raises(FederationError) as err:
        follow_attempt(
            RemoteBindingStore(server.address), "r", "a1", hint=HINT, attempt_timeout=0.5,
            poll=0.05, flower_status=lambda: "running",
        )  # fmt: skip
    for timer in beats:
        timer.cancel()
    message = str(err.value)
    assert "attempt a1 of run r gave no sign of life" in message
    assert "Flower's run status: running" in message and message.endswith(HINT)


def test_before_its_first_event_flower_status_decides(
    server: BindingServer, backing: InMemoryBindingStore
) -> None:
    # Prepare: the ServerApp never starts; Flower says running twice, then failed
    statuses = iter(["starting", "running", "finished:failed (ServerApp failed)"])
    asked: list[str] = []

    def status() -> str:
        asked.append(next(statuses))
        return asked[-1]

    # Execute / Assert
    with pytest.raises(FederationError, match=r"finished:failed \(ServerApp failed\)"):
        follow_attempt(
            RemoteBindingStore(server.address), "r", "a1", hint=HINT, attempt_timeout=0.2,
            poll=0.05, flower_status=status,
        )  # fmt: skip
    assert len(asked) == 3


def test_an_unreachable_coordinator_is_lost_after_reconnect_seconds(
    server: BindingServer, backing: InMemoryBindingStore
) -> None:
    # Prepare
    store = RemoteBindingStore(server.address, retries=0)
    backing.append_event("r", {"kind": HEARTBEAT_EVENT, "attempt": "a1"})
    later(0.3, lambda: server.stop(None))
    # Execute / Assert
    with pytest.raises(FederationError, match=r"lost the coordinator for 1 s .*; once it is back"):
        follow_attempt(store, "r", "a1", hint=HINT, reconnect_seconds=1.0, poll=0.05)
