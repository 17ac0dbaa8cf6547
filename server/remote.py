"""The client side of the BindingService: a store and a service reached over gRPC.

* :class:`RemoteBindingStore` implements :class:`~mmbind.server.store.BindingStore`
  over gRPC, so code written for a store runs against a remote BindingService.
* :class:`RemoteBindingService` has the public API of
  :class:`~mmbind.server.binding_service.BindingService` (``register``, ``nodes``,
  ``node``, ``upload``, ``bind``); ``bind`` runs on the server.
* :func:`wait_until_ready` waits for the server's health service to say SERVING.

gRPC errors come back as the :class:`~mmbind.errors.MMBindError` the server raised
(named by the ``mmbind-error`` trailing metadata), with the server's message; a
server that does not answer is a :class:`~mmbind.errors.StoreError` saying "binding
service at ADDRESS is unreachable". Calls that fail because the server cannot be
reached are retried ``retries`` times with exponential backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from numpy.typing import NDArray

from mmbind import errors
from mmbind.errors import (
    AuthenticationError,
    BindingError,
    ConfigError,
    FederationError,
    MMBindError,
    PermissionDeniedError,
    StoreError,
    UnknownNodeError,
)
from mmbind.protos.v1 import binding_pb2 as pb
from mmbind.protos.v1 import binding_pb2_grpc as pb_grpc
from mmbind.server import serde
from mmbind.server.binding_service import EMBEDDINGS, BindRequest, NodeBinding, NodeManifest
from mmbind.server.store import Event, NodeTraffic

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BindingService"].full_name
ERROR_METADATA_KEY = "mmbind-error"

_BY_STATUS: dict[grpc.StatusCode, type[MMBindError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: ConfigError,
    grpc.StatusCode.OUT_OF_RANGE: ConfigError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ConfigError,
    grpc.StatusCode.NOT_FOUND: UnknownNodeError,
    grpc.StatusCode.FAILED_PRECONDITION: BindingError,
    grpc.StatusCode.UNAVAILABLE: StoreError,
    grpc.StatusCode.DEADLINE_EXCEEDED: StoreError,
    grpc.StatusCode.ABORTED: FederationError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def _channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def _server_error_class(exc: grpc.RpcError) -> type[MMBindError] | None:
    """The mmbind error class the server named in the trailing metadata, if any."""
    try:
        metadata = exc.trailing_metadata() or ()
    except Exception:  # not a call error (e.g. a channel-level failure)
        return None
    for key, value in metadata:
        if key == ERROR_METADATA_KEY:
            cls = getattr(errors, str(value), None)
            if isinstance(cls, type) and issubclass(cls, MMBindError):
                return cls
    return None


def error_from_rpc(exc: grpc.RpcError, address: str) -> MMBindError:
    """The :class:`MMBindError` a failed call stands for.

    The class the server raised when it says so, else one chosen by status code:
    UNAVAILABLE -> :class:`StoreError` ("binding service at ADDRESS is
    unreachable"), NOT_FOUND -> :class:`UnknownNodeError`, FAILED_PRECONDITION ->
    :class:`BindingError`, INVALID_ARGUMENT / RESOURCE_EXHAUSTED ->
    :class:`ConfigError`, DEADLINE_EXCEEDED -> :class:`StoreError`, other ->
    :class:`MMBindError`.
    """
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    details = details or (code.name if code is not None else "no details")
    cls = _server_error_class(exc)
    if cls is not None:
        return cls(details)
    if code == grpc.StatusCode.UNAVAILABLE:
        return StoreError(f"binding service at {address} is unreachable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return StoreError(f"binding service at {address} did not answer in time: {details}")
    fallback = _BY_STATUS.get(code, MMBindError)
    return fallback(f"binding service at {address}: {code.name if code else 'error'}: {details}")


def _is_transport_failure(exc: grpc.RpcError) -> bool:
    """True when the call never reached the service (worth retrying)."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    return code == grpc.StatusCode.UNAVAILABLE and _server_error_class(exc) is None


def channel_credentials(ca_pem: bytes, token: str | None = None) -> grpc.ChannelCredentials:
    """TLS trusting only ``ca_pem`` (the deployment's CA), with ``token`` as a bearer
    credential on every call (``authorization: Bearer TOKEN``) when given."""
    tls = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    if not token:
        return tls
    return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))


def _open_channel(
    address: str, credentials: grpc.ChannelCredentials | None, options: Any = None
) -> grpc.Channel:
    if credentials is not None:
        return grpc.secure_channel(address, credentials, options=options)
    return grpc.insecure_channel(address, options=options)


