"""Binding stores: where the coordinator keeps a run's binding state.

:class:`BindingStore` is the interface; :class:`InMemoryBindingStore` is the
embedded store that ``mmbind simulate`` uses, so a fresh machine needs no
server. :class:`~mmbind.server.redis_store.RedisBindingStore` keeps the same
state in Redis and :class:`~mmbind.server.remote.RemoteBindingStore` reaches a
store through the BindingService over gRPC. Keys are namespaced per run.

What a run holds
----------------
* manifests — one JSON-able document per node (phase 1);
* arrays — named sets of numpy arrays per (node, name), e.g. the shared-modality
  ``"embeddings"`` upload (transient);
* checkpoint — one JSON document per run, plus named binary blobs (model states);
* events — a log of JSON objects numbered 1, 2, 3, ... (progress of the run);
* results — the run's ``results.json`` document;
* telemetry — integer counters and bytes received/sent per node.

Documents (checkpoint, events, results) must be JSON objects: every store keeps
them as JSON, so what comes back is what ``json.loads(json.dumps(doc))`` gives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from mmbind.errors import ConfigError, StoreError, UnknownNodeError

END_EVENT = "end"
"""Kind of the event that closes a run's event log (``WatchEvents`` stops after it)."""


class Event(NamedTuple):
    """One entry of a run's event log."""

    seq: int
    """Position in the log: 1 for the first event of a run, then 2, 3, ..."""
    data: dict[str, Any]
    """The event document (a JSON object, usually with a string ``"kind"``)."""

    @property
    def kind(self) -> str:
        """The event's ``"kind"`` (``""`` when it has none)."""
        kind = self.data.get("kind", "")
        return kind if isinstance(kind, str) else str(kind)


class NodeTraffic(NamedTuple):
    """Bytes the binding service received from and sent about one node."""

    received: int
    sent: int


