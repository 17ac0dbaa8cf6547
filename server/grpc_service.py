"""The BindingService over gRPC: the servicer of ``mmbind.v1`` and :func:`serve`.

:class:`BindingServicer` implements ``protos/v1/binding.proto`` on top of
:class:`~mmbind.server.binding_service.BindingService`, built per request from the
request's ``run_id``: the servicer keeps no state, everything lives in the store
(in-process or Redis), so several servers may share one Redis.

Errors: an :class:`~mmbind.errors.MMBindError` becomes its ``grpc_status`` with the
error's message, and the trailing metadata ``mmbind-error`` names its class so the
client can raise the same class again; anything else is ``INTERNAL`` with a
one-line message (the traceback goes to the log). Messages over
``max_message_bytes`` are refused by gRPC with ``RESOURCE_EXHAUSTED`` (the limit is
in its message); bulk data is chunked well under it.

Access: with an :class:`Authorizer` (``mmbind-server --certs``) every call of the
BindingService carries ``authorization: Bearer TOKEN`` metadata; the token's role decides
which methods it may call (:data:`METHOD_ROLES`): the coordinator's ServerApp may call
every method, the operator (``mmbind run``) only what following and resuming a run needs.
No or an unknown token is UNAUTHENTICATED, a method outside the role PERMISSION_DENIED.
The standard health service stays open (it tells only SERVING or not).

Limits (:class:`Limits`): message size, arrays and bytes per upload stream, seconds per
call (a stream that never ends is cancelled), concurrent ``WatchEvents(follow=True)``
streams (so followers cannot take every worker thread) and concurrent calls (beyond
them gRPC answers RESOURCE_EXHAUSTED at once instead of queueing).
"""

from __future__ import annotations

import functools
import hmac
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from numpy.typing import NDArray

from mmbind.errors import ConfigError, LimitError, MMBindError, ShapeError, UnknownNodeError
from mmbind.protos.v1 import binding_pb2 as pb
from mmbind.protos.v1 import binding_pb2_grpc as pb_grpc
from mmbind.server import serde
from mmbind.server.binding_service import EMBEDDINGS, BindingService
from mmbind.server.store import END_EVENT, BindingStore

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BindingService"].full_name
"""``mmbind.v1.BindingService``: the name the health service reports."""
ERROR_METADATA_KEY = "mmbind-error"
"""Trailing metadata key naming the :class:`MMBindError` class of a failed call."""
BY_CHOICES = ("modality", "label")
EMBEDDING_DTYPES = ("float32", "float16")

F = TypeVar("F", bound=Callable[..., Any])

SERVERAPP = "serverapp"
OPERATOR = "operator"
_BOTH = frozenset({SERVERAPP, OPERATOR})
_SERVERAPP_ONLY = frozenset({SERVERAPP})
METHOD_ROLES: dict[str, frozenset[str]] = {
    # what the run's ServerApp does: nodes' data, bindings, state and results
    "RegisterNode": _SERVERAPP_ONLY,
    "PutArrays": _SERVERAPP_ONLY,
    "GetArrays": _SERVERAPP_ONLY,
    "Bind": _SERVERAPP_ONLY,
    "PutCheckpoint": _SERVERAPP_ONLY,
    "AppendEvent": _SERVERAPP_ONLY,
    "PutResults": _SERVERAPP_ONLY,
    "RecordTelemetry": _SERVERAPP_ONLY,
    # what `mmbind run` needs to follow, collect and resume a run, and to remove one
    "ListNodes": _BOTH,
    "GetCheckpoint": _BOTH,
    "ListRuns": _BOTH,
    "DeleteRun": _BOTH,
    "WatchEvents": _BOTH,
    "GetResults": _BOTH,
    "GetTelemetry": _BOTH,
}
"""The roles allowed to call each method of ``mmbind.v1.BindingService``."""
AUTH_METADATA_KEY = "authorization"


