"""Serialization at the gRPC edge: numpy arrays, manifests, bindings and documents.

Pure functions between the Python objects of the binding service and the
messages of ``mmbind.v1`` (``protos/v1/binding.proto``). Bulk data travels as
streams of chunks with at most :data:`CHUNK_BYTES` of payload each, so no single
message grows with the number of rows.

Arrays travel as :mod:`mmbind.server.array_codec` encodes them (raw bytes, C order, little
endian, with their dtype name and shape; its names are re-exported here for the gRPC edge's
callers). Everything that comes in
is validated: a bad dtype, a shape that does not match the bytes, a declared size
over the limit or a stream out of order raises :class:`~mmbind.errors.ShapeError`
or :class:`~mmbind.errors.ConfigError` (``INVALID_ARGUMENT`` on the wire) with a
message that says what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from mmbind.binding.pairing import Bindings
from mmbind.errors import ConfigError, LimitError, ShapeError
from mmbind.protos.v1 import binding_pb2 as pb
from mmbind.server.array_codec import (
    DTYPES,
    MAX_ARRAY_BYTES,
    MAX_NDIM,
    array_from_bytes,
    array_to_bytes,
    check_bool_bytes,
    check_dtype,
    declared_nbytes,
    native,
    wire_dtype,
)
from mmbind.server.binding_service import BindRequest, NodeManifest
from mmbind.server.store import Event

__all__ = [
    "BIND_ROWS_PER_CHUNK",
    "CHUNK_BYTES",
    "DTYPES",
    "MAX_ARRAY_BYTES",
    "MAX_BLOB_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_NDIM",
    "ArraysKey",
    "CheckpointParts",
    "array_from_bytes",
    "array_to_bytes",
    "arrays_to_chunks",
    "bind_request_from_proto",
    "bind_request_to_proto",
    "bindings_to_chunks",
    "check_dtype",
    "checkpoint_to_chunks",
    "chunks_to_arrays",
    "chunks_to_bindings",
    "chunks_to_checkpoint",
    "declared_nbytes",
    "dump_json",
    "event_from_proto",
    "event_to_proto",
    "load_json",
    "manifest_dict_to_proto",
    "manifest_from_proto",
    "manifest_to_proto",
    "wire_dtype",
]

CHUNK_BYTES = 1 << 20
"""Most payload bytes in one chunk message (1 MiB)."""
MAX_MESSAGE_BYTES = 8 << 20
"""Largest single gRPC message servers and clients accept (8 MiB)."""
MAX_BLOB_BYTES = 2 << 30
"""Default cap on the declared size of one checkpoint blob (2 GiB)."""
BIND_ROWS_PER_CHUNK = 32_768
"""Bindings per chunk: at most ~29 bytes each on the wire, so a chunk stays under 1 MiB."""


# ---------------------------------------------------------------- documents


def dump_json(document: Mapping[str, Any], what: str) -> str:
    """Encode a JSON object; :class:`ConfigError` naming ``what`` if it is not one."""
    if not isinstance(document, Mapping):
        raise ConfigError(f"{what} must be a JSON object, got {type(document).__name__}")
    try:
        return json.dumps(document, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} is not JSON-serializable: {exc}") from None


def load_json(text: str, what: str) -> dict[str, Any]:
    """Decode a JSON object; :class:`ConfigError` naming ``what`` if ``text`` is not one."""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(doc).__name__}")
    return doc


# ------------------------------------------------------------ array streams


class ArraysKey(NamedTuple):
    """Which array set a stream carries."""

    run_id: str
    node_id: int
    name: str


def _uint64(value: int, what: str) -> int:
    v = int(value)
    if not 0 <= v < 2**64:
        raise ConfigError(f"{what} must be an unsigned 64-bit integer, got {value}")
    return v


def arrays_to_chunks(
    key: ArraysKey, arrays: Mapping[str, NDArray[Any]], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pb.ArrayChunk]:
    """Frame an array set as a chunk stream: header, then per array its header and data.

    Raises
    ------
    ShapeError
        An array has an unsupported dtype (raised before any chunk is yielded).
    """
    if chunk_bytes <= 0:
        raise ConfigError(f"chunk_bytes must be positive, got {chunk_bytes}")
    prepared: list[tuple[str, str, tuple[int, ...], NDArray[np.uint8]]] = []
    for k, value in arrays.items():
        arr = np.asarray(value)
        name = wire_dtype(arr, k)
        flat = np.ascontiguousarray(arr, dtype=DTYPES[name]).reshape(-1).view(np.uint8)
        prepared.append((k, name, tuple(int(d) for d in arr.shape), flat))
    yield pb.ArrayChunk(
        header=pb.ArraysHeader(
            run_id=key.run_id, node_id=_uint64(key.node_id, "node id"), name=key.name
        )
    )
    for k, name, shape, flat in prepared:
        yield pb.ArrayChunk(array=pb.ArrayHeader(key=k, dtype=name, shape=shape))
        for start in range(0, flat.size, chunk_bytes):
            yield pb.ArrayChunk(data=flat[start : start + chunk_bytes].tobytes())


@dataclass
class _Filling:
    key: str
    dtype: str
    out: NDArray[Any]
    raw: NDArray[np.uint8]
    pos: int = 0

    def finish(self) -> NDArray[Any]:
        if self.pos != self.raw.size:
            raise ShapeError(
                f"array {self.key!r} of shape {self.out.shape} and dtype {self.dtype} declared "
                f"{self.raw.size} bytes; the stream carried {self.pos}"
            )
        if self.dtype == "bool":
            check_bool_bytes(self.key, self.raw)
        return native(self.out)


def chunks_to_arrays(
    chunks: Iterable[pb.ArrayChunk],
    max_bytes: int = MAX_ARRAY_BYTES,
    on_header: Callable[[ArraysKey], None] | None = None,
    max_arrays: int | None = None,
    max_total_bytes: int | None = None,
) -> tuple[ArraysKey, dict[str, NDArray[Any]]]:
    """Read back a stream framed by :func:`arrays_to_chunks`.

    Parameters
    ----------
    chunks : iterable of ArrayChunk
        The stream, consumed to its end.
    max_bytes : int
        Cap on each array's declared size (checked before allocating).
    on_header : callable, optional
        Called with the stream's key as soon as the header arrives (e.g. to refuse
        an unknown node before its data is transferred).
    max_arrays : int, optional
        Cap on the number of arrays (a server's limit per stream).
    max_total_bytes : int, optional
        Cap on the sum of all arrays' declared sizes (a server's limit per stream).

    Raises
    ------
    LimitError
        More than ``max_arrays`` arrays, or more than ``max_total_bytes`` declared in all
        (checked before allocating).
    ShapeError
        A declared dtype/shape is invalid or over ``max_bytes``, or an array's
        data is shorter or longer than declared.
    ConfigError
        The stream is out of order (no header first, data before an array
        header, a second header, a repeated key) or empty.
    """
    key: ArraysKey | None = None
    arrays: dict[str, NDArray[Any]] = {}
    current: _Filling | None = None
    declared = 0
    for chunk in chunks:
        part = chunk.WhichOneof("part")
        if key is None:
            if part != "header":
                raise ConfigError(f"an array stream must start with its header, not {part}")
            h = chunk.header
            key = ArraysKey(h.run_id, int(h.node_id), h.name)
            if on_header is not None:
                on_header(key)
            continue
        if part == "header":
            raise ConfigError("an array stream carries a single header")
        if part == "array":
            if current is not None:
                arrays[current.key] = current.finish()
            a = chunk.array
            if a.key in arrays or (current is not None and current.key == a.key):
                raise ConfigError(f"array {a.key!r} appears twice in one stream")
            if max_arrays is not None and len(arrays) + 1 > max_arrays:
                raise LimitError(f"an array stream carries at most {max_arrays} arrays")
            declared += declared_nbytes(a.key, a.dtype, list(a.shape), max_bytes)
            if max_total_bytes is not None and declared > max_total_bytes:
                raise LimitError(
                    f"the arrays of one stream declare {declared} bytes, over the server's "
                    f"limit of {max_total_bytes} bytes per stream"
                )
            out = np.empty(tuple(int(d) for d in a.shape), dtype=DTYPES[a.dtype])
            current = _Filling(a.key, a.dtype, out, out.reshape(-1).view(np.uint8))
        elif part == "data":
            if current is None:
                raise ConfigError("array data came before any array header")
            data = chunk.data
            end = current.pos + len(data)
            if end > current.raw.size:
                raise ShapeError(
                    f"array {current.key!r} of shape {current.out.shape} and dtype "
                    f"{current.dtype} declared {current.raw.size} bytes; the stream carried more"
                )
            current.raw[current.pos : end] = np.frombuffer(data, dtype=np.uint8)
            current.pos = end
        else:
            raise ConfigError("an array chunk carries nothing")
    if key is None:
        raise ConfigError("empty array stream: no header")
    if current is not None:
        arrays[current.key] = current.finish()
    return key, arrays


# ---------------------------------------------------------------- manifests


def manifest_to_proto(manifest: NodeManifest) -> pb.NodeManifest:
    """A :class:`NodeManifest` as its wire message."""
    if manifest.num_samples < 0 or manifest.num_classes < 0:
        raise ConfigError(
            f"manifest of node {manifest.node_id}: num_samples and num_classes must be >= 0"
        )
    if manifest.num_classes >= 2**32:
        raise ConfigError(f"manifest of node {manifest.node_id}: num_classes too large")
    return pb.NodeManifest(
        node_id=_uint64(manifest.node_id, "node id"),
        role=manifest.role,
        modalities=list(manifest.modalities),
        num_samples=_uint64(manifest.num_samples, "num_samples"),
        labelled=manifest.labelled,
        trains=manifest.trains,
        num_classes=manifest.num_classes,
    )


def manifest_from_proto(message: pb.NodeManifest) -> NodeManifest:
    """The :class:`NodeManifest` of a wire message."""
    return NodeManifest(
        node_id=int(message.node_id),
        role=message.role,
        modalities=tuple(message.modalities),
        num_samples=int(message.num_samples),
        labelled=bool(message.labelled),
        trains=bool(message.trains),
        num_classes=int(message.num_classes),
    )


def manifest_dict_to_proto(node_id: int, manifest: Mapping[str, Any]) -> pb.NodeManifest:
    """A manifest document (``NodeManifest.to_dict()``) as its wire message.

    Raises
    ------
    ConfigError
        A field is missing or invalid, or the document's ``node_id`` is not ``node_id``.
    """
    try:
        parsed = NodeManifest.from_dict({"node_id": node_id, **manifest})
    except KeyError as exc:
        raise ConfigError(f"manifest of node {node_id} lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"manifest of node {node_id} is invalid: {exc}") from None
    if parsed.node_id != node_id:
        raise ConfigError(f"manifest says node {parsed.node_id} but was stored for node {node_id}")
    return manifest_to_proto(parsed)


# ----------------------------------------------------------------- bindings


def bind_request_to_proto(request: BindRequest) -> pb.NodeBindRequest:
    return pb.NodeBindRequest(
        node_id=_uint64(request.node_id, "node id"),
        modality=request.modality,
        partners=[_uint64(p, "partner node id") for p in request.partners],
    )


def bind_request_from_proto(message: pb.NodeBindRequest) -> BindRequest:
    return BindRequest(
        node_id=int(message.node_id),
        modality=message.modality,
        partners=tuple(int(p) for p in message.partners),
    )


def bindings_to_chunks(
    request_index: int, bindings: Bindings, rows: int = BIND_ROWS_PER_CHUNK
) -> Iterator[pb.BindChunk]:
    """One request's bindings as chunks of at most ``rows`` bindings (at least one chunk)."""
    if rows <= 0:
        raise ConfigError(f"rows per chunk must be positive, got {rows}")
    total = len(bindings)
    for start in range(0, max(total, 1), rows):
        stop = min(start + rows, total)
        yield pb.BindChunk(
            request_index=request_index,
            total=total,
            query_index=bindings.query_index[start:stop].tolist(),
            partner_node=bindings.partner_node[start:stop].tolist(),
            partner_index=bindings.partner_index[start:stop].tolist(),
            similarity=bindings.similarity[start:stop].tolist(),
        )