class BindingStore(Protocol):
    """State of the binding phases, per run: manifests, embeddings, bindings, checkpoints.

    Every method raises :class:`~mmbind.errors.StoreError` when the store is
    unreachable or holds inconsistent state.
    """

    # -- manifests and arrays (phases 1 and 3) --
    def put_manifest(self, run_id: str, node_id: int, manifest: Mapping[str, Any]) -> None: ...

    def manifests(self, run_id: str) -> dict[int, dict[str, Any]]: ...

    def put_arrays(
        self, run_id: str, node_id: int, name: str, arrays: Mapping[str, NDArray[Any]]
    ) -> None:
        """Replace a node's array set ``name``; :class:`UnknownNodeError` if unregistered."""
        ...

    def arrays(self, run_id: str, node_id: int, name: str) -> dict[str, NDArray[Any]]:
        """A stored array set (fresh copies); :class:`StoreError` if there is none."""
        ...

    # -- checkpoints --
    def put_checkpoint(self, run_id: str, checkpoint: Mapping[str, Any]) -> None: ...

    def checkpoint(self, run_id: str) -> dict[str, Any] | None: ...

    def put_blob(self, run_id: str, name: str, data: bytes) -> None:
        """Store a named binary blob of the run's checkpoint (e.g. a model state)."""
        ...

    def blob(self, run_id: str, name: str) -> bytes | None: ...

    def blob_names(self, run_id: str) -> list[str]:
        """Names of the run's blobs, sorted."""
        ...

    def runs(self) -> list[str]:
        """Ids of the runs that hold a checkpoint, sorted."""
        ...

    # -- events, results --
    def append_event(self, run_id: str, event: Mapping[str, Any]) -> int:
        """Append an event to the run's log; its sequence number (1, 2, 3, ...)."""
        ...

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events with ``seq > after_seq``, in order."""
        ...

    def put_results(self, run_id: str, results: Mapping[str, Any]) -> None: ...

    def results(self, run_id: str) -> dict[str, Any] | None: ...

    # -- telemetry --
    def add_traffic(self, run_id: str, node_id: int, received: int = 0, sent: int = 0) -> None:
        """Count bytes received from / sent about node ``node_id``."""
        ...

    def traffic(self, run_id: str) -> dict[int, NodeTraffic]: ...

    def incr(self, run_id: str, counter: str, amount: int = 1) -> int:
        """Add ``amount`` to a named counter of the run; its new value."""
        ...

    def counters(self, run_id: str) -> dict[str, int]: ...

    def delete_run(self, run_id: str) -> None:
        """Forget everything about the run (no error if it is unknown)."""
        ...


def json_copy(document: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``document`` as a store gives it back: a JSON round trip.

    Raises
    ------
    ConfigError
        If ``document`` is not a JSON object (a mapping of JSON-able values).
    """
    if not isinstance(document, Mapping):
        kind = type(document).__name__
        raise ConfigError(f"{what} must be a mapping (a JSON object), got {kind}")
    try:
        text = json.dumps(document, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} is not JSON-serializable: {exc}") from None
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class InMemoryBindingStore:
    """The embedded store: a thread-safe dict per run. Arrays are copied in and out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._manifests: dict[str, dict[int, dict[str, Any]]] = {}
        self._arrays: dict[tuple[str, int, str], dict[str, NDArray[Any]]] = {}
        self._checkpoints: dict[str, dict[str, Any]] = {}
        self._blobs: dict[str, dict[str, bytes]] = {}
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._traffic: dict[str, dict[int, NodeTraffic]] = {}
        self._counters: dict[str, dict[str, int]] = {}

    def put_manifest(self, run_id: str, node_id: int, manifest: Mapping[str, Any]) -> None:
        with self._lock:
            self._manifests.setdefault(run_id, {})[node_id] = dict(manifest)

    def manifests(self, run_id: str) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._manifests.get(run_id, {}).items()}

    def put_arrays(
        self, run_id: str, node_id: int, name: str, arrays: Mapping[str, NDArray[Any]]
    ) -> None:
        with self._lock:
            if node_id not in self._manifests.get(run_id, {}):
                raise UnknownNodeError(
                    f"node {node_id} has no manifest in run {run_id!r}; register it first"
                )
            self._arrays[(run_id, node_id, name)] = {k: np.array(v) for k, v in arrays.items()}

    def arrays(self, run_id: str, node_id: int, name: str) -> dict[str, NDArray[Any]]:
        with self._lock:
            try:
                stored = self._arrays[(run_id, node_id, name)]
            except KeyError:
                raise StoreError(
                    f"no {name!r} arrays stored for node {node_id} in run {run_id!r}"
                ) from None
            return {k: v.copy() for k, v in stored.items()}

    def put_checkpoint(self, run_id: str, checkpoint: Mapping[str, Any]) -> None:
        doc = json_copy(checkpoint, f"checkpoint of run {run_id!r}")
        with self._lock:
            self._checkpoints[run_id] = doc

    def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            cp = self._checkpoints.get(run_id)
        return json_copy(cp, "checkpoint") if cp is not None else None

    def put_blob(self, run_id: str, name: str, data: bytes) -> None:
        with self._lock:
            self._blobs.setdefault(run_id, {})[name] = bytes(data)

    def blob(self, run_id: str, name: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(run_id, {}).get(name)

    def blob_names(self, run_id: str) -> list[str]:
        with self._lock:
            return sorted(self._blobs.get(run_id, {}))

    def runs(self) -> list[str]:
        with self._lock:
            return sorted(self._checkpoints)

    def append_event(self, run_id: str, event: Mapping[str, Any]) -> int:
        doc = json_copy(event, f"event of run {run_id!r}")
        with self._lock:
            log = self._events.setdefault(run_id, [])
            log.append(doc)
            return len(log)

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            log = self._events.get(run_id, [])
            start = max(int(after_seq), 0)
            picked = [(i + 1, log[i]) for i in range(start, len(log))]
        return [Event(seq, json_copy(doc, "event")) for seq, doc in picked]

    def put_results(self, run_id: str, results: Mapping[str, Any]) -> None:
        doc = json_copy(results, f"results of run {run_id!r}")
        with self._lock:
            self._results[run_id] = doc

    def results(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._results.get(run_id)
        return json_copy(doc, "results") if doc is not None else None

    def add_traffic(self, run_id: str, node_id: int, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            per_node = self._traffic.setdefault(run_id, {})
            old = per_node.get(node_id, NodeTraffic(0, 0))
            per_node[node_id] = NodeTraffic(old.received + int(received), old.sent + int(sent))

    def traffic(self, run_id: str) -> dict[int, NodeTraffic]:
        with self._lock:
            return dict(self._traffic.get(run_id, {}))

    def incr(self, run_id: str, counter: str, amount: int = 1) -> int:
        with self._lock:
            counters = self._counters.setdefault(run_id, {})
            counters[counter] = counters.get(counter, 0) + int(amount)
            return counters[counter]

    def counters(self, run_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self._counters.get(run_id, {}))

    def delete_run(self, run_id: str) -> None:
        with self._lock:
            per_run_maps: tuple[dict[str, Any], ...] = (
                self._manifests,
                self._checkpoints,
                self._blobs,
                self._events,
                self._results,
                self._traffic,
                self._counters,
            )
            for per_run in per_run_maps:
                per_run.pop(run_id, None)
            for key in [k for k in self._arrays if k[0] == run_id]:
                del self._arrays[key]
