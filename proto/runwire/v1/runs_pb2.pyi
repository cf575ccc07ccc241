from runwire.v1 import metrics_pb2 as _metrics_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("id", "name", "created_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    created_time: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., created_time: _Optional[float] = ...) -> None: ...

class RunError(_message.Message):
    __slots__ = ("code", "message", "details_json")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    details_json: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., details_json: _Optional[str] = ...) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("run_id", "experiment_id", "experiment_name", "parent_run_id", "number", "name", "display_name", "description", "status", "type", "target", "created_time", "start_time", "end_time", "tags", "properties", "error", "warnings", "log_files")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    LOG_FILES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str
    number: int
    name: str
    display_name: str
    description: str
    status: str
    type: str
    target: str
    created_time: float
    start_time: float
    end_time: float
    tags: _containers.RepeatedCompositeFieldContainer[KeyValue]
    properties: _containers.RepeatedCompositeFieldContainer[KeyValue]
    error: RunError
    warnings: _containers.RepeatedScalarFieldContainer[str]
    log_files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., experiment_id: _Optional[str] = ..., experiment_name: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., number: _Optional[int] = ..., name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., status: _Optional[str] = ..., type: _Optional[str] = ..., target: _Optional[str] = ..., created_time: _Optional[float] = ..., start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., tags: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., properties: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., error: _Optional[_Union[RunError, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., log_files: _Optional[_Iterable[str]] = ...) -> None: ...

class GetOrCreateExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments",)
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    def __init__(self, experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ...) -> None: ...

class CreateRunRequest(_message.Message):
    __slots__ = ("experiment_name", "run_id", "parent_run_id", "name", "display_name", "description", "status", "type", "target", "tags", "properties", "request_id")
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_name: str
    run_id: str
    parent_run_id: str
    name: str
    display_name: str
    description: str
    status: str
    type: str
    target: str
    tags: _containers.RepeatedCompositeFieldContainer[KeyValue]
    properties: _containers.RepeatedCompositeFieldContainer[KeyValue]
    request_id: str
    def __init__(self, experiment_name: _Optional[str] = ..., run_id: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., status: _Optional[str] = ..., type: _Optional[str] = ..., target: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., properties: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("experiment_name", "parent_run_id", "include_children", "recursive", "statuses", "type", "tags", "properties")
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    experiment_name: str
    parent_run_id: str
    include_children: bool
    recursive: bool
    statuses: _containers.RepeatedScalarFieldContainer[str]
    type: str
    tags: _containers.RepeatedCompositeFieldContainer[KeyValue]
    properties: _containers.RepeatedCompositeFieldContainer[KeyValue]
    def __init__(self, experiment_name: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., include_children: _Optional[bool] = ..., recursive: _Optional[bool] = ..., statuses: _Optional[_Iterable[str]] = ..., type: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., properties: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ...) -> None: ...

class UpdateRunRequest(_message.Message):
    __slots__ = ("run_id", "status", "display_name", "description", "error", "warnings")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: str
    display_name: str
    description: str
    error: RunError
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., error: _Optional[_Union[RunError, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class SetTagsRequest(_message.Message):
    __slots__ = ("run_id", "tags", "remove")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    tags: _containers.RepeatedCompositeFieldContainer[KeyValue]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class AddPropertiesRequest(_message.Message):
    __slots__ = ("run_id", "properties")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    properties: _containers.RepeatedCompositeFieldContainer[KeyValue]
    def __init__(self, run_id: _Optional[str] = ..., properties: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ("run_id", "recursive", "names")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    recursive: bool
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., recursive: _Optional[bool] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class ColumnInfo(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: _metrics_pb2.ValueType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[_metrics_pb2.ValueType, str]] = ...) -> None: ...

class MetricData(_message.Message):
    __slots__ = ("run_id", "name", "kind", "description", "count", "columns", "chunks")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    name: str
    kind: _metrics_pb2.MetricKind
    description: str
    count: int
    columns: _containers.RepeatedCompositeFieldContainer[ColumnInfo]
    chunks: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, run_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[_metrics_pb2.MetricKind, str]] = ..., description: _Optional[str] = ..., count: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ColumnInfo, _Mapping]]] = ..., chunks: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetLogRequest(_message.Message):
    __slots__ = ("run_id", "path", "from_line", "max_lines")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FROM_LINE_FIELD_NUMBER: _ClassVar[int]
    MAX_LINES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    from_line: int
    max_lines: int
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., from_line: _Optional[int] = ..., max_lines: _Optional[int] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("run_id", "path", "first_line", "lines", "total_lines")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LINES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    first_line: int
    lines: _containers.RepeatedScalarFieldContainer[str]
    total_lines: int
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., first_line: _Optional[int] = ..., lines: _Optional[_Iterable[str]] = ..., total_lines: _Optional[int] = ...) -> None: ...

class CollectorStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectorStatus(_message.Message):
    __slots__ = ("version", "grpc_address", "http_address", "store", "ingest_streams", "batches_committed", "duplicate_batches", "points_committed", "runs", "uptime_seconds", "pid")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    INGEST_STREAMS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_BATCHES_FIELD_NUMBER: _ClassVar[int]
    POINTS_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    version: str
    grpc_address: str
    http_address: str
    store: str
    ingest_streams: int
    batches_committed: int
    duplicate_batches: int
    points_committed: int
    runs: int
    uptime_seconds: float
    pid: int
    def __init__(self, version: _Optional[str] = ..., grpc_address: _Optional[str] = ..., http_address: _Optional[str] = ..., store: _Optional[str] = ..., ingest_streams: _Optional[int] = ..., batches_committed: _Optional[int] = ..., duplicate_batches: _Optional[int] = ..., points_committed: _Optional[int] = ..., runs: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., pid: _Optional[int] = ...) -> None: ...