@dataclass
class _BindingParts:
    total: int
    columns: list[list[NDArray[Any]]] = field(default_factory=lambda: [[], [], [], []])
    count: int = 0


_BINDING_DTYPES = (np.int64, np.int64, np.int64, np.float32)


def chunks_to_bindings(
    chunks: Iterable[pb.BindChunk], partner_counts: Sequence[int]
) -> list[Bindings]:
    """Read back the bindings of ``len(partner_counts)`` requests, in request order.

    Parameters
    ----------
    chunks : iterable of BindChunk
        The stream of :func:`bindings_to_chunks` chunks for request 0, 1, ...
    partner_counts : sequence of int
        Number of partners of each request (bounds ``partner_node``).

    Raises
    ------
    ShapeError
        Chunks out of order, columns of different lengths, a total that does
        not match, a partner index out of range, or a request without chunks.
    """
    got: list[_BindingParts] = []
    for chunk in chunks:
        i = int(chunk.request_index)
        if i == len(got):
            if i >= len(partner_counts):
                raise ShapeError(f"bindings for request {i}; only {len(partner_counts)} were sent")
            got.append(_BindingParts(int(chunk.total)))
        elif i != len(got) - 1:
            raise ShapeError(f"binding chunks out of order: request {i} after {len(got) - 1}")
        entry = got[i]
        fields = (chunk.query_index, chunk.partner_node, chunk.partner_index, chunk.similarity)
        n = len(fields[0])
        if any(len(f) != n for f in fields) or int(chunk.total) != entry.total:
            raise ShapeError(f"malformed binding chunk for request {i}")
        cols = [np.fromiter(f, dtype, n) for f, dtype in zip(fields, _BINDING_DTYPES, strict=True)]
        if n and int(cols[1].max()) >= partner_counts[i]:
            raise ShapeError(
                f"binding of request {i} names partner {int(cols[1].max())}; "
                f"the request has {partner_counts[i]} partners"
            )
        for column, values in zip(entry.columns, cols, strict=True):
            column.append(values)
        entry.count += n
    if len(got) != len(partner_counts):
        raise ShapeError(f"bindings came for {len(got)} of {len(partner_counts)} requests")
    out: list[Bindings] = []
    for i, entry in enumerate(got):
        if entry.count != entry.total:
            raise ShapeError(f"request {i} announced {entry.total} bindings; {entry.count} arrived")
        q, pn, pi, sim = (
            np.concatenate(c) if c else np.zeros(0, dtype)
            for c, dtype in zip(entry.columns, _BINDING_DTYPES, strict=True)
        )
        out.append(Bindings(q, pn, pi, sim))
    return out


