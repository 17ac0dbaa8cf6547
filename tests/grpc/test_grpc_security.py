"""The BindingService as ``mmbind-server --certs`` runs it: TLS, tokens, roles, limits.

Every test talks to a real gRPC server on 127.0.0.1 (TLS with a certificate of
``mmbind certs init``) through real channels; attacks are made with raw stubs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory

from mmbind.certs import CertsLayout, CoordinatorCerts, init_certs
from mmbind.protos.v1 import binding_pb2 as pb
from mmbind.protos.v1 import binding_pb2_grpc as pb_grpc
from mmbind.server import serde
from mmbind.server.binding_service import NodeManifest
from mmbind.server.grpc_service import (
    METHOD_ROLES,
    OPERATOR,
    SERVERAPP,
    Authorizer,
    BindingServer,
    Limits,
    serve,
)
from mmbind.server.remote import RemoteBindingStore, channel_credentials, wait_until_ready
from mmbind.server.store import InMemoryBindingStore

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["BindingService"]
LIMITS = Limits(
    max_message_bytes=2 << 20,
    max_stream_bytes=4 << 20,
    max_arrays_per_stream=8,
    max_call_seconds=3.0,
    max_followers=2,
    max_concurrent_rpcs=32,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertsLayout:
    return init_certs(tmp_path_factory.mktemp("certs") / "d", ["localhost", "127.0.0.1"])


@pytest.fixture(scope="module")
def coordinator(certs: CertsLayout) -> CoordinatorCerts:
    return CoordinatorCerts.load(certs.coordinator)


@pytest.fixture(scope="module")
def server(coordinator: CoordinatorCerts) -> Iterator[BindingServer]:
    credentials = grpc.ssl_server_credentials(
        [(coordinator.key.read_bytes(), coordinator.cert.read_bytes())]
    )
    authorizer = Authorizer(
        {SERVERAPP: coordinator.serverapp_token, OPERATOR: coordinator.operator_token}
    )
    with serve(
        "127.0.0.1", 0, InMemoryBindingStore(), max_workers=4, credentials=credentials,
        authorizer=authorizer, limits=LIMITS, poll_interval=0.05,
    ) as srv:  # fmt: skip
        yield srv


def _creds(coordinator: CoordinatorCerts, token: str | None) -> grpc.ChannelCredentials:
    return channel_credentials(coordinator.ca.read_bytes(), token)


def _stub(server: BindingServer, credentials: grpc.ChannelCredentials) -> Any:
    return pb_grpc.BindingServiceStub(grpc.secure_channel(server.address, credentials))


def _call(stub: Any, method: str, timeout: float = 5.0) -> Any:
    """Call ``method`` with an empty request of its type (streams: one empty message)."""
    desc = SERVICE.methods_by_name[method]
    request = message_factory.GetMessageClass(desc.input_type)()
    fn = getattr(stub, method)
    if desc.client_streaming:
        return fn(iter([request]), timeout=timeout)
    reply = fn(request, timeout=timeout)
    return list(reply) if desc.server_streaming else reply


def _code(fn: Any) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def _serving(server: BindingServer, coordinator: CoordinatorCerts) -> bool:
    """A good call succeeds (the operator lists runs)."""
    stub = _stub(server, _creds(coordinator, coordinator.operator_token))
    return _code(lambda: stub.ListRuns(pb.ListRunsRequest(), timeout=10)) == grpc.StatusCode.OK


def test_every_method_has_its_roles() -> None:
    # Execute / Assert: a method added to the .proto without roles would be callable by no one
    assert set(METHOD_ROLES) == set(SERVICE.methods_by_name)


@pytest.mark.parametrize("method", sorted(SERVICE.methods_by_name))
def test_every_method_without_a_credential_is_unauthenticated(
    server: BindingServer, coordinator: CoordinatorCerts, method: str
) -> None:
    # Prepare
    anonymous = _stub(server, _creds(coordinator, None))
    forged = _stub(server, _creds(coordinator, "not-a-token-of-this-deployment"))
    # Execute
    codes = {_code(lambda: _call(anonymous, method)), _code(lambda: _call(forged, method))}
    # Assert
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}


@pytest.mark.parametrize(
    "method", sorted(m for m, roles in METHOD_ROLES.items() if OPERATOR not in roles)
)
def test_the_operator_may_not_touch_nodes_data_or_forge_state(
    server: BindingServer, coordinator: CoordinatorCerts, method: str
) -> None:
    # Prepare
    operator = _stub(server, _creds(coordinator, coordinator.operator_token))
    # Execute
    code = _code(lambda: _call(operator, method))
    # Assert
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_the_serverapp_may_call_everything(
    server: BindingServer, coordinator: CoordinatorCerts
) -> None:
    # Prepare
    store = RemoteBindingStore(
        server.address, credentials=_creds(coordinator, coordinator.serverapp_token), retries=0
    )
    node = NodeManifest(1, "A", ("acc", "gyro"), 4, True, True, 2)
    store.put_manifest("r1", 1, node.to_dict())
    # Execute
    store.put_arrays("r1", 1, "features", {"x": np.arange(6, dtype=np.float32)})
    store.append_event("r1", {"kind": "progress"})
    arrays = store.arrays("r1", 1, "features")
    # Assert
    assert arrays["x"].tolist() == list(range(6))
    assert [e.kind for e in store.events("r1")] == ["progress"]
    store.delete_run("r1")


def test_the_operator_follows_and_reads_results(
    server: BindingServer, coordinator: CoordinatorCerts
) -> None:
    # Prepare
    app = RemoteBindingStore(
        server.address, credentials=_creds(coordinator, coordinator.serverapp_token), retries=0
    )
    app.put_results("r2", {"accuracy": 0.5})
    app.put_checkpoint("r2", {"step": 3})
    operator = RemoteBindingStore(
        server.address, credentials=_creds(coordinator, coordinator.operator_token), retries=0
    )
    # Execute / Assert
    assert operator.results("r2") == {"accuracy": 0.5}
    assert "r2" in operator.runs()
    assert operator.checkpoint("r2") == {"step": 3}


def test_plaintext_and_another_ca_are_refused(
    server: BindingServer, coordinator: CoordinatorCerts, tmp_path: Any
) -> None:
    # Prepare
    other = CoordinatorCerts.load(init_certs(tmp_path / "o", ["127.0.0.1"]).coordinator)
    plaintext = pb_grpc.BindingServiceStub(grpc.insecure_channel(server.address))
    other_ca = _stub(server, channel_credentials(other.ca.read_bytes(), coordinator.operator_token))
    # Execute
    codes = [
        _code(lambda: plaintext.ListRuns(pb.ListRunsRequest(), timeout=3)),
        _code(lambda: other_ca.ListRuns(pb.ListRunsRequest(), timeout=3)),
    ]
    # Assert: the handshake fails, so the call never reaches the service
    assert codes == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    assert _serving(server, coordinator)
    wait_until_ready(server.address, 5, credentials=_creds(coordinator, None))  # health is open


def _register(server: BindingServer, coordinator: CoordinatorCerts, run: str) -> Any:
    stub = _stub(server, _creds(coordinator, coordinator.serverapp_token))
    node = NodeManifest(1, "A", ("acc", "gyro"), 4, True, True, 2)
    stub.RegisterNode(
        pb.RegisterNodeRequest(run_id=run, manifest=serde.manifest_to_proto(node)), timeout=5
    )
    return stub


def test_an_oversized_upload_is_resource_exhausted_and_the_server_serves_on(
    server: BindingServer, coordinator: CoordinatorCerts
) -> None:
    # Prepare: 3 arrays of 2 MiB (each under the message cap) over a 4 MiB stream limit
    stub = _register(server, coordinator, "big")
    arrays = {f"a{i}": np.zeros(1 << 19, dtype=np.float32) for i in range(3)}
    many = {f"m{i}": np.zeros(1, dtype=np.float32) for i in range(LIMITS.max_arrays_per_stream + 1)}
    key = serde.ArraysKey("big", 1, "x")
    # Execute
    too_big = _code(lambda: stub.PutArrays(serde.arrays_to_chunks(key, arrays), timeout=20))
    too_many = _code(lambda: stub.PutArrays(serde.arrays_to_chunks(key, many), timeout=20))
    # Assert
    assert too_big == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert too_many == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _serving(server, coordinator)


def test_a_message_over_the_size_limit_is_refused(
    server: BindingServer, coordinator: CoordinatorCerts
) -> None:
    # Prepare
    stub = _stub(server, _creds(coordinator, coordinator.serverapp_token))
    huge = pb.AppendEventRequest(run_id="r", json='{"kind": "x", "pad": "' + "x" * (3 << 20) + '"}')
    # Execute
    code = _code(lambda: stub.AppendEvent(huge, timeout=20))
    # Assert
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _serving(server, coordinator)


def test_a_stream_that_never_ends_is_cut_and_the_server_serves_on(
    server: BindingServer, coordinator: CoordinatorCerts
) -> None:
    # Prepare: a header, then nothing, for longer than max_call_seconds
    stub = _register(server, coordinator, "slow")
    release = threading.Event()

    def never_ending() -> Iterator[pb.ArrayChunk]:
        yield pb.ArrayChunk(header=pb.ArraysHeader(run_id="slow", node_id=1, name="x"))
        release.wait(30)

    start = time.monotonic()
    # Execute
    code = _code(lambda: stub.PutArrays(never_ending(), timeout=30))
    took = time.monotonic() - start
    release.set()
    # Assert
    assert code == grpc.StatusCode.CANCELLED
    assert took < LIMITS.max_call_seconds + 10
    assert _serving(server, coordinator)


def test_followers_cannot_take_every_worker(
    server: BindingServer, coordinator: CoordinatorCerts
) -> None:
    # Prepare: as many followers as allowed, held open
    stub = _stub(server, _creds(coordinator, coordinator.operator_token))
    calls = [
        stub.WatchEvents(pb.WatchEventsRequest(run_id="f", follow=True), timeout=30)
        for _ in range(LIMITS.max_followers)
    ]
    time.sleep(0.5)  # they are open on the server
    # Execute
    extra = _code(
        lambda: list(stub.WatchEvents(pb.WatchEventsRequest(run_id="f", follow=True), timeout=10))
    )
    serving = _serving(server, coordinator)
    for call in calls:
        call.cancel()
    # Assert
    assert extra == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert serving


def test_garbage_bytes_leave_the_server_serving(
    server: BindingServer, coordinator: CoordinatorCerts
) -> None:
    # Prepare
    rng = np.random.default_rng(0)
    payloads = [rng.bytes(4096), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + rng.bytes(1024), b"\x16" * 9]
    # Execute
    for data in payloads:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(data)
            with contextlib.suppress(OSError):
                s.recv(1024)
    # Assert
    assert _serving(server, coordinator)
