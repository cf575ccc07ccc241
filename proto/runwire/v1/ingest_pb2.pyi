from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Codec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODEC_NONE: _ClassVar[Codec]
    CODEC_ZSTD: _ClassVar[Codec]

class AckStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_STATUS_COMMITTED: _ClassVar[AckStatus]
    ACK_STATUS_REJECTED: _ClassVar[AckStatus]
CODEC_NONE: Codec
CODEC_ZSTD: Codec
ACK_STATUS_COMMITTED: AckStatus
ACK_STATUS_REJECTED: AckStatus

class IngestRequest(_message.Message):
    __slots__ = ("agent_id", "seq", "codec", "payload", "batch_count", "point_count", "report")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    BATCH_COUNT_FIELD_NUMBER: _ClassVar[int]
    POINT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    seq: int
    codec: Codec
    payload: bytes
    batch_count: int
    point_count: int
    report: AgentReport
    def __init__(self, agent_id: _Optional[str] = ..., seq: _Optional[int] = ..., codec: _Optional[_Union[Codec, str]] = ..., payload: _Optional[bytes] = ..., batch_count: _Optional[int] = ..., point_count: _Optional[int] = ..., report: _Optional[_Union[AgentReport, _Mapping]] = ...) -> None: ...

class AgentReport(_message.Message):
    __slots__ = ("agent_id", "hostname", "pid", "sent_at", "spool_bytes", "spool_records", "spool_max_bytes", "spool_peak_bytes", "spool_full", "spool_full_count", "spool_full_seconds", "spool_corrupt_records", "oldest_unacked_age_seconds", "collector_connected_since", "last_outage_seconds", "clients", "uptime_seconds", "version")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    SPOOL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPOOL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPOOL_PEAK_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPOOL_FULL_FIELD_NUMBER: _ClassVar[int]
    SPOOL_FULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPOOL_FULL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_CORRUPT_RECORDS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNACKED_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_CONNECTED_SINCE_FIELD_NUMBER: _ClassVar[int]
    LAST_OUTAGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    hostname: str
    pid: int
    sent_at: float
    spool_bytes: int
    spool_records: int
    spool_max_bytes: int
    spool_peak_bytes: int
    spool_full: bool
    spool_full_count: int
    spool_full_seconds: float
    spool_corrupt_records: int
    oldest_unacked_age_seconds: float
    collector_connected_since: float
    last_outage_seconds: float
    clients: int
    uptime_seconds: float
    version: str
    def __init__(self, agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., sent_at: _Optional[float] = ..., spool_bytes: _Optional[int] = ..., spool_records: _Optional[int] = ..., spool_max_bytes: _Optional[int] = ..., spool_peak_bytes: _Optional[int] = ..., spool_full: _Optional[bool] = ..., spool_full_count: _Optional[int] = ..., spool_full_seconds: _Optional[float] = ..., spool_corrupt_records: _Optional[int] = ..., oldest_unacked_age_seconds: _Optional[float] = ..., collector_connected_since: _Optional[float] = ..., last_outage_seconds: _Optional[float] = ..., clients: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., version: _Optional[str] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("seq", "status", "reason", "duplicate_batches", "warnings")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_BATCHES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    status: AckStatus
    reason: str
    duplicate_batches: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, seq: _Optional[int] = ..., status: _Optional[_Union[AckStatus, str]] = ..., reason: _Optional[str] = ..., duplicate_batches: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
