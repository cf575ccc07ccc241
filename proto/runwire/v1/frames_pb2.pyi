from runwire.v1 import metrics_pb2 as _metrics_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("protocol_version", "producer_id", "pid", "client")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    producer_id: str
    pid: int
    client: str
    def __init__(self, protocol_version: _Optional[int] = ..., producer_id: _Optional[str] = ..., pid: _Optional[int] = ..., client: _Optional[str] = ...) -> None: ...

class HelloAck(_message.Message):
    __slots__ = ("protocol_version", "agent_id", "max_frame_bytes")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    agent_id: str
    max_frame_bytes: int
    def __init__(self, protocol_version: _Optional[int] = ..., agent_id: _Optional[str] = ..., max_frame_bytes: _Optional[int] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class FlushRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: int
    def __init__(self, token: _Optional[int] = ...) -> None: ...

class FlushAck(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: int
    def __init__(self, token: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("agent_id", "socket_path", "collector", "collector_connected", "clients", "spool_records", "spool_bytes", "batches_received", "points_received", "records_acked", "oldest_unacked_age_seconds", "frames_rejected", "pid", "uptime_seconds", "uploads_pending", "uploads_bytes", "files_committed", "spool_max_bytes", "spool_full", "spool_full_count", "spool_full_seconds", "spool_peak_bytes", "spool_corrupt_records", "collector_connected_seconds", "collector_down_seconds", "socket_mode", "socket_group", "collectors", "collector_addresses", "collector_links")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOCKET_PATH_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_BYTES_FIELD_NUMBER: _ClassVar[int]
    BATCHES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    POINTS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_ACKED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNACKED_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_REJECTED_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_PENDING_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    SPOOL_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPOOL_FULL_FIELD_NUMBER: _ClassVar[int]
    SPOOL_FULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPOOL_FULL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_PEAK_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPOOL_CORRUPT_RECORDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_CONNECTED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_DOWN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOCKET_MODE_FIELD_NUMBER: _ClassVar[int]
    SOCKET_GROUP_FIELD_NUMBER: _ClassVar[int]
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_LINKS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    socket_path: str
    collector: str
    collector_connected: bool
    clients: int
    spool_records: int
    spool_bytes: int
    batches_received: int
    points_received: int
    records_acked: int
    oldest_unacked_age_seconds: float
    frames_rejected: int
    pid: int
    uptime_seconds: float
    uploads_pending: int
    uploads_bytes: int
    files_committed: int
    spool_max_bytes: int
    spool_full: bool
    spool_full_count: int
    spool_full_seconds: float
    spool_peak_bytes: int
    spool_corrupt_records: int
    collector_connected_seconds: float
    collector_down_seconds: float
    socket_mode: int
    socket_group: str
    collectors: _containers.RepeatedScalarFieldContainer[str]
    collector_addresses: _containers.RepeatedScalarFieldContainer[str]
    collector_links: _containers.RepeatedCompositeFieldContainer[CollectorLinkStatus]
    def __init__(self, agent_id: _Optional[str] = ..., socket_path: _Optional[str] = ..., collector: _Optional[str] = ..., collector_connected: _Optional[bool] = ..., clients: _Optional[int] = ..., spool_records: _Optional[int] = ..., spool_bytes: _Optional[int] = ..., batches_received: _Optional[int] = ..., points_received: _Optional[int] = ..., records_acked: _Optional[int] = ..., oldest_unacked_age_seconds: _Optional[float] = ..., frames_rejected: _Optional[int] = ..., pid: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., uploads_pending: _Optional[int] = ..., uploads_bytes: _Optional[int] = ..., files_committed: _Optional[int] = ..., spool_max_bytes: _Optional[int] = ..., spool_full: _Optional[bool] = ..., spool_full_count: _Optional[int] = ..., spool_full_seconds: _Optional[float] = ..., spool_peak_bytes: _Optional[int] = ..., spool_corrupt_records: _Optional[int] = ..., collector_connected_seconds: _Optional[float] = ..., collector_down_seconds: _Optional[float] = ..., socket_mode: _Optional[int] = ..., socket_group: _Optional[str] = ..., collectors: _Optional[_Iterable[str]] = ..., collector_addresses: _Optional[_Iterable[str]] = ..., collector_links: _Optional[_Iterable[_Union[CollectorLinkStatus, _Mapping]]] = ...) -> None: ...

class CollectorLinkStatus(_message.Message):
    __slots__ = ("role", "address", "connected", "failovers")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_FIELD_NUMBER: _ClassVar[int]
    role: str
    address: str
    connected: bool
    failovers: int
    def __init__(self, role: _Optional[str] = ..., address: _Optional[str] = ..., connected: _Optional[bool] = ..., failovers: _Optional[int] = ...) -> None: ...

class ErrorFrame(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class FileBegin(_message.Message):
    __slots__ = ("upload_id", "run_id", "name")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    run_id: str
    name: str
    def __init__(self, upload_id: _Optional[str] = ..., run_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("upload_id", "offset", "data")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    offset: int
    data: bytes
    def __init__(self, upload_id: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class FileEnd(_message.Message):
    __slots__ = ("upload_id", "size", "sha256")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    size: int
    sha256: str
    def __init__(self, upload_id: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class FileWait(_message.Message):
    __slots__ = ("upload_ids",)
    UPLOAD_IDS_FIELD_NUMBER: _ClassVar[int]
    upload_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, upload_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FileAck(_message.Message):
    __slots__ = ("upload_id", "error")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    error: str
    def __init__(self, upload_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class FileDone(_message.Message):
    __slots__ = ("upload_id", "error", "conflict")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    error: str
    conflict: bool
    def __init__(self, upload_id: _Optional[str] = ..., error: _Optional[str] = ..., conflict: _Optional[bool] = ...) -> None: ...

class Claim(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ClientFrame(_message.Message):
    __slots__ = ("hello", "batch", "flush", "status", "file_begin", "file_chunk", "file_end", "file_wait", "claim")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILE_BEGIN_FIELD_NUMBER: _ClassVar[int]
    FILE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    FILE_END_FIELD_NUMBER: _ClassVar[int]
    FILE_WAIT_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: _metrics_pb2.Batch
    flush: FlushRequest
    status: StatusRequest
    file_begin: FileBegin
    file_chunk: FileChunk
    file_end: FileEnd
    file_wait: FileWait
    claim: Claim
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[_metrics_pb2.Batch, _Mapping]] = ..., flush: _Optional[_Union[FlushRequest, _Mapping]] = ..., status: _Optional[_Union[StatusRequest, _Mapping]] = ..., file_begin: _Optional[_Union[FileBegin, _Mapping]] = ..., file_chunk: _Optional[_Union[FileChunk, _Mapping]] = ..., file_end: _Optional[_Union[FileEnd, _Mapping]] = ..., file_wait: _Optional[_Union[FileWait, _Mapping]] = ..., claim: _Optional[_Union[Claim, _Mapping]] = ...) -> None: ...

class AgentFrame(_message.Message):
    __slots__ = ("hello_ack", "batch_ack", "flush_ack", "status", "error", "file_ack", "file_done")
    HELLO_ACK_FIELD_NUMBER: _ClassVar[int]
    BATCH_ACK_FIELD_NUMBER: _ClassVar[int]
    FLUSH_ACK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FILE_ACK_FIELD_NUMBER: _ClassVar[int]
    FILE_DONE_FIELD_NUMBER: _ClassVar[int]
    hello_ack: HelloAck
    batch_ack: BatchAck
    flush_ack: FlushAck
    status: AgentStatus
    error: ErrorFrame
    file_ack: FileAck
    file_done: FileDone
    def __init__(self, hello_ack: _Optional[_Union[HelloAck, _Mapping]] = ..., batch_ack: _Optional[_Union[BatchAck, _Mapping]] = ..., flush_ack: _Optional[_Union[FlushAck, _Mapping]] = ..., status: _Optional[_Union[AgentStatus, _Mapping]] = ..., error: _Optional[_Union[ErrorFrame, _Mapping]] = ..., file_ack: _Optional[_Union[FileAck, _Mapping]] = ..., file_done: _Optional[_Union[FileDone, _Mapping]] = ...) -> None: ...
