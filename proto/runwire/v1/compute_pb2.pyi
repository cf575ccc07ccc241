from runwire.v1 import runs_pb2 as _runs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_LEASED: _ClassVar[JobState]
    JOB_STATE_DONE: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_LEASED: JobState
JOB_STATE_DONE: JobState

class JobDefinition(_message.Message):
    __slots__ = ("script", "arguments", "command", "snapshot_id", "environment_name", "user_managed_dependencies", "interpreter_path", "environment_variables", "max_run_duration_seconds", "source_directory")
    class EnvironmentVariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_MANAGED_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    INTERPRETER_PATH_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    MAX_RUN_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    script: str
    arguments: _containers.RepeatedScalarFieldContainer[str]
    command: _containers.RepeatedScalarFieldContainer[str]
    snapshot_id: str
    environment_name: str
    user_managed_dependencies: bool
    interpreter_path: str
    environment_variables: _containers.ScalarMap[str, str]
    max_run_duration_seconds: int
    source_directory: str
    def __init__(self, script: _Optional[str] = ..., arguments: _Optional[_Iterable[str]] = ..., command: _Optional[_Iterable[str]] = ..., snapshot_id: _Optional[str] = ..., environment_name: _Optional[str] = ..., user_managed_dependencies: _Optional[bool] = ..., interpreter_path: _Optional[str] = ..., environment_variables: _Optional[_Mapping[str, str]] = ..., max_run_duration_seconds: _Optional[int] = ..., source_directory: _Optional[str] = ...) -> None: ...

class SubmitRunRequest(_message.Message):
    __slots__ = ("run", "definition")
    RUN_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    run: _runs_pb2.CreateRunRequest
    definition: JobDefinition
    def __init__(self, run: _Optional[_Union[_runs_pb2.CreateRunRequest, _Mapping]] = ..., definition: _Optional[_Union[JobDefinition, _Mapping]] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("run_id", "target", "definition", "state", "node_id", "lease_id", "queued_time", "leased_time", "attempts")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_TIME_FIELD_NUMBER: _ClassVar[int]
    LEASED_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    target: str
    definition: JobDefinition
    state: JobState
    node_id: str
    lease_id: str
    queued_time: float
    leased_time: float
    attempts: int
    def __init__(self, run_id: _Optional[str] = ..., target: _Optional[str] = ..., definition: _Optional[_Union[JobDefinition, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., node_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., queued_time: _Optional[float] = ..., leased_time: _Optional[float] = ..., attempts: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class NodeHello(_message.Message):
    __slots__ = ("node_id", "target", "slots", "hostname", "pid", "running_leases")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_LEASES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    target: str
    slots: int
    hostname: str
    pid: int
    running_leases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., target: _Optional[str] = ..., slots: _Optional[int] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., running_leases: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeHeartbeat(_message.Message):
    __slots__ = ("running_leases",)
    RUNNING_LEASES_FIELD_NUMBER: _ClassVar[int]
    running_leases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, running_leases: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeMessage(_message.Message):
    __slots__ = ("hello", "heartbeat")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    hello: NodeHello
    heartbeat: NodeHeartbeat
    def __init__(self, hello: _Optional[_Union[NodeHello, _Mapping]] = ..., heartbeat: _Optional[_Union[NodeHeartbeat, _Mapping]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "run_id", "experiment_name", "parent_run_id", "definition")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    run_id: str
    experiment_name: str
    parent_run_id: str
    definition: JobDefinition
    def __init__(self, lease_id: _Optional[str] = ..., run_id: _Optional[str] = ..., experiment_name: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., definition: _Optional[_Union[JobDefinition, _Mapping]] = ...) -> None: ...

class CancelLease(_message.Message):
    __slots__ = ("lease_id", "run_id", "reason", "canceled")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    run_id: str
    reason: str
    canceled: bool
    def __init__(self, lease_id: _Optional[str] = ..., run_id: _Optional[str] = ..., reason: _Optional[str] = ..., canceled: _Optional[bool] = ...) -> None: ...

class WorkMessage(_message.Message):
    __slots__ = ("lease", "cancel")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    cancel: CancelLease
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., cancel: _Optional[_Union[CancelLease, _Mapping]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "target", "slots", "busy", "hostname", "connected", "last_seen", "run_ids")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    target: str
    slots: int
    busy: int
    hostname: str
    connected: bool
    last_seen: float
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., target: _Optional[str] = ..., slots: _Optional[int] = ..., busy: _Optional[int] = ..., hostname: _Optional[str] = ..., connected: _Optional[bool] = ..., last_seen: _Optional[float] = ..., run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ComputeTargetInfo(_message.Message):
    __slots__ = ("name", "nodes", "slots", "queued", "active")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    slots: int
    queued: int
    active: int
    def __init__(self, name: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., slots: _Optional[int] = ..., queued: _Optional[int] = ..., active: _Optional[int] = ...) -> None: ...

class ListComputeTargetsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListComputeTargetsResponse(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[ComputeTargetInfo]
    def __init__(self, targets: _Optional[_Iterable[_Union[ComputeTargetInfo, _Mapping]]] = ...) -> None: ...

class ActiveRun(_message.Message):
    __slots__ = ("run_id", "status", "experiment_id", "experiment_name", "target", "node_id", "parent_run_id", "type", "created_time", "tags", "properties")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: str
    experiment_id: str
    experiment_name: str
    target: str
    node_id: str
    parent_run_id: str
    type: str
    created_time: float
    tags: _containers.RepeatedCompositeFieldContainer[_runs_pb2.KeyValue]
    properties: _containers.RepeatedCompositeFieldContainer[_runs_pb2.KeyValue]
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[str] = ..., experiment_id: _Optional[str] = ..., experiment_name: _Optional[str] = ..., target: _Optional[str] = ..., node_id: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., type: _Optional[str] = ..., created_time: _Optional[float] = ..., tags: _Optional[_Iterable[_Union[_runs_pb2.KeyValue, _Mapping]]] = ..., properties: _Optional[_Iterable[_Union[_runs_pb2.KeyValue, _Mapping]]] = ...) -> None: ...

class ListActiveRunsRequest(_message.Message):
    __slots__ = ("target", "statuses")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    target: str
    statuses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, target: _Optional[str] = ..., statuses: _Optional[_Iterable[str]] = ...) -> None: ...

class ListActiveRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[ActiveRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[ActiveRun, _Mapping]]] = ...) -> None: ...