@dataclass(frozen=True)
class Limits:
    """Resource limits of a BindingService server (defaults fit a UTD-MHAD run many times).

    Attributes
    ----------
    max_message_bytes : int
        Largest message received or sent (bulk data travels in chunks <= 1 MiB).
    max_stream_bytes : int
        Largest upload stream (``PutArrays``, ``PutCheckpoint``), all its messages together.
    max_arrays_per_stream : int
        Most arrays one ``PutArrays`` stream may declare.
    max_call_seconds : float
        A call (streams included) still running after this long is cancelled.
    max_followers : int
        Concurrent ``WatchEvents(follow=True)`` streams; more are RESOURCE_EXHAUSTED.
    max_concurrent_rpcs : int
        Calls in progress or queued at once; more are refused at once by gRPC.
    """

    max_message_bytes: int = 8 << 20
    max_stream_bytes: int = 256 << 20
    max_arrays_per_stream: int = 256
    max_call_seconds: float = 900.0
    max_followers: int = 4
    max_concurrent_rpcs: int = 64

    def check(self, max_workers: int) -> None:
        """Refuse limits that cannot work with ``max_workers`` threads."""
        if min(self.max_message_bytes, self.max_stream_bytes, self.max_arrays_per_stream) < 1:
            raise ConfigError(f"limits must be >= 1, got {self}")
        if self.max_call_seconds <= 0:
            raise ConfigError(f"max_call_seconds must be > 0, got {self.max_call_seconds}")
        if not 1 <= self.max_followers < max_workers:
            raise ConfigError(
                f"max_followers must be in 1..{max_workers - 1} (fewer than the "
                f"{max_workers} worker threads, so other calls keep a thread), got "
                f"{self.max_followers}"
            )


class Authorizer:
    """Bearer tokens and their roles; decides whether a call may proceed.

    Parameters
    ----------
    tokens : mapping of str to str
        Role (:data:`SERVERAPP` or :data:`OPERATOR`) to its token.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        unknown = set(tokens) - _BOTH
        if unknown or not tokens or not all(tokens.values()):
            raise ConfigError(
                f"tokens must map roles {sorted(_BOTH)} to non-empty tokens, got roles "
                f"{sorted(tokens)}"
            )
        self._tokens = {role: token.encode() for role, token in tokens.items()}

    def role(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
        """The role of the bearer token in ``metadata``; None for none or an unknown one."""
        given = b""
        for key, value in metadata or ():
            if key.lower() == AUTH_METADATA_KEY:
                text = value.encode() if isinstance(value, str) else bytes(value)
                scheme, _, given = text.partition(b" ")
                if scheme.lower() != b"bearer":
                    given = b""
        if not given:
            return None
        found = None
        for role, token in self._tokens.items():  # constant time, every token compared
            if hmac.compare_digest(given, token):
                found = role
        return found

    def refusal(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may proceed, else its status and message."""
        role = self.role(metadata)
        if role is None:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                f"{method} needs a credential: 'authorization: Bearer TOKEN' metadata "
                "with a token of this deployment",
            )
        if role not in METHOD_ROLES.get(method, frozenset()):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"the {role} credential may not call {method}",
            )
        return None


def _refusing_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, why: str) -> Any:
    """A handler of ``handler``'s kind that aborts every call with ``code``."""

    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, why)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class _AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Applies an :class:`Authorizer` to every BindingService call (before any request
    message is read)."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        service, _, method = str(details.method).lstrip("/").rpartition("/")
        if handler is None or service != SERVICE_NAME:
            return handler  # the health service, or an unknown method (UNIMPLEMENTED)
        refusal = self.authorizer.refusal(method, details.invocation_metadata)
        if refusal is None:
            return handler
        log.warning("refused %s: %s", method, refusal[0].name)
        return _refusing_handler(handler, *refusal)


class _Sized(Protocol):
    def ByteSize(self) -> int: ...


M = TypeVar("M", bound=_Sized)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> NoReturn:
    if isinstance(exc, MMBindError):
        context.set_trailing_metadata(((ERROR_METADATA_KEY, type(exc).__name__),))
        context.abort(grpc.StatusCode[exc.grpc_status], str(exc))
    log.error("%s failed unexpectedly", method, exc_info=exc)
    context.abort(
        grpc.StatusCode.INTERNAL,
        _one_line(f"internal error in {method}: {type(exc).__name__}: {exc}"),
    )
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _deadline(context: grpc.ServicerContext, seconds: float) -> threading.Timer:
    """Cancel the call after ``seconds`` (a stream that never ends frees its thread)."""
    timer = threading.Timer(seconds, context.cancel)
    timer.daemon = True
    timer.start()
    return timer