# -------------------------------------------------------------- checkpoints


@dataclass
class CheckpointParts:
    """What a checkpoint stream carries."""

    run_id: str
    document: dict[str, Any] | None
    blobs: dict[str, bytes]
    blob_names: list[str] = field(default_factory=list)
    """``GetCheckpoint``: every blob the run holds (also those not sent)."""


def checkpoint_to_chunks(
    run_id: str,
    document: Mapping[str, Any] | None,
    blobs: Mapping[str, bytes] | None = None,
    blob_names: Sequence[str] = (),
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[pb.CheckpointChunk]:
    """Frame a checkpoint: header (with the document, if any), then each blob in chunks."""
    if chunk_bytes <= 0:
        raise ConfigError(f"chunk_bytes must be positive, got {chunk_bytes}")
    header = pb.CheckpointHeader(
        run_id=run_id, has_document=document is not None, blob_names=list(blob_names)
    )
    if document is not None:
        header.document_json = dump_json(document, f"checkpoint of run {run_id!r}")
    yield pb.CheckpointChunk(header=header)
    for name, data in (blobs or {}).items():
        view = memoryview(data).cast("B")
        yield pb.CheckpointChunk(blob=pb.BlobHeader(name=name, size=len(view)))
        for start in range(0, len(view), chunk_bytes):
            yield pb.CheckpointChunk(data=bytes(view[start : start + chunk_bytes]))


def chunks_to_checkpoint(
    chunks: Iterable[pb.CheckpointChunk], max_blob_bytes: int = MAX_BLOB_BYTES
) -> CheckpointParts:
    """Read back a stream framed by :func:`checkpoint_to_chunks`.

    Raises
    ------
    ConfigError
        Out-of-order stream, invalid JSON document, repeated blob name.
    ShapeError
        A blob's data does not match its declared size, or the size is over
        ``max_blob_bytes``.
    """
    parts: CheckpointParts | None = None
    name: str | None = None
    buf = bytearray()
    size = 0

    def finish() -> None:
        if parts is not None and name is not None:
            if len(buf) != size:
                raise ShapeError(
                    f"blob {name!r} declared {size} bytes; the stream carried {len(buf)}"
                )
            parts.blobs[name] = bytes(buf)

    for chunk in chunks:
        part = chunk.WhichOneof("part")
        if parts is None:
            if part != "header":
                raise ConfigError(f"a checkpoint stream must start with its header, not {part}")
            h = chunk.header
            doc = (
                load_json(h.document_json, f"checkpoint of run {h.run_id!r}")
                if h.has_document
                else None
            )
            parts = CheckpointParts(h.run_id, doc, {}, list(h.blob_names))
            continue
        if part == "header":
            raise ConfigError("a checkpoint stream carries a single header")
        if part == "blob":
            finish()
            b = chunk.blob
            if not b.name:
                raise ConfigError("a checkpoint blob needs a name")
            if b.name in parts.blobs or b.name == name:
                raise ConfigError(f"blob {b.name!r} appears twice in one checkpoint stream")
            if b.size > max_blob_bytes:
                raise ShapeError(
                    f"blob {b.name!r} declares {b.size} bytes, over the limit of "
                    f"{max_blob_bytes} bytes"
                )
            name, size, buf = b.name, int(b.size), bytearray()
        elif part == "data":
            if name is None:
                raise ConfigError("checkpoint data came before any blob header")
            if len(buf) + len(chunk.data) > size:
                raise ShapeError(f"blob {name!r} declared {size} bytes; the stream carried more")
            buf += chunk.data
        else:
            raise ConfigError("a checkpoint chunk carries nothing")
    if parts is None:
        raise ConfigError("empty checkpoint stream: no header")
    finish()
    return parts


# ------------------------------------------------------------------- events


def event_to_proto(event: Event) -> pb.Event:
    return pb.Event(seq=event.seq, kind=event.kind, json=dump_json(event.data, "event"))


def event_from_proto(message: pb.Event) -> Event:
    return Event(int(message.seq), load_json(message.json, f"event {message.seq}"))
