"""Typed stub of ``binding_pb2_grpc`` (written by protos/generate.py; do not edit)."""

from collections.abc import Iterator

import grpc

from mmbind.protos.v1 import binding_pb2


class BindingServiceStub:
    def __init__(self, channel: grpc.Channel) -> None: ...
    RegisterNode: grpc.UnaryUnaryMultiCallable
    ListNodes: grpc.UnaryUnaryMultiCallable
    PutArrays: grpc.StreamUnaryMultiCallable
    GetArrays: grpc.UnaryStreamMultiCallable
    Bind: grpc.UnaryStreamMultiCallable
    PutCheckpoint: grpc.StreamUnaryMultiCallable
    GetCheckpoint: grpc.UnaryStreamMultiCallable
    ListRuns: grpc.UnaryUnaryMultiCallable
    DeleteRun: grpc.UnaryUnaryMultiCallable
    AppendEvent: grpc.UnaryUnaryMultiCallable
    WatchEvents: grpc.UnaryStreamMultiCallable
    PutResults: grpc.UnaryUnaryMultiCallable
    GetResults: grpc.UnaryUnaryMultiCallable
    GetTelemetry: grpc.UnaryUnaryMultiCallable
    RecordTelemetry: grpc.UnaryUnaryMultiCallable


class BindingServiceServicer:
    def RegisterNode(
        self, request: binding_pb2.RegisterNodeRequest, context: grpc.ServicerContext
    ) -> binding_pb2.RegisterNodeResponse: ...
    def ListNodes(
        self, request: binding_pb2.ListNodesRequest, context: grpc.ServicerContext
    ) -> binding_pb2.ListNodesResponse: ...
    def PutArrays(
        self, request_iterator: Iterator[binding_pb2.ArrayChunk], context: grpc.ServicerContext
    ) -> binding_pb2.PutArraysResponse: ...
    def GetArrays(
        self, request: binding_pb2.GetArraysRequest, context: grpc.ServicerContext
    ) -> Iterator[binding_pb2.ArrayChunk]: ...
    def Bind(
        self, request: binding_pb2.BindRequest, context: grpc.ServicerContext
    ) -> Iterator[binding_pb2.BindChunk]: ...
    def PutCheckpoint(
        self, request_iterator: Iterator[binding_pb2.CheckpointChunk], context: grpc.ServicerContext
    ) -> binding_pb2.PutCheckpointResponse: ...
    def GetCheckpoint(
        self, request: binding_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> Iterator[binding_pb2.CheckpointChunk]: ...
    def ListRuns(
        self, request: binding_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> binding_pb2.ListRunsResponse: ...
    def DeleteRun(
        self, request: binding_pb2.DeleteRunRequest, context: grpc.ServicerContext
    ) -> binding_pb2.DeleteRunResponse: ...
    def AppendEvent(
        self, request: binding_pb2.AppendEventRequest, context: grpc.ServicerContext
    ) -> binding_pb2.AppendEventResponse: ...
    def WatchEvents(
        self, request: binding_pb2.WatchEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[binding_pb2.Event]: ...
    def PutResults(
        self, request: binding_pb2.PutResultsRequest, context: grpc.ServicerContext
    ) -> binding_pb2.PutResultsResponse: ...
    def GetResults(
        self, request: binding_pb2.GetResultsRequest, context: grpc.ServicerContext
    ) -> binding_pb2.GetResultsResponse: ...
    def GetTelemetry(
        self, request: binding_pb2.GetTelemetryRequest, context: grpc.ServicerContext
    ) -> binding_pb2.Telemetry: ...
    def RecordTelemetry(
        self, request: binding_pb2.RecordTelemetryRequest, context: grpc.ServicerContext
    ) -> binding_pb2.RecordTelemetryResponse: ...


def add_BindingServiceServicer_to_server(
    servicer: BindingServiceServicer, server: grpc.Server
) -> None: ...
