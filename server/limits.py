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
"""Estimated bytes of decoded open tail chunks the SQLite writer (or each PostgreSQL replica) keeps in memory."""

STORE_SERIES_CACHE_ENTRIES = 100_000
"""Metric series whose state (id, kind, columns, count, tail) the SQLite writer (or each PostgreSQL
replica) keeps in memory."""

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

AUTH_CACHE_TTL_S = 5.0
"""Seconds the collector keeps a token looked up from its store: a new or revoked token takes effect
in a running collector within this time (no restart)."""

AUTH_CACHE_MAX_ENTRIES = 10_000
"""Token ids (valid or not) whose lookup the collector keeps at most; beyond it the cache starts over."""

RATE_LIMIT_PER_S = 200.0
"""Default calls per second one token may make (`runwire server --rate-limit`): gRPC calls (a stream
counts once, when it opens) and HTTP requests together, refilled continuously (token bucket)."""

RATE_LIMIT_BURST = 2_000
"""Default calls one token may make at once beyond its rate (`runwire server --rate-burst`): the size
of its bucket."""

MAX_HTTP_BODY_BYTES = 64 * 1024
"""Largest HTTP request body the collector reads (the HTTP API only reads; the login form is the
biggest body it takes); a larger one answers 413."""

NATS_STREAM_NAME_MAX_LENGTH = 64
"""Characters of a live bus stream name (`runwire server --bus-stream`) at most: letters, digits, '-', '_'."""

NATS_PUBLISH_QUEUE_MAX_COMMITS = 10_000
"""Commits a collector holds for the NATS live bus while NATS is slow or unreachable; beyond it (or
`NATS_PUBLISH_QUEUE_MAX_POINTS`) commits are not sent to the other replicas, whose subscribers get a
lag marker naming what was dropped instead."""

NATS_PUBLISH_QUEUE_MAX_POINTS = 2_000_000
"""Metric points of the commits held for the NATS live bus at most (see `NATS_PUBLISH_QUEUE_MAX_COMMITS`)."""

NATS_MESSAGE_MAX_BYTES = 1024 * 1024
"""Bytes of one live bus message at most (less when the NATS server's max_payload is smaller);
commits that waited together go out in one message, a bigger commit in several."""

NATS_PUBLISH_TIMEOUT_S = 5.0
"""Seconds a live bus message waits for JetStream's ack before it is sent again (the same message id:
stored once); also how long a stopping collector tries to send what it still holds."""

NATS_STREAM_MAX_AGE_S = 600.0
"""Seconds the live bus stream keeps a message: a replica that was disconnected for less gets
everything it missed when it reconnects; for longer, its subscribers get a lag marker."""

NATS_STREAM_MAX_BYTES = 1024 * 1024 * 1024
"""Bytes the live bus stream keeps at most (the oldest messages go first)."""

NATS_DUPLICATE_WINDOW_S = 120.0
"""Seconds JetStream remembers a live bus message id (a message sent again within it is stored once)."""

NATS_RECONNECT_WAIT_S = 0.5
"""Seconds between two attempts to reach a NATS server that went away (a collector never gives up)."""

NATS_CONNECT_TIMEOUT_S = 5
"""Seconds a starting collector waits for the NATS server (`--bus`) before it stops with an error."""

NATS_PING_INTERVAL_S = 5
"""Seconds between NATS pings: a dead connection is noticed within two of them."""

NATS_HEARTBEAT_S = 2.0
"""Idle heartbeat of a replica's stream consumer (seconds)."""

PG_POOL_MIN_SIZE = 2
"""PostgreSQL connections a collector keeps open at least (`--store postgresql://…`)."""

PG_POOL_MAX_SIZE = 10
"""PostgreSQL connections a collector opens at most; a call finding all of them busy waits for one."""

PG_CONNECT_TIMEOUT_S = 10.0
"""Seconds a starting collector waits for PostgreSQL before it stops with an error."""

PG_IDLE_IN_TRANSACTION_TIMEOUT_S = 15
"""PostgreSQL ends a collector's session that sits this long inside a transaction (a replica stopped or
stuck mid-commit), releasing its row locks so that the other replicas go on; the stuck replica's commit
fails and the agent, which has moved on, resent those records elsewhere."""

PG_TX_RETRIES = 5
"""Times a PostgreSQL transaction that the server aborted for a deadlock or a serialization failure
(replicas writing the same rows at once) is run again before the error reaches the caller."""