def _rpc(fn: F) -> F:
    """Map exceptions of a servicer method (unary or streaming) to gRPC statuses, and
    cancel the call after the servicer's ``limits.max_call_seconds``."""
    method = fn.__name__
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            timer = _deadline(context, self.limits.max_call_seconds)
            try:
                yield from fn(self, request, context)
            except Exception as exc:
                _abort(context, method, exc)
            finally:
                timer.cancel()

        return stream  # type: ignore[return-value]

    @functools.wraps(fn)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        timer = _deadline(context, self.limits.max_call_seconds)
        try:
            return fn(self, request, context)
        except Exception as exc:
            _abort(context, method, exc)
        finally:
            timer.cancel()

    return unary  # type: ignore[return-value]


def _counted(messages: Iterable[M], tally: list[int]) -> Iterator[M]:
    """Pass ``messages`` through, adding their wire size to ``tally[0]``."""
    for m in messages:
        tally[0] += m.ByteSize()
        yield m


def _run_id(run_id: str) -> str:
    if not run_id:
        raise ConfigError("the request names no run (empty run_id)")
    return run_id


class BindingServicer(pb_grpc.BindingServiceServicer):
    """``mmbind.v1.BindingService`` over a :class:`~mmbind.server.store.BindingStore`.

    Parameters
    ----------
    store : BindingStore
        Where all state lives.
    poll_interval : float
        How often ``WatchEvents(follow=True)`` looks for events appended by
        other processes (appends through this servicer wake watchers at once).
    max_array_bytes : int
        Cap on the declared size of one uploaded array.
    limits : Limits
        Stream sizes, call duration and followers (see :class:`Limits`).
    """

    def __init__(
        self,
        store: BindingStore,
        *,
        poll_interval: float = 0.2,
        max_array_bytes: int = serde.MAX_ARRAY_BYTES,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.limits = limits or Limits()
        self.max_array_bytes = max_array_bytes
        self._appended = threading.Condition()
        self._stopping = threading.Event()
        self._followers = threading.BoundedSemaphore(self.limits.max_followers)

    def _upload(self, messages: Iterable[M], tally: list[int], method: str) -> Iterator[M]:
        """Count an upload stream's bytes; over ``max_stream_bytes`` is RESOURCE_EXHAUSTED."""
        limit = self.limits.max_stream_bytes
        for m in _counted(messages, tally):
            if tally[0] > limit:
                raise LimitError(
                    f"{method} stream exceeds {limit} bytes (the server's limit per stream)"
                )
            yield m

    def service(self, run_id: str) -> BindingService:
        """The binding logic of one run (stateless: a view of the store)."""
        return BindingService(self.store, _run_id(run_id))

    def stop_watchers(self) -> None:
        """Make every ``WatchEvents`` stream end (at server shutdown)."""
        self._stopping.set()
        with self._appended:
            self._appended.notify_all()

    # ------------------------------------------------------------------ nodes
    @_rpc
    def RegisterNode(
        self, request: pb.RegisterNodeRequest, context: grpc.ServicerContext
    ) -> pb.RegisterNodeResponse:
        if not request.HasField("manifest"):
            raise ConfigError("RegisterNode needs a manifest")
        svc = self.service(request.run_id)
        manifest = serde.manifest_from_proto(request.manifest)
        svc.register(manifest)
        self.store.add_traffic(svc.run_id, manifest.node_id, received=request.ByteSize())
        return pb.RegisterNodeResponse()

    @_rpc
    def ListNodes(
        self, request: pb.ListNodesRequest, context: grpc.ServicerContext
    ) -> pb.ListNodesResponse:
        nodes = self.service(request.run_id).nodes
        return pb.ListNodesResponse(nodes=[serde.manifest_to_proto(n) for n in nodes])

    # ----------------------------------------------------------------- arrays
    def _check_known(self, key: serde.ArraysKey) -> None:
        self.service(key.run_id).node(key.node_id)  # UnknownNodeError before the data

    @_rpc
    def PutArrays(
        self, request_iterator: Iterator[pb.ArrayChunk], context: grpc.ServicerContext
    ) -> pb.PutArraysResponse:
        tally = [0]
        key, arrays = serde.chunks_to_arrays(
            self._upload(request_iterator, tally, "PutArrays"),
            self.max_array_bytes,
            on_header=self._check_known,
            max_arrays=self.limits.max_arrays_per_stream,
            max_total_bytes=self.limits.max_stream_bytes,
        )
        svc = self.service(key.run_id)
        if key.name == EMBEDDINGS:
            self._upload_embeddings(svc, key.node_id, arrays)
        elif not key.name:
            raise ConfigError("PutArrays needs the name of the array set")
        else:
            self.store.put_arrays(svc.run_id, key.node_id, key.name, arrays)
        self.store.incr(svc.run_id, "uploads")
        self.store.add_traffic(svc.run_id, key.node_id, received=tally[0])
        return pb.PutArraysResponse(arrays=len(arrays), bytes_received=tally[0])

    @staticmethod
    def _upload_embeddings(
        svc: BindingService, node_id: int, arrays: dict[str, NDArray[Any]]
    ) -> None:
        extra = sorted(set(arrays) - {"embeddings", "labels"})
        if "embeddings" not in arrays or extra:
            raise ConfigError(
                "an 'embeddings' upload holds the array 'embeddings' and optionally 'labels'; "
                f"got {sorted(arrays)}"
            )
        emb = arrays["embeddings"]
        if emb.dtype.name not in EMBEDDING_DTYPES:
            raise ShapeError(
                f"embeddings of node {node_id} have dtype {emb.dtype.name}; "
                f"expected {' or '.join(EMBEDDING_DTYPES)}"
            )
        labels = arrays.get("labels")
        if labels is not None:
            if not np.issubdtype(labels.dtype, np.integer):
                raise ShapeError(f"labels of node {node_id} have dtype {labels.dtype.name}; "
                                 "expected an integer dtype")  # fmt: skip
            if labels.shape != emb.shape[:1]:
                raise ShapeError(
                    f"labels of node {node_id} have shape {labels.shape}; expected "
                    f"({emb.shape[0] if emb.ndim else '?'},), one per embedding"
                )
        svc.upload(node_id, emb.astype(np.float32, copy=False), labels)

    @_rpc
    def GetArrays(
        self, request: pb.GetArraysRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ArrayChunk]:
        run_id = _run_id(request.run_id)
        arrays = self.store.arrays(run_id, request.node_id, request.name)
        key = serde.ArraysKey(run_id, request.node_id, request.name)
        tally = [0]
        try:
            yield from _counted(serde.arrays_to_chunks(key, arrays), tally)
        finally:
            self.store.add_traffic(run_id, request.node_id, sent=tally[0])

    # ---------------------------------------------------------------- binding
    @_rpc
    def Bind(
        self, request: pb.BindRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.BindChunk]:
        svc = self.service(request.run_id)
        by = request.by or "modality"
        if by not in BY_CHOICES:
            raise ConfigError(f"unknown binding {by!r}; expected one of {', '.join(BY_CHOICES)}")
        requests = [serde.bind_request_from_proto(r) for r in request.requests]
        known = self.store.manifests(svc.run_id)
        for r in requests:
            for node_id in (r.node_id, *r.partners):
                if node_id not in known:  # NOT_FOUND, not a missing upload (UNAVAILABLE)
                    names = ", ".join(str(n) for n in sorted(known)) or "none"
                    raise UnknownNodeError(f"unknown node {node_id}; nodes of this run: {names}")
        results = svc.bind(requests, by=by, seed=int(request.seed))
        self.store.incr(svc.run_id, "bind_calls")
        self.store.incr(svc.run_id, "bindings", sum(len(b.bindings) for b in results))
        for i, result in enumerate(results):
            tally = [0]
            try:
                yield from _counted(serde.bindings_to_chunks(i, result.bindings), tally)
            finally:
                self.store.add_traffic(svc.run_id, result.request.node_id, sent=tally[0])

    # ------------------------------------------------------------ checkpoints
    @_rpc
    def PutCheckpoint(
        self, request_iterator: Iterator[pb.CheckpointChunk], context: grpc.ServicerContext
    ) -> pb.PutCheckpointResponse:
        tally = [0]
        parts = serde.chunks_to_checkpoint(
            self._upload(request_iterator, tally, "PutCheckpoint"), self.limits.max_stream_bytes
        )
        run_id = _run_id(parts.run_id)
        for name, data in parts.blobs.items():
            self.store.put_blob(run_id, name, data)
        if parts.document is not None:
            self.store.put_checkpoint(run_id, parts.document)
        return pb.PutCheckpointResponse(blobs=len(parts.blobs), bytes_received=tally[0])

    @_rpc
    def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.CheckpointChunk]:
        run_id = _run_id(request.run_id)
        names = self.store.blob_names(run_id)
        wanted = names if request.all_blobs else [n for n in request.blob_names if n in names]
        document = self.store.checkpoint(run_id)
        yield from serde.checkpoint_to_chunks(run_id, document, None, names)
        for name in wanted:
            data = self.store.blob(run_id, name)
            if data is not None:  # deleted meanwhile: left out, as unknown names are
                chunks = serde.checkpoint_to_chunks(run_id, None, {name: data})
                next(chunks)  # the header went first
                yield from chunks

    @_rpc
    def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.ServicerContext
    ) -> pb.ListRunsResponse:
        return pb.ListRunsResponse(run_ids=self.store.runs())

    @_rpc
    def DeleteRun(
        self, request: pb.DeleteRunRequest, context: grpc.ServicerContext
    ) -> pb.DeleteRunResponse:
        self.store.delete_run(_run_id(request.run_id))
        return pb.DeleteRunResponse()

    # ----------------------------------------------------------------- events
    @_rpc
    def AppendEvent(
        self, request: pb.AppendEventRequest, context: grpc.ServicerContext
    ) -> pb.AppendEventResponse:
        run_id = _run_id(request.run_id)
        event = serde.load_json(request.json, "event")
        if not isinstance(event.get("kind"), str) or not event["kind"]:
            raise ConfigError('an event is a JSON object with a non-empty string "kind"')
        seq = self.store.append_event(run_id, event)
        with self._appended:
            self._appended.notify_all()
        return pb.AppendEventResponse(seq=seq)

    @_rpc
    def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Event]:
        run_id = _run_id(request.run_id)
        if not request.follow:
            yield from self._watch(request, context, run_id)
            return
        if not self._followers.acquire(blocking=False):
            raise LimitError(
                f"{self.limits.max_followers} WatchEvents(follow=True) streams are open "
                "already (the server's limit); try again later"
            )
        try:
            yield from self._watch(request, context, run_id)
        finally:
            self._followers.release()

    def _watch(
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext, run_id: str
    ) -> Iterator[pb.Event]:
        after = int(request.after_seq)
        if request.follow and after > 0:
            ended = any(e.kind == END_EVENT for e in self.store.events(run_id)[:after])
            if ended:  # the run ended at or before after_seq: nothing more will come
                return
        while True:
            for event in self.store.events(run_id, after):
                yield serde.event_to_proto(event)
                after = event.seq
                if request.follow and event.kind == END_EVENT:
                    return
            if not request.follow or self._stopping.is_set() or not context.is_active():
                return
            with self._appended:
                self._appended.wait(self.poll_interval)

    # ---------------------------------------------------------------- results
    @_rpc
    def PutResults(
        self, request: pb.PutResultsRequest, context: grpc.ServicerContext
    ) -> pb.PutResultsResponse:
        run_id = _run_id(request.run_id)
        self.store.put_results(run_id, serde.load_json(request.json, f"results of run {run_id!r}"))
        return pb.PutResultsResponse()

    @_rpc
    def GetResults(
        self, request: pb.GetResultsRequest, context: grpc.ServicerContext
    ) -> pb.GetResultsResponse:
        results = self.store.results(_run_id(request.run_id))
        if results is None:
            return pb.GetResultsResponse(found=False)
        return pb.GetResultsResponse(found=True, json=serde.dump_json(results, "results"))

    # -------------------------------------------------------------- telemetry
    @_rpc
    def GetTelemetry(
        self, request: pb.GetTelemetryRequest, context: grpc.ServicerContext
    ) -> pb.Telemetry:
        run_id = _run_id(request.run_id)
        counters = self.store.counters(run_id)
        return pb.Telemetry(
            run_id=run_id,
            nodes=len(self.store.manifests(run_id)),
            uploads=max(counters.get("uploads", 0), 0),
            bindings=max(counters.get("bindings", 0), 0),
            events=len(self.store.events(run_id)),
            counters=counters,
            traffic=[
                pb.NodeTraffic(node_id=n, bytes_received=t.received, bytes_sent=t.sent)
                for n, t in sorted(self.store.traffic(run_id).items())
            ],
        )

    @_rpc
    def RecordTelemetry(
        self, request: pb.RecordTelemetryRequest, context: grpc.ServicerContext
    ) -> pb.RecordTelemetryResponse:
        run_id = _run_id(request.run_id)
        values = {
            name: self.store.incr(run_id, name, amount) for name, amount in request.counters.items()
        }
        for t in request.traffic:
            self.store.add_traffic(run_id, t.node_id, t.bytes_received, t.bytes_sent)
        return pb.RecordTelemetryResponse(counters=values)


