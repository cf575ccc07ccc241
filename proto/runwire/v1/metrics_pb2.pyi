from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetricKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_KIND_UNSPECIFIED: _ClassVar[MetricKind]
    METRIC_KIND_SCALAR: _ClassVar[MetricKind]
    METRIC_KIND_LIST: _ClassVar[MetricKind]
    METRIC_KIND_TABLE: _ClassVar[MetricKind]
    METRIC_KIND_IMAGE: _ClassVar[MetricKind]

class ValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_TYPE_NONE: _ClassVar[ValueType]
    VALUE_TYPE_FLOAT: _ClassVar[ValueType]
    VALUE_TYPE_INT: _ClassVar[ValueType]
    VALUE_TYPE_BOOL: _ClassVar[ValueType]
    VALUE_TYPE_STRING: _ClassVar[ValueType]
METRIC_KIND_UNSPECIFIED: MetricKind
METRIC_KIND_SCALAR: MetricKind
METRIC_KIND_LIST: MetricKind
METRIC_KIND_TABLE: MetricKind
METRIC_KIND_IMAGE: MetricKind
VALUE_TYPE_NONE: ValueType
VALUE_TYPE_FLOAT: ValueType
VALUE_TYPE_INT: ValueType
VALUE_TYPE_BOOL: ValueType
VALUE_TYPE_STRING: ValueType

class Column(_message.Message):
    __slots__ = ("name", "type", "data", "strings", "nulls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    NULLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ValueType
    data: bytes
    strings: _containers.RepeatedScalarFieldContainer[str]
    nulls: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ..., data: _Optional[bytes] = ..., strings: _Optional[_Iterable[str]] = ..., nulls: _Optional[_Iterable[int]] = ...) -> None: ...

class MetricPoints(_message.Message):
    __slots__ = ("run_id", "name", "kind", "description", "count", "timestamps", "steps", "columns")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    name: str
    kind: MetricKind
    description: str
    count: int
    timestamps: bytes
    steps: bytes
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, run_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[MetricKind, str]] = ..., description: _Optional[str] = ..., count: _Optional[int] = ..., timestamps: _Optional[bytes] = ..., steps: _Optional[bytes] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class LogLines(_message.Message):
    __slots__ = ("run_id", "path", "first_line", "lines")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    path: str
    first_line: int
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., path: _Optional[str] = ..., first_line: _Optional[int] = ..., lines: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("run_id", "status", "lease_id", "only_if_active", "error_code", "error_message", "error_details_json", "time")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ONLY_IF_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: str
    lease_id: str
    only_if_active: bool
    error_code: str
    error_message: str
    error_details_json: str
    time: float
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[str] = ..., lease_id: _Optional[str] = ..., only_if_active: _Optional[bool] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., error_details_json: _Optional[str] = ..., time: _Optional[float] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("producer_id", "seq", "metrics", "logs", "statuses")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    seq: int
    metrics: _containers.RepeatedCompositeFieldContainer[MetricPoints]
    logs: _containers.RepeatedCompositeFieldContainer[LogLines]
    statuses: _containers.RepeatedCompositeFieldContainer[StatusChange]
    def __init__(self, producer_id: _Optional[str] = ..., seq: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[MetricPoints, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[LogLines, _Mapping]]] = ..., statuses: _Optional[_Iterable[_Union[StatusChange, _Mapping]]] = ...) -> None: ...

class BatchBundle(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[Batch]
    def __init__(self, batches: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ...) -> None: ...