def wait_until_ready(
    address: str, timeout: float = 30.0, *, credentials: grpc.ChannelCredentials | None = None
) -> None:
    """Wait until the BindingService at ``address`` reports SERVING.

    Raises
    ------
    StoreError
        If it does not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    with _open_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreError(
                    f"binding service at {address} is not ready after {timeout:g}s: {last}"
                )
            try:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                    timeout=min(remaining, 2.0),
                    wait_for_ready=True,
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                last = f"health status {status}"
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))


class RemoteBindingStore:
    """A :class:`~mmbind.server.store.BindingStore` served by a BindingService over gRPC.

    Parameters
    ----------
    address : str
        ``host:port`` of the BindingService.
    timeout : float
        Deadline of each small call, in seconds.
    retries : int
        Retries of a call that could not reach the server (UNAVAILABLE without
        an answer from the service); errors the service raised are not retried.
    backoff : float
        First wait between retries, doubled each time.
    bulk_timeout : float
        Deadline of calls that stream arrays, bindings or checkpoints.
    credentials : grpc.ChannelCredentials, optional
        TLS (and bearer-token) credentials, see :func:`channel_credentials`; an
        insecure channel when omitted.
    max_message_bytes : int
        Largest message sent or received (chunks are at most 1 MiB).

    Notes
    -----
    ``put_arrays`` with ``name="embeddings"`` goes through the service's upload
    checks (the node's sample count, finite float32/float16 values).
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        bulk_timeout: float = 600.0,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = serde.MAX_MESSAGE_BYTES,
    ) -> None:
        if not address or address.count(":") < 1:
            raise ConfigError(f"binding service address must be host:port, got {address!r}")
        if timeout <= 0 or bulk_timeout <= 0 or retries < 0 or backoff < 0:
            raise ConfigError(
                f"timeouts must be > 0, retries and backoff >= 0; got timeout={timeout}, "
                f"bulk_timeout={bulk_timeout}, retries={retries}, backoff={backoff}"
            )
        self.address = address
        self.timeout = float(timeout)
        self.bulk_timeout = float(bulk_timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._channel = _open_channel(address, credentials, _channel_options(max_message_bytes))
        self._stub = pb_grpc.BindingServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"RemoteBindingStore({self.address!r})"

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> RemoteBindingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except grpc.RpcError as exc:
                if _is_transport_failure(exc) and attempt < self.retries:
                    delay = self.backoff * 2**attempt
                    log.warning(
                        "binding service at %s unreachable (%s); retry %d/%d of %s in %.2fs",
                        self.address,
                        exc.details(),
                        attempt + 1,
                        self.retries,
                        what,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                raise error_from_rpc(exc, self.address) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --------------------------------------------------------------- manifests
    def put_manifest(self, run_id: str, node_id: int, manifest: Mapping[str, Any]) -> None:
        request = pb.RegisterNodeRequest(
            run_id=run_id, manifest=serde.manifest_dict_to_proto(node_id, manifest)
        )
        self._call("RegisterNode", lambda: self._stub.RegisterNode(request, timeout=self.timeout))

    def manifests(self, run_id: str) -> dict[int, dict[str, Any]]:
        reply: pb.ListNodesResponse = self._call(
            "ListNodes",
            lambda: self._stub.ListNodes(pb.ListNodesRequest(run_id=run_id), timeout=self.timeout),
        )
        return {int(m.node_id): serde.manifest_from_proto(m).to_dict() for m in reply.nodes}

    # ------------------------------------------------------------------ arrays
    def put_arrays(
        self, run_id: str, node_id: int, name: str, arrays: Mapping[str, NDArray[Any]]
    ) -> None:
        key = serde.ArraysKey(run_id, node_id, name)
        next(serde.arrays_to_chunks(key, {}))  # a bad node id or dtype fails before any call
        for k, v in arrays.items():
            serde.wire_dtype(np.asarray(v), k)

        def put() -> None:
            chunks = serde.arrays_to_chunks(key, arrays)
            self._stub.PutArrays(chunks, timeout=self.bulk_timeout)

        self._call("PutArrays", put)

    def arrays(self, run_id: str, node_id: int, name: str) -> dict[str, NDArray[Any]]:
        request = pb.GetArraysRequest(run_id=run_id, node_id=node_id, name=name)

        def get() -> dict[str, NDArray[Any]]:
            stream = self._stub.GetArrays(request, timeout=self.bulk_timeout)
            key, arrays = serde.chunks_to_arrays(stream)
            if key != serde.ArraysKey(run_id, node_id, name):
                raise StoreError(f"binding service at {self.address} sent arrays of {key}")
            return arrays

        return self._call("GetArrays", get)

    # ------------------------------------------------------------- checkpoints
    def _get_checkpoint(self, request: pb.GetCheckpointRequest) -> serde.CheckpointParts:
        def get() -> serde.CheckpointParts:
            stream = self._stub.GetCheckpoint(request, timeout=self.bulk_timeout)
            return serde.chunks_to_checkpoint(stream)

        return self._call("GetCheckpoint", get)

    def _put_checkpoint(
        self, run_id: str, document: Mapping[str, Any] | None, blobs: Mapping[str, bytes]
    ) -> None:
        list(serde.checkpoint_to_chunks(run_id, document, {}))  # JSON errors before any call

        def put() -> None:
            chunks = serde.checkpoint_to_chunks(run_id, document, blobs)
            self._stub.PutCheckpoint(chunks, timeout=self.bulk_timeout)

        self._call("PutCheckpoint", put)

    def put_checkpoint(self, run_id: str, checkpoint: Mapping[str, Any]) -> None:
        self._put_checkpoint(run_id, checkpoint, {})

    def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        return self._get_checkpoint(pb.GetCheckpointRequest(run_id=run_id)).document

    def put_blob(self, run_id: str, name: str, data: bytes) -> None:
        if not name:
            raise ConfigError("a checkpoint blob needs a name")
        self._put_checkpoint(run_id, None, {name: data})

    def blob(self, run_id: str, name: str) -> bytes | None:
        parts = self._get_checkpoint(pb.GetCheckpointRequest(run_id=run_id, blob_names=[name]))
        return parts.blobs.get(name)

    def blob_names(self, run_id: str) -> list[str]:
        return sorted(self._get_checkpoint(pb.GetCheckpointRequest(run_id=run_id)).blob_names)

    def runs(self) -> list[str]:
        reply: pb.ListRunsResponse = self._call(
            "ListRuns", lambda: self._stub.ListRuns(pb.ListRunsRequest(), timeout=self.timeout)
        )
        return sorted(reply.run_ids)

    # ---------------------------------------------------------- events, results
    def append_event(self, run_id: str, event: Mapping[str, Any]) -> int:
        request = pb.AppendEventRequest(run_id=run_id, json=serde.dump_json(event, "event"))
        reply: pb.AppendEventResponse = self._call(
            "AppendEvent", lambda: self._stub.AppendEvent(request, timeout=self.timeout)
        )
        return int(reply.seq)

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        request = pb.WatchEventsRequest(run_id=run_id, after_seq=max(after_seq, 0), follow=False)
        return self._call(
            "WatchEvents",
            lambda: [
                serde.event_from_proto(e)
                for e in self._stub.WatchEvents(request, timeout=self.bulk_timeout)
            ],
        )

    def watch_events(
        self, run_id: str, after_seq: int = 0, *, follow: bool = True, timeout: float | None = None
    ) -> Iterator[Event]:
        """Stream the run's events after ``after_seq``; with ``follow``, until kind "end".

        Closing the iterator (or leaving the ``for`` loop) cancels the call.

        Raises
        ------
        StoreError
            If the service cannot be reached or the stream breaks (no retry:
            resume with ``after_seq`` = the last seq seen).
        """
        request = pb.WatchEventsRequest(run_id=run_id, after_seq=max(after_seq, 0), follow=follow)
        call = self._stub.WatchEvents(request, timeout=timeout)
        try:
            for message in call:
                yield serde.event_from_proto(message)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.address) from None
        finally:
            call.cancel()

    def put_results(self, run_id: str, results: Mapping[str, Any]) -> None:
        request = pb.PutResultsRequest(
            run_id=run_id, json=serde.dump_json(results, f"results of run {run_id!r}")
        )
        self._call("PutResults", lambda: self._stub.PutResults(request, timeout=self.timeout))

    def results(self, run_id: str) -> dict[str, Any] | None:
        reply: pb.GetResultsResponse = self._call(
            "GetResults",
            lambda: self._stub.GetResults(
                pb.GetResultsRequest(run_id=run_id), timeout=self.timeout
            ),
        )
        return serde.load_json(reply.json, f"results of run {run_id!r}") if reply.found else None

    # --------------------------------------------------------------- telemetry
    def telemetry(self, run_id: str) -> pb.Telemetry:
        """The run's telemetry message (nodes, uploads, bindings, events, traffic)."""
        request = pb.GetTelemetryRequest(run_id=run_id)
        reply: pb.Telemetry = self._call(
            "GetTelemetry", lambda: self._stub.GetTelemetry(request, timeout=self.timeout)
        )
        return reply

    def add_traffic(self, run_id: str, node_id: int, received: int = 0, sent: int = 0) -> None:
        request = pb.RecordTelemetryRequest(
            run_id=run_id,
            traffic=[pb.NodeTraffic(node_id=node_id, bytes_received=received, bytes_sent=sent)],
        )
        self._call(
            "RecordTelemetry", lambda: self._stub.RecordTelemetry(request, timeout=self.timeout)
        )

    def traffic(self, run_id: str) -> dict[int, NodeTraffic]:
        return {
            int(t.node_id): NodeTraffic(int(t.bytes_received), int(t.bytes_sent))
            for t in self.telemetry(run_id).traffic
        }

    def incr(self, run_id: str, counter: str, amount: int = 1) -> int:
        request = pb.RecordTelemetryRequest(run_id=run_id, counters={counter: int(amount)})
        reply: pb.RecordTelemetryResponse = self._call(
            "RecordTelemetry", lambda: self._stub.RecordTelemetry(request, timeout=self.timeout)
        )
        return int(reply.counters[counter])

    def counters(self, run_id: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.telemetry(run_id).counters.items()}

    def delete_run(self, run_id: str) -> None:
        request = pb.DeleteRunRequest(run_id=run_id)
        self._call("DeleteRun", lambda: self._stub.DeleteRun(request, timeout=self.timeout))


class RemoteBindingService:
    """:class:`~mmbind.server.binding_service.BindingService` of one run, served over gRPC.

    Parameters
    ----------
    address : str
        ``host:port`` of the BindingService.
    run_id : str
        The run.
    store : RemoteBindingStore, optional
        A store (channel) to share; one is opened on ``address`` when omitted.
    **options
        Passed to :class:`RemoteBindingStore` (``timeout``, ``retries``, ...).
    """

    def __init__(
        self, address: str, run_id: str, *, store: RemoteBindingStore | None = None, **options: Any
    ) -> None:
        if not run_id:
            raise ConfigError("a run id is needed (got an empty one)")
        self.store = store if store is not None else RemoteBindingStore(address, **options)
        self.address = address
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"RemoteBindingService({self.address!r}, {self.run_id!r})"

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RemoteBindingService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, manifest: NodeManifest) -> None:
        """Record a node's phase-1 manifest."""
        request = pb.RegisterNodeRequest(
            run_id=self.run_id, manifest=serde.manifest_to_proto(manifest)
        )
        stub = self.store._stub
        self.store._call(
            "RegisterNode", lambda: stub.RegisterNode(request, timeout=self.store.timeout)
        )

    @property
    def nodes(self) -> list[NodeManifest]:
        """The run's registered nodes, by node id."""
        stub = self.store._stub
        reply: pb.ListNodesResponse = self.store._call(
            "ListNodes",
            lambda: stub.ListNodes(
                pb.ListNodesRequest(run_id=self.run_id), timeout=self.store.timeout
            ),
        )
        return sorted((serde.manifest_from_proto(m) for m in reply.nodes), key=lambda n: n.node_id)

    def node(self, node_id: int) -> NodeManifest:
        """One node's manifest; :class:`UnknownNodeError` if it is not registered."""
        nodes = self.nodes
        for n in nodes:
            if n.node_id == node_id:
                return n
        known = ", ".join(str(n.node_id) for n in nodes) or "none"
        raise UnknownNodeError(f"unknown node {node_id}; nodes of this run: {known}")

    def upload(
        self, node_id: int, embeddings: NDArray[np.float32], labels: NDArray[np.int64] | None = None
    ) -> None:
        """Send a node's shared-modality embeddings ``(N, d)`` (and label ids).

        float16 embeddings travel as float16 (half the bytes); others as float32.
        """
        emb = np.asarray(embeddings)
        if emb.dtype != np.float16:
            emb = emb.astype(np.float32, copy=False)
        arrays: dict[str, NDArray[Any]] = {"embeddings": emb}
        if labels is not None:
            arrays["labels"] = np.asarray(labels).astype(np.int64, copy=False)
        self.store.put_arrays(self.run_id, node_id, EMBEDDINGS, arrays)

    def bind(
        self, requests: Sequence[BindRequest], *, by: str = "modality", seed: int = 0
    ) -> list[NodeBinding]:
        """Compute every request's bindings on the server (see ``BindingService.bind``)."""
        message = pb.BindRequest(
            run_id=self.run_id,
            by=by,
            seed=int(seed),
            requests=[serde.bind_request_to_proto(r) for r in requests],
        )
        counts = [len(r.partners) for r in requests]
        stub = self.store._stub

        def call() -> list[NodeBinding]:
            stream = stub.Bind(message, timeout=self.store.bulk_timeout)
            tables = serde.chunks_to_bindings(stream, counts)
            return [NodeBinding(r, b) for r, b in zip(requests, tables, strict=True)]

        return self.store._call("Bind", call)