class BindingServer(grpc.Server):  # type: ignore[misc]  # grpc ships no type information
    """A started gRPC server of the BindingService; ``port`` is the bound port.

    A :class:`grpc.Server` (it delegates to the real one) that also reports its
    address, marks itself NOT_SERVING in the health service on :meth:`stop`,
    and works as a context manager (``with serve(...) as server:``).
    """

    def __init__(
        self,
        server: grpc.Server,
        host: str,
        port: int,
        servicer: BindingServicer,
        health_servicer: health.HealthServicer,
    ) -> None:
        self._server = server
        self.host = host
        self.port = port
        self.servicer = servicer
        self.health = health_servicer

    @property
    def address(self) -> str:
        """``host:port`` to give clients (``[::1]:port`` style for IPv6 hosts)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return int(self._server.add_insecure_port(address))

    def add_secure_port(self, address: str, server_credentials: Any) -> int:
        return int(self._server.add_secure_port(address, server_credentials))

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float | None) -> threading.Event:
        self.health.enter_graceful_shutdown()
        self.servicer.stop_watchers()
        event: threading.Event = self._server.stop(grace)
        return event

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> BindingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(None).wait()


def serve(
    host: str,
    port: int,
    store: BindingStore,
    *,
    max_workers: int = 8,
    max_message_bytes: int = serde.MAX_MESSAGE_BYTES,
    credentials: grpc.ServerCredentials | None = None,
    poll_interval: float = 0.2,
    authorizer: Authorizer | None = None,
    limits: Limits | None = None,
) -> BindingServer:
    """Start the BindingService (and the standard health service) on ``host:port``.

    Parameters
    ----------
    host, port : str, int
        Where to listen; port 0 picks a free port (see ``server.port``).
    store : BindingStore
        Where the service keeps its state.
    max_workers : int
        Threads serving calls; each ``WatchEvents(follow=True)`` stream holds one.
    max_message_bytes : int
        Largest message received or sent (chunks of bulk data are <= 1 MiB); also
        ``limits.max_message_bytes`` when ``limits`` is given.
    credentials : grpc.ServerCredentials, optional
        TLS credentials; insecure when omitted.
    poll_interval : float
        How often followed event streams look for events of other processes.
    authorizer : Authorizer, optional
        Who may call what (bearer tokens); every caller may call everything when omitted
        (the zero-configuration, loopback-only coordinator).
    limits : Limits, optional
        Resource limits (:class:`Limits` defaults when omitted).

    Returns
    -------
    BindingServer
        The started server (a ``grpc.Server``); stop it with ``server.stop(grace)``.

    Raises
    ------
    ConfigError
        If the address cannot be bound.
    """
    if max_workers < 2:
        raise ConfigError(f"max_workers must be >= 2, got {max_workers}")
    limits = limits or Limits(
        max_message_bytes=max_message_bytes, max_followers=max(1, max_workers // 2)
    )
    limits.check(max_workers)
    max_message_bytes = limits.max_message_bytes
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on a busy port fails instead of sharing it
    ]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mmbind-grpc"),
        options=options,
        interceptors=[_AuthInterceptor(authorizer)] if authorizer is not None else None,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    servicer = BindingServicer(store, poll_interval=poll_interval, limits=limits)
    pb_grpc.add_BindingServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}") from None
    if not bound:
        raise ConfigError(f"cannot listen on {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("BindingService listening on %s:%d (store: %r)", host, bound, store)
    return BindingServer(server, host, int(bound), servicer, health_servicer)


__all__ = [
    "AUTH_METADATA_KEY",
    "ERROR_METADATA_KEY",
    "METHOD_ROLES",
    "OPERATOR",
    "SERVERAPP",
    "SERVICE_NAME",
    "Authorizer",
    "BindingServer",
    "BindingServicer",
    "Limits",
    "serve",
]
