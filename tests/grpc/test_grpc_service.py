"""The BindingService over gRPC, against real servers on 127.0.0.1 over both stores."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mmbind.errors import (
    BindingError,
    ConfigError,
    MMBindError,
    ShapeError,
    StoreError,
    UnknownNodeError,
)
from mmbind.protos.v1 import binding_pb2 as pb
from mmbind.protos.v1 import binding_pb2_grpc as pb_grpc
from mmbind.server import serde
from mmbind.server.binding_service import BindingService, BindRequest, NodeManifest
from mmbind.server.grpc_service import SERVICE_NAME, BindingServer, serve
from mmbind.server.redis_store import RedisBindingStore
from mmbind.server.remote import (
    RemoteBindingService,
    RemoteBindingStore,
    error_from_rpc,
    wait_until_ready,
)
from mmbind.server.store import Event, InMemoryBindingStore

pytestmark = pytest.mark.integration

LAYOUT = {1: ("acc", "gyro"), 2: ("acc", "skeleton"), 3: ("acc", "skeleton")}
N = {1: 300, 2: 200, 3: 250}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def manifest(node_id: int) -> NodeManifest:
    return NodeManifest(node_id, "A", LAYOUT[node_id], N[node_id], True, True, 5)


def populated(server: BindingServer, run_id: str) -> RemoteBindingService:
    """Register the three nodes of LAYOUT and upload their embeddings and labels."""
    service = RemoteBindingService(server.address, run_id, timeout=10, retries=0)
    rng = np.random.default_rng(7)
    for node_id in LAYOUT:
        service.register(manifest(node_id))
    for node_id in LAYOUT:
        emb = rng.standard_normal((N[node_id], 32)).astype(np.float32)
        service.upload(node_id, emb, rng.integers(0, 5, N[node_id]))
    return service


def stub(server: BindingServer) -> pb_grpc.BindingServiceStub:
    return pb_grpc.BindingServiceStub(grpc.insecure_channel(server.address))


def rpc_error(fn: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def error_class(exc: grpc.RpcError) -> str | None:
    return dict(exc.trailing_metadata() or ()).get("mmbind-error")


# -------------------------------------------------------------------- health, nodes


def test_health_reports_serving(server: BindingServer) -> None:
    wait_until_ready(server.address, timeout=5)
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
    for name in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_register_and_list_nodes(server: BindingServer, run_id: str) -> None:
    service = RemoteBindingService(server.address, run_id)
    assert service.nodes == []
    big = NodeManifest(2**64 - 1, "test", ("skeleton", "gyro"), 10, False, False, 27)
    for m in (manifest(3), big, manifest(1)):
        service.register(m)
    assert service.nodes == [manifest(1), manifest(3), big]
    assert service.node(2**64 - 1) == big
    with pytest.raises(UnknownNodeError, match=r"unknown node 2; nodes of this run: 1, 3, 1844"):
        service.node(2)
    assert RemoteBindingService(server.address, run_id + "x").nodes == []  # runs are separate


# ----------------------------------------------------------------------- arrays


def test_large_array_streams_in_chunks_and_comes_back_exactly(
    server: BindingServer, run_id: str
) -> None:
    store = RemoteBindingStore(server.address, timeout=10, retries=0)
    store.put_manifest(run_id, 5, manifest(1).to_dict() | {"node_id": 5})
    big = np.random.default_rng(0).standard_normal((200_000, 128)).astype(np.float32)
    ids = np.arange(200_000, dtype=np.int64)
    store.put_arrays(run_id, 5, "features", {"features": big, "ids": ids})
    back = store.arrays(run_id, 5, "features")
    assert back["features"].dtype == np.float32 and back["features"].shape == big.shape
    assert back["features"].tobytes() == big.tobytes()
    np.testing.assert_array_equal(back["ids"], ids)
    traffic = store.traffic(run_id)[5]
    assert traffic.received > big.nbytes + ids.nbytes  # 100 MB went in, over a 8 MiB cap
    assert traffic.sent > big.nbytes + ids.nbytes


def test_embeddings_upload_is_checked_against_the_manifest(
    server: BindingServer, run_id: str
) -> None:
    service = RemoteBindingService(server.address, run_id, retries=0)
    service.register(manifest(1))
    half = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float16)
    service.upload(1, half)  # float16 travels as float16, is stored as float32
    stored = service.store.arrays(run_id, 1, "embeddings")["embeddings"]
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, half.astype(np.float32))
    with pytest.raises(BindingError, match=r"expected \(300, d\)"):
        service.upload(1, np.zeros((299, 8), np.float32))
    with pytest.raises(BindingError, match="non-finite"):
        service.upload(1, np.full((300, 8), np.nan, np.float32))
    with pytest.raises(ShapeError, match="labels of node 1 have shape"):
        service.upload(1, np.zeros((300, 8), np.float32), np.zeros(3, np.int64))
    with pytest.raises(ShapeError, match="dtype float64; expected float32 or float16"):
        service.store.put_arrays(run_id, 1, "embeddings", {"embeddings": np.zeros((300, 8))})
    with pytest.raises(ConfigError, match="optionally 'labels'"):
        service.store.put_arrays(run_id, 1, "embeddings", {"emb": np.zeros((300, 8), np.float32)})
    with pytest.raises(UnknownNodeError, match="unknown node 9"):
        service.upload(9, np.zeros((3, 8), np.float32))


# ---------------------------------------------------------------------- binding


@pytest.mark.parametrize("by", ["modality", "label"])
def test_bind_equals_the_in_process_service(server: BindingServer, run_id: str, by: str) -> None:
    remote = populated(server, run_id)
    requests = [
        BindRequest(1, "skeleton", (2, 3)),
        BindRequest(2, "gyro", (1,)),
        BindRequest(3, "gyro", (1,)),
    ]
    got = remote.bind(requests, by=by, seed=3)
    want = BindingService(server.servicer.store, run_id).bind(requests, by=by, seed=3)
    assert [g.request for g in got] == requests
    for g, w in zip(got, want, strict=True):
        assert len(g.bindings) == N[g.request.node_id]
        for f in ("query_index", "partner_node", "partner_index", "similarity"):
            assert getattr(g.bindings, f).tobytes() == getattr(w.bindings, f).tobytes(), f
        np.testing.assert_array_equal(g.partner_node_ids, w.partner_node_ids)
    telemetry = remote.store.telemetry(run_id)
    assert telemetry.nodes == 3 and telemetry.uploads == 3
    assert telemetry.bindings == sum(N.values())
    assert telemetry.counters["bind_calls"] == 1
    assert {t.node_id for t in telemetry.traffic} == {1, 2, 3}
    assert all(t.bytes_received > 0 and t.bytes_sent > 0 for t in telemetry.traffic)


def test_bind_errors_map_to_mmbind_errors(server: BindingServer, run_id: str) -> None:
    remote = populated(server, run_id)
    with pytest.raises(UnknownNodeError, match="unknown node 4; nodes of this run: 1, 2, 3"):
        remote.bind([BindRequest(1, "skeleton", (4,))])
    with pytest.raises(BindingError, match="no partner node"):
        remote.bind([BindRequest(1, "skeleton", ())])
    with pytest.raises(ConfigError, match="unknown binding 'nearest'"):
        remote.bind([BindRequest(1, "skeleton", (2,))], by="nearest")
    bare = f"{run_id}-nolabels"
    service = RemoteBindingService(server.address, bare)
    for node_id in (1, 2):
        service.register(manifest(node_id))
        service.upload(node_id, np.ones((N[node_id], 4), np.float32))
    with pytest.raises(BindingError, match="label binding needs label ids"):
        service.bind([BindRequest(1, "skeleton", (2,))], by="label")
    assert service.bind([]) == []


# ---------------------------------------------------------------- error mapping


def test_bad_dtype_shape_and_stream_are_invalid_argument(
    server: BindingServer, run_id: str
) -> None:
    RemoteBindingService(server.address, run_id).register(manifest(1))
    api = stub(server)
    header = pb.ArrayChunk(header=pb.ArraysHeader(run_id=run_id, node_id=1, name="x"))

    def put(*chunks: pb.ArrayChunk) -> Any:
        return lambda: api.PutArrays(iter([header, *chunks]), timeout=10)

    exc = rpc_error(put(pb.ArrayChunk(array=pb.ArrayHeader(key="a", dtype="complex64", shape=[2]))))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unsupported dtype 'complex64'" in exc.details() and error_class(exc) == "ShapeError"
    assert isinstance(error_from_rpc(exc, server.address), ShapeError)

    short = pb.ArrayChunk(array=pb.ArrayHeader(key="a", dtype="float32", shape=[4]))
    exc = rpc_error(put(short, pb.ArrayChunk(data=b"\x00" * 15)))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declared 16 bytes; the stream carried 15" in exc.details()

    exc = rpc_error(put(pb.ArrayChunk(data=b"x")))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and error_class(exc) == "ConfigError"

    exc = rpc_error(lambda: api.ListNodes(pb.ListNodesRequest(run_id=""), timeout=10))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty run_id" in exc.details()

    exc = rpc_error(lambda: api.AppendEvent(pb.AppendEventRequest(run_id=run_id, json="{}")))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and '"kind"' in exc.details()


def test_unknown_node_upload_is_refused_at_the_header(server: BindingServer, run_id: str) -> None:
    chunks = [
        pb.ArrayChunk(header=pb.ArraysHeader(run_id=run_id, node_id=77, name="x")),
        pb.ArrayChunk(array=pb.ArrayHeader(key="a", dtype="int8", shape=[1])),  # never read
    ]
    exc = rpc_error(lambda: stub(server).PutArrays(iter(chunks), timeout=10))
    assert exc.code() == grpc.StatusCode.NOT_FOUND and "unknown node 77" in exc.details()
    assert isinstance(error_from_rpc(exc, server.address), UnknownNodeError)


def test_oversized_message_is_resource_exhausted(server: BindingServer, run_id: str) -> None:
    RemoteBindingService(server.address, run_id).register(manifest(1))
    chunks = [
        pb.ArrayChunk(header=pb.ArraysHeader(run_id=run_id, node_id=1, name="x")),
        pb.ArrayChunk(array=pb.ArrayHeader(key="a", dtype="bool", shape=[9 << 20])),
        pb.ArrayChunk(data=b"\x00" * (9 << 20)),
    ]
    exc = rpc_error(lambda: stub(server).PutArrays(iter(chunks), timeout=10))
    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(serde.MAX_MESSAGE_BYTES) in exc.details()  # the limit is named
    assert isinstance(error_from_rpc(exc, server.address), ConfigError)


class _BrokenStore(InMemoryBindingStore):
    def manifests(self, run_id: str) -> dict[int, dict[str, Any]]:
        raise RuntimeError("disk on fire\nsecond line")


def test_unexpected_errors_are_internal_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with serve("127.0.0.1", 0, _BrokenStore()) as broken:
        with caplog.at_level(logging.ERROR, logger="mmbind.server.grpc_service"):
            exc = rpc_error(lambda: stub(broken).ListNodes(pb.ListNodesRequest(run_id="r")))
        assert exc.code() == grpc.StatusCode.INTERNAL
        assert (
            exc.details() == "internal error in ListNodes: RuntimeError: disk on fire second line"
        )
        assert any(r.exc_info for r in caplog.records)  # the traceback went to the log
        with pytest.raises(MMBindError, match="INTERNAL: internal error in ListNodes"):
            RemoteBindingService(broken.address, "r").nodes  # noqa: B018


def test_unreachable_service_is_a_store_error() -> None:
    address = f"127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(StoreError, match=f"binding service at {address} is unreachable"):
        RemoteBindingStore(address, retries=2, backoff=0.01).manifests("r")
    with pytest.raises(StoreError, match=f"binding service at {address} is not ready after"):
        wait_until_ready(address, timeout=0.3)
    assert time.monotonic() - start < 5


# --------------------------------------------------------- events, checkpoints


def test_watch_events_follow_ends_on_end(server: BindingServer, run_id: str) -> None:
    store = RemoteBindingStore(server.address)
    assert store.append_event(run_id, {"kind": "start"}) == 1

    def produce() -> None:
        time.sleep(0.2)
        store.append_event(run_id, {"kind": "round", "i": 1})
        time.sleep(0.1)  # an append that bypasses the server is found by polling
        server.servicer.store.append_event(run_id, {"kind": "round", "i": 2})
        time.sleep(0.1)
        store.append_event(run_id, {"kind": "end"})
        store.append_event(run_id, {"kind": "after-end"})

    producer = threading.Thread(target=produce)
    producer.start()
    got = list(store.watch_events(run_id, follow=True, timeout=10))
    producer.join()
    assert [(e.seq, e.kind) for e in got] == [(1, "start"), (2, "round"), (3, "round"), (4, "end")]
    assert got[2].data == {"kind": "round", "i": 2}
    assert [e.seq for e in store.watch_events(run_id, after_seq=2, follow=False)] == [3, 4, 5]
    assert list(store.watch_events(run_id, after_seq=4, follow=True, timeout=5)) == []
    assert store.events(run_id, after_seq=4) == [Event(5, {"kind": "after-end"})]


def test_checkpoint_blobs_results_over_grpc(server: BindingServer, run_id: str) -> None:
    store = RemoteBindingStore(server.address)
    state = np.random.default_rng(2).bytes((5 << 20) // 2)
    store.put_blob(run_id, "model", state)
    store.put_checkpoint(run_id, {"phase": "align", "round": 2})
    assert run_id in store.runs()
    assert store.checkpoint(run_id) == {"phase": "align", "round": 2}
    assert store.blob(run_id, "model") == state
    assert store.blob(run_id, "missing") is None
    api = stub(server)
    stream = api.GetCheckpoint(pb.GetCheckpointRequest(run_id=run_id, all_blobs=True))
    parts = serde.chunks_to_checkpoint(stream)
    assert parts.blobs == {"model": state} and parts.blob_names == ["model"]
    store.put_results(run_id, {"accuracy": 0.8})
    assert store.results(run_id) == {"accuracy": 0.8}
    assert store.results(run_id + "x") is None
    store.delete_run(run_id)
    assert run_id not in store.runs() and store.blob_names(run_id) == []


# ----------------------------------------------------------------- the servers


def test_servers_sharing_a_store_share_the_state(
    server: BindingServer, store_kind: str, run_id: str
) -> None:
    shared = server.servicer.store
    if isinstance(shared, RedisBindingStore):  # another process would open its own client
        shared = RedisBindingStore(shared.url, prefix=shared.prefix)
    with serve("127.0.0.1", 0, shared) as other:
        RemoteBindingService(server.address, run_id).register(manifest(2))
        assert RemoteBindingService(other.address, run_id).nodes == [manifest(2)]


def test_stop_ends_followed_watchers(run_id: str) -> None:
    srv = serve("127.0.0.1", 0, InMemoryBindingStore(), poll_interval=0.05)
    store = RemoteBindingStore(srv.address, retries=0)
    ended = threading.Event()

    def watch() -> None:
        try:
            for _ in store.watch_events(run_id, follow=True, timeout=10):
                pass
        except MMBindError:
            pass
        ended.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.2)
    srv.stop(grace=1).wait(5)
    assert ended.wait(5)
    watcher.join()


def test_a_busy_port_is_a_config_error() -> None:
    busy = serve("127.0.0.1", 0, InMemoryBindingStore())
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            serve("127.0.0.1", busy.port, InMemoryBindingStore())
    finally:
        busy.stop(None)
