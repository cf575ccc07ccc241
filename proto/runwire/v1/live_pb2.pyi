from runwire.v1 import metrics_pb2 as _metrics_pb2
from runwire.v1 import runs_pb2 as _runs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_METRIC: _ClassVar[EventKind]
    EVENT_KIND_STATUS: _ClassVar[EventKind]
    EVENT_KIND_LOG: _ClassVar[EventKind]
    EVENT_KIND_TAG: _ClassVar[EventKind]
    EVENT_KIND_FILE: _ClassVar[EventKind]
    EVENT_KIND_LAGGED: _ClassVar[EventKind]
    EVENT_KIND_LIVE: _ClassVar[EventKind]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_METRIC: EventKind
EVENT_KIND_STATUS: EventKind
EVENT_KIND_LOG: EventKind
EVENT_KIND_TAG: EventKind
EVENT_KIND_FILE: EventKind
EVENT_KIND_LAGGED: EventKind
EVENT_KIND_LIVE: EventKind

class SubscribeRequest(_message.Message):
    __slots__ = ("experiment_name", "run_id", "include_children", "metrics", "kinds", "from_start")
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FROM_START_FIELD_NUMBER: _ClassVar[int]
    experiment_name: str
    run_id: str
    include_children: bool
    metrics: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[EventKind]
    from_start: bool
    def __init__(self, experiment_name: _Optional[str] = ..., run_id: _Optional[str] = ..., include_children: _Optional[bool] = ..., metrics: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[_Union[EventKind, str]]] = ..., from_start: _Optional[bool] = ...) -> None: ...

class MetricEvent(_message.Message):
    __slots__ = ("points", "first_row", "history")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROW_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    points: _metrics_pb2.MetricPoints
    first_row: int
    history: bool
    def __init__(self, points: _Optional[_Union[_metrics_pb2.MetricPoints, _Mapping]] = ..., first_row: _Optional[int] = ..., history: _Optional[bool] = ...) -> None: ...

class StatusEvent(_message.Message):
    __slots__ = ("status", "created", "experiment_name", "parent_run_id", "error", "start_time", "end_time")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    status: str
    created: bool
    experiment_name: str
    parent_run_id: str
    error: _runs_pb2.RunError
    start_time: float
    end_time: float
    def __init__(self, status: _Optional[str] = ..., created: _Optional[bool] = ..., experiment_name: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., error: _Optional[_Union[_runs_pb2.RunError, _Mapping]] = ..., start_time: _Optional[float] = ..., end_time: _Optional[float] = ...) -> None: ...

class LogEvent(_message.Message):
    __slots__ = ("path", "lines", "first_line")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINE_FIELD_NUMBER: _ClassVar[int]
    path: str
    lines: _containers.RepeatedScalarFieldContainer[str]
    first_line: int
    def __init__(self, path: _Optional[str] = ..., lines: _Optional[_Iterable[str]] = ..., first_line: _Optional[int] = ...) -> None: ...

class TagEvent(_message.Message):
    __slots__ = ("tags", "set", "removed")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[_runs_pb2.KeyValue]
    set: _containers.RepeatedCompositeFieldContainer[_runs_pb2.KeyValue]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tags: _Optional[_Iterable[_Union[_runs_pb2.KeyValue, _Mapping]]] = ..., set: _Optional[_Iterable[_Union[_runs_pb2.KeyValue, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class FileEvent(_message.Message):
    __slots__ = ("path", "size", "content_type")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    content_type: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class LaggedSeries(_message.Message):
    __slots__ = ("run_id", "name", "first_row", "rows")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROW_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    name: str
    first_row: int
    rows: int
    def __init__(self, run_id: _Optional[str] = ..., name: _Optional[str] = ..., first_row: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class LaggedEvent(_message.Message):
    __slots__ = ("events", "points", "run_ids", "series", "kinds")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    events: int
    points: int
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    series: _containers.RepeatedCompositeFieldContainer[LaggedSeries]
    kinds: _containers.RepeatedScalarFieldContainer[EventKind]
    def __init__(self, events: _Optional[int] = ..., points: _Optional[int] = ..., run_ids: _Optional[_Iterable[str]] = ..., series: _Optional[_Iterable[_Union[LaggedSeries, _Mapping]]] = ..., kinds: _Optional[_Iterable[_Union[EventKind, str]]] = ...) -> None: ...

class LiveEvent(_message.Message):
    __slots__ = ("kind", "run_id", "time", "metrics", "status", "log", "tag", "file", "lagged")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LAGGED_FIELD_NUMBER: _ClassVar[int]
    kind: EventKind
    run_id: str
    time: float
    metrics: _containers.RepeatedCompositeFieldContainer[MetricEvent]
    status: StatusEvent
    log: LogEvent
    tag: TagEvent
    file: FileEvent
    lagged: LaggedEvent
    def __init__(self, kind: _Optional[_Union[EventKind, str]] = ..., run_id: _Optional[str] = ..., time: _Optional[float] = ..., metrics: _Optional[_Iterable[_Union[MetricEvent, _Mapping]]] = ..., status: _Optional[_Union[StatusEvent, _Mapping]] = ..., log: _Optional[_Union[LogEvent, _Mapping]] = ..., tag: _Optional[_Union[TagEvent, _Mapping]] = ..., file: _Optional[_Union[FileEvent, _Mapping]] = ..., lagged: _Optional[_Union[LaggedEvent, _Mapping]] = ...) -> None: ...
