"""Every limit runwire enforces, by name. The README's "Limits" table lists them all."""

from __future__ import annotations

# --- metric names and values (checked by the SDK at the call site) -------------------------------
MAX_NAME_LENGTH = 255
"""Characters in a metric, column, tag or property key name."""
MAX_STRING_VALUE_LENGTH = 4096
"""Characters in a string metric value."""
MAX_COLUMNS = 1024
"""Columns in one log_row / log_table call."""
MAX_ROWS_PER_CALL = 10_000_000
"""Rows in one log_list / log_table call."""
INT64_MIN = -(2**63)
"""Smallest integer metric value (values are stored as int64)."""
INT64_MAX = 2**63 - 1
"""Largest integer metric value (values are stored as int64); larger magnitudes are refused."""

# --- runs (checked by the collector) --------------------------------------------------------------
MAX_METRIC_NAMES_PER_RUN = 10_000
"""Metric names in one run; points of further names are refused with a warning on the run."""
MAX_ROWS_PER_METRIC = 1_000_000_000
"""Rows of one metric; rows beyond it are refused with a warning on the run."""
MAX_TAGS_PER_RUN = 1_000
"""Tags on one run."""
MAX_PROPERTIES_PER_RUN = 1_000
"""Properties on one run."""
MAX_TAG_KEY_LENGTH = 255
"""Characters in a tag or property key."""
MAX_TAG_VALUE_LENGTH = 4096
"""Characters in a tag or property value."""
MAX_RUN_ID_LENGTH = 256
"""Characters in a run id."""
MAX_DISPLAY_NAME_LENGTH = 256
"""Characters in a run's display name."""
MAX_ERROR_MESSAGE_LENGTH = 3000
"""Characters of a run's error message kept (longer ones are truncated)."""
MAX_EXPERIMENT_NAME_LENGTH = 255
"""Characters in an experiment name (rule: ^[a-zA-Z0-9][\\w-]{0,254}$)."""

# --- transport ------------------------------------------------------------------------------------
PROTOCOL_VERSION = 1
"""Version of the SDK-agent socket protocol, checked in the Hello frame."""
MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Largest frame on the agent socket (4-byte length prefix excluded)."""
MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest gRPC message between agent, collector and SDK."""
SDK_BATCH_MAX_POINTS = 65_536
"""Points the SDK puts in one batch (one socket frame) at most."""
SDK_SEND_INTERVAL_S = 0.01
"""How often the SDK's background thread wakes to send what was logged."""
SDK_MAX_UNACKED_BYTES = 256 * 1024 * 1024
"""Encoded batches the SDK keeps in memory waiting for the agent; beyond it they go to the SDK spool."""
AGENT_BATCH_MAX_BYTES = 4 * 1024 * 1024
"""Uncompressed bytes of SDK batches the agent bundles into one spool record."""
AGENT_BATCH_MAX_DELAY_S = 0.01
"""Default age bound of an agent bundle (`runwire agent --batch-delay-ms`)."""
SPOOL_SEGMENT_BYTES = 64 * 1024 * 1024
"""Size at which the agent starts a new spool segment file."""
STORE_CHUNK_ROWS = 65_536
"""Rows per stored metric chunk; a short trailing chunk is merged with the next appended rows."""
METRIC_DATA_MESSAGE_BYTES = 2 * 1024 * 1024
"""Chunk bytes per streamed MetricData message when reading a series."""

# --- files, images and snapshots (issue 3) --------------------------------------------------------
MAX_ARTIFACT_NAME_LENGTH = 1024
"""Characters in an artifact name (its path inside the run, e.g. `outputs/model.pkl`)."""
MAX_ARTIFACT_BYTES = 64 * 1024**3
"""Bytes of one uploaded file (artifact); checked by the SDK before sending and by the collector."""
MAX_RUN_ARTIFACT_BYTES = 1024**4
"""Bytes of all the artifacts of one run together; an upload that would exceed it is refused."""
FILE_CHUNK_BYTES = 1024 * 1024
"""Bytes of file data per socket frame (SDK to agent) and per gRPC message (agent/SDK to collector)."""
SNAPSHOT_MAX_BYTES = 300 * 1024 * 1024
"""Bytes of the files of one snapshot (after ignore rules); more raises SnapshotException."""
SNAPSHOT_MAX_FILES = 2000
"""Files in one snapshot (after ignore rules); more raises SnapshotException."""

# --- script runs on compute targets (issue 4) -------------------------------------------------------
MAX_LOG_LINE_LENGTH = 16_384
"""Characters of one captured log line kept; a longer line is cut into pieces of this length."""
MAX_JOB_ARGUMENTS = 10_000
"""Arguments of one ScriptRunConfig."""
JOB_CANCEL_GRACE_S = 10.0
"""Seconds a canceled job's process group gets between SIGTERM and SIGKILL."""
NODE_HEARTBEAT_S = 2.0
"""How often an agent tells the collector which leases it still runs."""
MAX_CLAIMS_PER_CONNECTION = 100_000
"""Run ids one SDK connection may claim (Claim frames) at most; more is a protocol error."""
CLAIM_FRAME_RUN_IDS = 1_000
"""Run ids the SDK puts in one Claim frame at most."""
