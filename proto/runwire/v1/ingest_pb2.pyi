from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
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
    __slots__ = ("agent_id", "seq", "codec", "payload", "batch_count", "point_count")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    BATCH_COUNT_FIELD_NUMBER: _ClassVar[int]
    POINT_COUNT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    seq: int
    codec: Codec
    payload: bytes
    batch_count: int
    point_count: int
    def __init__(self, agent_id: _Optional[str] = ..., seq: _Optional[int] = ..., codec: _Optional[_Union[Codec, str]] = ..., payload: _Optional[bytes] = ..., batch_count: _Optional[int] = ..., point_count: _Optional[int] = ...) -> None: ...

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
