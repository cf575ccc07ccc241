"""Collector-side limits and tuning constants, in addition to the shared ones in `runwire.limits`.

Every value here is a named, documented constant (DESIGN.md principle 6); the README's "Limits"
table should list the ones a user can run into.
"""

from __future__ import annotations

MAX_DECOMPRESSED_PAYLOAD_BYTES = 256 * 1024 * 1024
"""Largest `BatchBundle` an `IngestRequest` payload may expand to; a larger one is rejected."""

MAX_WARNINGS_PER_RUN = 1_000
"""Warnings stored on one run (ingest refusals, `UpdateRun.warnings`); later ones are only acked."""

STORE_CHUNK_MAX_BYTES = 16 * 1024 * 1024
"""Estimated uncompressed bytes of one stored chunk. A chunk is sealed at `STORE_CHUNK_ROWS` rows
or at this size, whichever comes first, so that wide tables keep chunks (and the `MetricData`
messages that carry them) well below `MAX_GRPC_MESSAGE_BYTES`."""

STORE_TAIL_CACHE_BYTES = 256 * 1024 * 1024
"""Estimated bytes of decoded open tail chunks the SQLite writer keeps in memory."""

STORE_SERIES_CACHE_ENTRIES = 100_000
"""Metric series whose state (id, kind, columns, count, tail) the SQLite writer keeps in memory."""

STORE_READER_THREADS = 4
"""Threads (each with its own SQLite connection) serving reads while the writer commits."""

COMMIT_GROUP_MAX_POINTS = 4_000_000
"""Points committed in one store transaction at most when several ingest requests are waiting."""

COMMIT_GROUP_MAX_REQUESTS = 256
"""Ingest requests committed in one store transaction at most."""

INGEST_STREAM_WINDOW = 32
"""Requests of one ingest stream being decoded or committed at once; the stream is not read
further until the oldest is acked (backpressure towards the agent)."""

DECODE_THREADS = 2
"""Threads decompressing and decoding ingest payloads."""

STOP_GRACE_S = 5.0
"""Seconds `runwire server` gives in-flight RPCs to finish when asked to stop."""

PARTIAL_UPLOAD_TTL_S = 24 * 3600.0
"""Seconds the collector keeps the partial file of an interrupted upload for a resume (swept at start)."""
ARTIFACT_IO_THREADS = 4
"""Threads reading, hashing and writing artifact bytes on the collector."""

LIVE_QUEUE_MAX_EVENTS = 1_024
"""Commits (each one queue entry, however many series it touched) waiting to be sent to one live
subscriber at most; beyond it (or beyond `LIVE_QUEUE_MAX_POINTS`) the subscriber misses events and
gets a `lagged` event saying what."""

LIVE_QUEUE_MAX_POINTS = 1_000_000
"""Metric points waiting to be sent to one live subscriber at most (see `LIVE_QUEUE_MAX_EVENTS`):
a commit whose matching points alone exceed it makes even a fast subscriber lag (one series' points
bigger than it pass alone, into an empty queue)."""

LIVE_MESSAGE_MAX_POINTS = 65_536
"""Metric points one live message carries at most: queued metric events are sent together up to it."""

# --- script runs on compute targets (issue 4) -------------------------------------------------------

MAX_TARGET_NAME_LENGTH = 255
"""Characters in a compute target name."""

LEASE_TTL_S = 30.0
"""Default seconds a node's leases outlive its last heartbeat (`runwire server --lease-ttl`). After
it, a lease is lost: a job that never reached Running is queued again, a running one fails with
error code NodeLost (the job's process dies with its agent). Nodes heartbeat every
`runwire.limits.NODE_HEARTBEAT_S`, so it should be many heartbeats long."""

LEASE_SWEEP_INTERVAL_S = 1.0
"""How often the collector looks for leases whose node's heartbeats stopped (at most; a shorter
lease TTL sweeps four times per TTL)."""

LOG_MESSAGE_MAX_BYTES = 1024 * 1024
"""Characters of log lines in one `LogChunk` (GetLog) or history `LogEvent` (Live) at most (at least one line)."""

LOG_READ_PAGE_LINES = 65_536
"""Log lines read from the store in one read transaction when streaming a log file."""
