"""Liveness of one attempt of a deployed run, seen from both ends.

In the ServerApp, :class:`AttemptWatchdog` (started by :mod:`mmbind.server.app` in a
deployment) does three things:

* every ``HEARTBEAT_SECONDS`` it appends a ``heartbeat`` event for its attempt, so the
  ``mmbind run`` that submitted it can tell a live attempt from a dead one
  (:mod:`mmbind.server.deployment` gives up after ``--attempt-timeout`` of silence);
* it ends the process at once when its parent (Flower's SuperExec, started by the
  coordinator's SuperLink) is gone: the coordinator died, and a ServerApp left behind
  would go on talking to nodes and to a restarted coordinator;
* it stops the process (SIGINT, then a hard exit) when another attempt took the run
  over (the run's owner blob named this attempt and now names another), instead of
  going on until its next checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable

from mmbind.errors import MMBindError
from mmbind.server.store import END_EVENT, BindingStore
from mmbind.server.workflow.checkpoint import OWNER_BLOB

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
"""How often a deployed ServerApp tells ``mmbind run`` that its attempt is alive."""
PARENT_POLL_SECONDS = 0.5
"""How often it checks that its parent process still exists."""
FENCED_EXIT_SECONDS = 20.0
"""How long a fenced-off ServerApp may take to stop on SIGINT before it is ended hard."""
EXIT_ORPHANED = 75
"""Exit status of a ServerApp whose coordinator is gone."""
EXIT_FENCED = 76
"""Exit status of a ServerApp that had to be ended hard after it was fenced off."""

HEARTBEAT_EVENT = "heartbeat"


class AttemptWatchdog:
    """Heartbeats, parent watch and fencing of one attempt (see the module).

    Parameters
    ----------
    store : BindingStore
        The run's store (the coordinator's BindingService in a deployment).
    run_id, attempt : str
        The run and this attempt of it.
    interval : float
        Seconds between heartbeats (and ownership checks).
    exit_process : callable
        Ends the process with a status (``os._exit``; tests pass their own).
    interrupt : callable
        Asks the process to stop cleanly (SIGINT to itself; tests pass their own).
    """

    def __init__(
        self,
        store: BindingStore,
        run_id: str,
        attempt: str,
        *,
        interval: float = HEARTBEAT_SECONDS,
        exit_process: Callable[[int], None] = os._exit,
        interrupt: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGINT),
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.attempt = attempt
        self.interval = interval
        self._exit = exit_process
        self._interrupt = interrupt
        self._parent = os.getppid()
        self._owned = False
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch_parent, name="mmbind-parent", daemon=True),
            threading.Thread(target=self._heartbeat, name="mmbind-heartbeat", daemon=True),
        ]

    def start(self) -> AttemptWatchdog:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> AttemptWatchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch_parent(self) -> None:
        while not self._stop.wait(PARENT_POLL_SECONDS):
            if os.getppid() != self._parent:
                log.error(
                    "attempt %s of run %s: the coordinator's SuperExec (pid %d) is gone; "
                    "this ServerApp stops now (resume the run once the coordinator is back)",
                    self.attempt,
                    self.run_id,
                    self._parent,
                )
                self._exit(EXIT_ORPHANED)
                return

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            try:
                self.store.append_event(
                    self.run_id, {"kind": HEARTBEAT_EVENT, "attempt": self.attempt}
                )
                owner = self.store.blob(self.run_id, OWNER_BLOB)
            except MMBindError as exc:  # the coordinator may be restarting: try again later
                log.debug("heartbeat of attempt %s failed: %s", self.attempt, exc)
                owner = None
            if owner is not None and owner.decode() == self.attempt:
                self._owned = True  # the workflow claimed the run
            elif owner is not None and self._owned:
                self._fenced(owner.decode())
                return
            self._stop.wait(self.interval)

    def _fenced(self, owner: str) -> None:
        message = (
            f"run {self.run_id} was taken over by attempt {owner}; "
            f"this attempt ({self.attempt}) stops"
        )
        log.error("%s", message)
        with contextlib.suppress(MMBindError):
            self.store.append_event(
                self.run_id, {"kind": "error", "message": message, "attempt": self.attempt}
            )
        self._interrupt()  # Flower's ServerApp process exits cleanly on SIGINT
        if self._stop.wait(FENCED_EXIT_SECONDS):
            return
        with contextlib.suppress(MMBindError):
            self.store.append_event(self.run_id, {"kind": END_EVENT, "attempt": self.attempt})
        self._exit(EXIT_FENCED)
