"""The BindingStore contract, run against every store: in-memory, Redis and remote (gRPC)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mmbind.errors import ConfigError, StoreError, UnknownNodeError
from mmbind.server.binding_service import NodeManifest
from mmbind.server.store import BindingStore, Event, NodeTraffic


def manifest(node_id: int, modalities: tuple[str, ...] = ("acc", "gyro")) -> dict[str, Any]:
    return NodeManifest(node_id, "A", modalities, 10, True, True, 27).to_dict()


def test_manifests_round_trip_and_replace(store: BindingStore, run_id: str) -> None:
    assert store.manifests(run_id) == {}
    store.put_manifest(run_id, 1, manifest(1))
    store.put_manifest(run_id, 2**64 - 1, manifest(2**64 - 1, ("acc", "skeleton")))
    store.put_manifest(run_id, 1, manifest(1, ("acc",)))
    got = store.manifests(run_id)
    assert got == {1: manifest(1, ("acc",)), 2**64 - 1: manifest(2**64 - 1, ("acc", "skeleton"))}


def test_arrays_round_trip_every_dtype(store: BindingStore, run_id: str) -> None:
    store.put_manifest(run_id, 3, manifest(3))
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "f16": rng.standard_normal((7, 5)).astype(np.float16),
        "f32": rng.standard_normal((10, 4)).astype(np.float32),
        "f64": rng.standard_normal(3),
        "i32": rng.integers(-5, 5, (2, 3, 4)).astype(np.int32),
        "i64": rng.integers(-(2**62), 2**62, 6),
        "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "flags": np.array([True, False, True]),
        "scalar": np.array(2.5),
        "empty": np.zeros((0, 8), dtype=np.float32),
    }
    store.put_arrays(run_id, 3, "features", arrays)
    back = store.arrays(run_id, 3, "features")
    assert set(back) == set(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype, k
        assert back[k].shape == a.shape, k
        np.testing.assert_array_equal(back[k], a)


def test_arrays_are_copies_and_put_replaces_the_set(store: BindingStore, run_id: str) -> None:
    store.put_manifest(run_id, 1, manifest(1))
    a = np.arange(6, dtype=np.float32)
    store.put_arrays(run_id, 1, "x", {"a": a, "b": a})
    a[:] = -1
    back = store.arrays(run_id, 1, "x")
    back["a"][:] = 99
    np.testing.assert_array_equal(store.arrays(run_id, 1, "x")["a"], np.arange(6))
    store.put_arrays(run_id, 1, "x", {"c": np.ones(2)})
    assert set(store.arrays(run_id, 1, "x")) == {"c"}


def test_put_arrays_of_an_unknown_node_fails(store: BindingStore, run_id: str) -> None:
    with pytest.raises(UnknownNodeError, match="node 5"):
        store.put_arrays(run_id, 5, "x", {"a": np.zeros(2)})


def test_missing_arrays_are_a_store_error(store: BindingStore, run_id: str) -> None:
    store.put_manifest(run_id, 1, manifest(1))
    with pytest.raises(StoreError, match="'embeddings' arrays"):
        store.arrays(run_id, 1, "embeddings")


def test_runs_are_namespaced(store: BindingStore, run_id: str) -> None:
    other = run_id + "*"  # glob characters must not leak into other runs
    for rid, value in ((run_id, 1.0), (other, 2.0)):
        store.put_manifest(rid, 1, manifest(1))
        store.put_arrays(rid, 1, "x", {"a": np.full(3, value)})
        store.put_checkpoint(rid, {"round": value})
        store.append_event(rid, {"kind": "start", "run": rid})
    assert store.arrays(run_id, 1, "x")["a"][0] == 1.0
    assert store.arrays(other, 1, "x")["a"][0] == 2.0
    assert store.checkpoint(run_id) == {"round": 1.0}
    assert [e.data["run"] for e in store.events(other)] == [other]
    store.delete_run(other)
    assert store.checkpoint(other) is None
    assert store.checkpoint(run_id) == {"round": 1.0}
    np.testing.assert_array_equal(store.arrays(run_id, 1, "x")["a"], np.ones(3))


def test_checkpoint_round_trip_and_runs(store: BindingStore, run_id: str) -> None:
    assert store.checkpoint(run_id) is None
    assert run_id not in store.runs()
    doc = {"phase": "align", "round": 3, "nested": {"w": [0.5, 1.0], "ok": True, "none": None}}
    store.put_checkpoint(run_id, doc)
    assert store.checkpoint(run_id) == doc
    store.put_checkpoint(run_id, {"phase": "finetune"})
    assert store.checkpoint(run_id) == {"phase": "finetune"}
    assert run_id in store.runs()
    store.put_manifest(run_id + "-nocp", 1, manifest(1))
    assert run_id + "-nocp" not in store.runs()


def test_documents_must_be_json(store: BindingStore, run_id: str) -> None:
    with pytest.raises(ConfigError, match="JSON"):
        store.put_checkpoint(run_id, {"model": object()})
    with pytest.raises(ConfigError, match="JSON"):
        store.append_event(run_id, {"kind": "x", "bad": {1, 2}})
    assert store.checkpoint(run_id) is None


def test_blobs_round_trip(store: BindingStore, run_id: str) -> None:
    assert store.blob(run_id, "model") is None
    assert store.blob_names(run_id) == []
    state = np.random.default_rng(1).bytes(3 * 2**20 + 17)  # more than one chunk
    store.put_blob(run_id, "model", state)
    store.put_blob(run_id, "encoder.acc", b"")
    store.put_blob(run_id, "encoder.acc", b"\x00\x01")
    assert store.blob(run_id, "model") == state
    assert store.blob(run_id, "encoder.acc") == b"\x00\x01"
    assert store.blob_names(run_id) == ["encoder.acc", "model"]


def test_events_are_numbered_in_order(store: BindingStore, run_id: str) -> None:
    assert store.events(run_id) == []
    seqs = [store.append_event(run_id, {"kind": "round", "i": i}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    events = store.events(run_id)
    assert [e.seq for e in events] == seqs
    assert [e.data["i"] for e in events] == list(range(5))
    assert all(isinstance(e, Event) and e.kind == "round" for e in events)
    assert [e.seq for e in store.events(run_id, after_seq=3)] == [4, 5]
    assert store.events(run_id, after_seq=5) == []
    assert store.append_event(run_id + "-other", {"kind": "x"}) == 1


def test_results_round_trip(store: BindingStore, run_id: str) -> None:
    assert store.results(run_id) is None
    results = {"methods": {"mmbind": {"accuracy": 0.81, "macro_f1": 0.79}}, "seeds": [0, 1]}
    store.put_results(run_id, results)
    assert store.results(run_id) == results


def test_counters_and_traffic_accumulate(store: BindingStore, run_id: str) -> None:
    assert store.counters(run_id) == {}
    assert store.traffic(run_id) == {}
    assert store.incr(run_id, "uploads") == 1
    assert store.incr(run_id, "uploads", 4) == 5
    assert store.incr(run_id, "bindings", 1000) == 1000
    assert store.counters(run_id) == {"uploads": 5, "bindings": 1000}
    store.add_traffic(run_id, 7, received=100)
    store.add_traffic(run_id, 7, received=20, sent=3)
    store.add_traffic(run_id, 2**64 - 1, sent=9)
    assert store.traffic(run_id) == {7: NodeTraffic(120, 3), 2**64 - 1: NodeTraffic(0, 9)}


def test_delete_run_forgets_everything(store: BindingStore, run_id: str) -> None:
    store.put_manifest(run_id, 1, manifest(1))
    store.put_arrays(run_id, 1, "x", {"a": np.zeros(3)})
    store.put_checkpoint(run_id, {"a": 1})
    store.put_blob(run_id, "m", b"abc")
    store.append_event(run_id, {"kind": "start"})
    store.put_results(run_id, {"r": 1})
    store.incr(run_id, "uploads")
    store.add_traffic(run_id, 1, 10, 10)
    store.delete_run(run_id)
    assert store.manifests(run_id) == {}
    with pytest.raises(StoreError):
        store.arrays(run_id, 1, "x")
    assert store.checkpoint(run_id) is None
    assert store.blob_names(run_id) == []
    assert store.events(run_id) == []
    assert store.results(run_id) is None
    assert store.counters(run_id) == {}
    assert store.traffic(run_id) == {}
    assert run_id not in store.runs()
    store.delete_run(run_id)  # deleting an unknown run is fine
    assert store.append_event(run_id, {"kind": "again"}) == 1
