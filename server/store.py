"""Binding stores: where the coordinator keeps a run's binding state.

:class:`BindingStore` is the interface; :class:`InMemoryBindingStore` is the
embedded store that ``mmbind simulate`` uses, so a fresh machine needs no
server. Keys are namespaced per run.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from mmbind.errors import StoreError, UnknownNodeError


class BindingStore(Protocol):
    """State of the binding phases, per run: manifests, embeddings, bindings, checkpoints."""

    def put_manifest(self, run_id: str, node_id: int, manifest: Mapping[str, Any]) -> None: ...

    def manifests(self, run_id: str) -> dict[int, dict[str, Any]]: ...

    def put_arrays(
        self, run_id: str, node_id: int, name: str, arrays: Mapping[str, NDArray[Any]]
    ) -> None: ...

    def arrays(self, run_id: str, node_id: int, name: str) -> dict[str, NDArray[Any]]: ...

    def put_checkpoint(self, run_id: str, checkpoint: Mapping[str, Any]) -> None: ...

    def checkpoint(self, run_id: str) -> dict[str, Any] | None: ...

    def delete_run(self, run_id: str) -> None: ...


class InMemoryBindingStore:
    """The embedded store: a thread-safe dict per run. Arrays are copied in and out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._manifests: dict[str, dict[int, dict[str, Any]]] = {}
        self._arrays: dict[tuple[str, int, str], dict[str, NDArray[Any]]] = {}
        self._checkpoints: dict[str, dict[str, Any]] = {}

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
        with self._lock:
            self._checkpoints[run_id] = dict(checkpoint)

    def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            cp = self._checkpoints.get(run_id)
            return dict(cp) if cp is not None else None

    def delete_run(self, run_id: str) -> None:
        with self._lock:
            self._manifests.pop(run_id, None)
            self._checkpoints.pop(run_id, None)
            for key in [k for k in self._arrays if k[0] == run_id]:
                del self._arrays[key]
