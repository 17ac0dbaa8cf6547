# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeManifest(_message.Message):
    __slots__ = ("node_id", "role", "modalities", "num_samples", "labelled", "trains", "num_classes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    TRAINS_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    role: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    num_samples: int
    labelled: bool
    trains: bool
    num_classes: int
    def __init__(self, node_id: _Optional[int] = ..., role: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., num_samples: _Optional[int] = ..., labelled: bool = ..., trains: bool = ..., num_classes: _Optional[int] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("run_id", "manifest")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    manifest: NodeManifest
    def __init__(self, run_id: _Optional[str] = ..., manifest: _Optional[_Union[NodeManifest, _Mapping]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeManifest]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeManifest, _Mapping]]] = ...) -> None: ...

class ArraysHeader(_message.Message):
    __slots__ = ("run_id", "node_id", "name")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_id: int
    name: str
    def __init__(self, run_id: _Optional[str] = ..., node_id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class ArrayHeader(_message.Message):
    __slots__ = ("key", "dtype", "shape")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ArrayChunk(_message.Message):
    __slots__ = ("header", "array", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ArraysHeader
    array: ArrayHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ArraysHeader, _Mapping]] = ..., array: _Optional[_Union[ArrayHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutArraysResponse(_message.Message):
    __slots__ = ("arrays", "bytes_received")
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    arrays: int
    bytes_received: int
    def __init__(self, arrays: _Optional[int] = ..., bytes_received: _Optional[int] = ...) -> None: ...

class GetArraysRequest(_message.Message):
    __slots__ = ("run_id", "node_id", "name")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_id: int
    name: str
    def __init__(self, run_id: _Optional[str] = ..., node_id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class NodeBindRequest(_message.Message):
    __slots__ = ("node_id", "modality", "partners")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    PARTNERS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    modality: str
    partners: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node_id: _Optional[int] = ..., modality: _Optional[str] = ..., partners: _Optional[_Iterable[int]] = ...) -> None: ...

class BindRequest(_message.Message):
    __slots__ = ("run_id", "by", "seed", "requests")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    by: str
    seed: int
    requests: _containers.RepeatedCompositeFieldContainer[NodeBindRequest]
    def __init__(self, run_id: _Optional[str] = ..., by: _Optional[str] = ..., seed: _Optional[int] = ..., requests: _Optional[_Iterable[_Union[NodeBindRequest, _Mapping]]] = ...) -> None: ...

class BindChunk(_message.Message):
    __slots__ = ("request_index", "total", "query_index", "partner_node", "partner_index", "similarity")
    REQUEST_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    QUERY_INDEX_FIELD_NUMBER: _ClassVar[int]
    PARTNER_NODE_FIELD_NUMBER: _ClassVar[int]
    PARTNER_INDEX_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    request_index: int
    total: int
    query_index: _containers.RepeatedScalarFieldContainer[int]
    partner_node: _containers.RepeatedScalarFieldContainer[int]
    partner_index: _containers.RepeatedScalarFieldContainer[int]
    similarity: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, request_index: _Optional[int] = ..., total: _Optional[int] = ..., query_index: _Optional[_Iterable[int]] = ..., partner_node: _Optional[_Iterable[int]] = ..., partner_index: _Optional[_Iterable[int]] = ..., similarity: _Optional[_Iterable[float]] = ...) -> None: ...

class CheckpointHeader(_message.Message):
    __slots__ = ("run_id", "has_document", "document_json", "blob_names")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    BLOB_NAMES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    has_document: bool
    document_json: str
    blob_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., has_document: bool = ..., document_json: _Optional[str] = ..., blob_names: _Optional[_Iterable[str]] = ...) -> None: ...

class BlobHeader(_message.Message):
    __slots__ = ("name", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class CheckpointChunk(_message.Message):
    __slots__ = ("header", "blob", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: CheckpointHeader
    blob: BlobHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[CheckpointHeader, _Mapping]] = ..., blob: _Optional[_Union[BlobHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutCheckpointResponse(_message.Message):
    __slots__ = ("blobs", "bytes_received")
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    blobs: int
    bytes_received: int
    def __init__(self, blobs: _Optional[int] = ..., bytes_received: _Optional[int] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("run_id", "blob_names", "all_blobs")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BLOB_NAMES_FIELD_NUMBER: _ClassVar[int]
    ALL_BLOBS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    blob_names: _containers.RepeatedScalarFieldContainer[str]
    all_blobs: bool
    def __init__(self, run_id: _Optional[str] = ..., blob_names: _Optional[_Iterable[str]] = ..., all_blobs: bool = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class DeleteRunResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "kind", "json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    json: str
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class AppendEventRequest(_message.Message):
    __slots__ = ("run_id", "json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    json: str
    def __init__(self, run_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class AppendEventResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("run_id", "after_seq", "follow")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_seq: int
    follow: bool
    def __init__(self, run_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., follow: bool = ...) -> None: ...

class PutResultsRequest(_message.Message):
    __slots__ = ("run_id", "json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    json: str
    def __init__(self, run_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class PutResultsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetResultsRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetResultsResponse(_message.Message):
    __slots__ = ("found", "json")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    found: bool
    json: str
    def __init__(self, found: bool = ..., json: _Optional[str] = ...) -> None: ...

class NodeTraffic(_message.Message):
    __slots__ = ("node_id", "bytes_received", "bytes_sent")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    bytes_received: int
    bytes_sent: int
    def __init__(self, node_id: _Optional[int] = ..., bytes_received: _Optional[int] = ..., bytes_sent: _Optional[int] = ...) -> None: ...

class GetTelemetryRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("run_id", "nodes", "uploads", "bindings", "events", "counters", "traffic")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    nodes: int
    uploads: int
    bindings: int
    events: int
    counters: _containers.ScalarMap[str, int]
    traffic: _containers.RepeatedCompositeFieldContainer[NodeTraffic]
    def __init__(self, run_id: _Optional[str] = ..., nodes: _Optional[int] = ..., uploads: _Optional[int] = ..., bindings: _Optional[int] = ..., events: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., traffic: _Optional[_Iterable[_Union[NodeTraffic, _Mapping]]] = ...) -> None: ...

class RecordTelemetryRequest(_message.Message):
    __slots__ = ("run_id", "counters", "traffic")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    counters: _containers.ScalarMap[str, int]
    traffic: _containers.RepeatedCompositeFieldContainer[NodeTraffic]
    def __init__(self, run_id: _Optional[str] = ..., counters: _Optional[_Mapping[str, int]] = ..., traffic: _Optional[_Iterable[_Union[NodeTraffic, _Mapping]]] = ...) -> None: ...

class RecordTelemetryResponse(_message.Message):
    __slots__ = ("counters",)
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    counters: _containers.ScalarMap[str, int]
    def __init__(self, counters: _Optional[_Mapping[str, int]] = ...) -> None: ...
