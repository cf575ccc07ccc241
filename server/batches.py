"""Decoding of one `IngestRequest` into an `IngestUnit`, before it reaches the store.

Content that can never be stored (an unknown codec, a payload that does not decompress or parse,
points that do not decode, a batch without producer id) raises `RejectedRequest` for the whole
request. Points that decode but break a per-metric rule (name or column limits) are kept as
`PointsInput.problem`: the store drops them with a warning, unless their batch is a duplicate.
Log lines and status changes that break a rule (a line longer than MAX_LOG_LINE_LENGTH, an unknown
status) are dropped item by item, with a warning in `BatchInput.problems`, never the whole batch.
All the work is vectorized per `MetricPoints`, never per point in Python.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from runwire import codec, limits
from runwire.server import limits as server_limits
from runwire.server import rules
from runwire.server.errors import InvalidArgument
from runwire.server.records import BatchInput, IngestUnit, LogInput, PointsInput, RunErrorRecord, StatusInput
from runwire.statuses import RUN_STATUSES
from runwire.v1 import ingest_pb2, metrics_pb2


class RejectedRequest(Exception):
    """The request's content can never be stored; the message is the ack's `reason`."""


def decode_request(request: ingest_pb2.IngestRequest) -> IngestUnit:
    """The request's batches, decoded. Raises RejectedRequest for content that can never be stored."""
    try:
        return _decode(request)
    except RejectedRequest:
        raise
    except Exception as e:  # garbage can trip numpy or protobuf in ways CodecError does not cover
        raise RejectedRequest(f"undecodable payload ({type(e).__name__}: {e})") from e


def _decode(request: ingest_pb2.IngestRequest) -> IngestUnit:
    bundle = metrics_pb2.BatchBundle()
    try:
        bundle.ParseFromString(_payload(request))
    except DecodeError as e:
        raise RejectedRequest(f"payload is not a BatchBundle: {e}") from None
    batches = []
    for index, batch in enumerate(bundle.batches):
        if not batch.producer_id:
            raise RejectedRequest(f"batch {index} has no producer_id (needed to deduplicate it)")
        metrics = []
        for mp in batch.metrics:
            try:
                points = codec.decode_points(mp)
            except codec.CodecError as e:
                raise RejectedRequest(
                    f"batch ({batch.producer_id}, {batch.seq}): run {mp.run_id!r} metric {mp.name!r}: {e}"
                ) from None
            metrics.append(
                PointsInput(
                    run_id=mp.run_id,
                    name=mp.name,
                    kind=mp.kind,
                    description=mp.description,
                    count=points.count,
                    points=points,
                    problem=check_points(mp, points),
                )
            )
        decoded = BatchInput(batch.producer_id, batch.seq, metrics)
        _decode_logs(batch, decoded)
        _decode_statuses(batch, decoded)
        batches.append(decoded)
    return IngestUnit(batches)


def _decode_logs(batch: metrics_pb2.Batch, out: BatchInput) -> None:
    cap = limits.MAX_LOG_LINE_LENGTH
    for ll in batch.logs:
        lines = list(ll.lines)
        where = f"run {ll.run_id!r} log {ll.path!r} lines {ll.first_line}..{ll.first_line + len(lines) - 1}"
        if not ll.path:
            out.problems.append((ll.run_id, f"{where}: the log path is empty; {len(lines)} lines dropped"))
            continue
        if len(ll.path) > limits.MAX_ARTIFACT_NAME_LENGTH:
            out.problems.append(
                (
                    ll.run_id,
                    f"run {ll.run_id!r}: a log path of {len(ll.path)} characters exceeds MAX_ARTIFACT_NAME_LENGTH "
                    f"({limits.MAX_ARTIFACT_NAME_LENGTH}); {len(lines)} lines dropped",
                )
            )
            continue
        longest = max(map(len, lines), default=0)
        if longest > cap:
            out.problems.append(
                (
                    ll.run_id,
                    f"{where}: a line of {longest} characters exceeds MAX_LOG_LINE_LENGTH ({cap}); "
                    f"{len(lines)} lines dropped",
                )
            )
            continue
        if lines:
            out.logs.append(LogInput(ll.run_id, ll.path, ll.first_line, lines))


def _decode_statuses(batch: metrics_pb2.Batch, out: BatchInput) -> None:
    for sc in batch.statuses:
        if sc.status not in RUN_STATUSES:
            out.problems.append(
                (
                    sc.run_id,
                    f"run {sc.run_id!r}: unknown status {sc.status!r} reported (expected one of "
                    f"{', '.join(RUN_STATUSES)}); ignored",
                )
            )
            continue
        error = None
        if sc.error_code or sc.error_message or sc.error_details_json:
            details = sc.error_details_json
            try:
                rules.check_error_details(details)
            except InvalidArgument as e:
                out.problems.append((sc.run_id, f"run {sc.run_id!r}: status {sc.status}: {e}; details dropped"))
                details = ""
            error = RunErrorRecord(sc.error_code, sc.error_message, details)
        out.statuses.append(StatusInput(sc.run_id, sc.status, sc.lease_id, sc.only_if_active, error, sc.time))


def _payload(request: ingest_pb2.IngestRequest) -> bytes:
    limit = server_limits.MAX_DECOMPRESSED_PAYLOAD_BYTES
    if request.codec == ingest_pb2.CODEC_ZSTD:
        try:
            return codec.decompress(request.payload, limit)
        except codec.CodecError as e:
            raise RejectedRequest(f"payload does not decompress: {e}") from None
    if request.codec == ingest_pb2.CODEC_NONE:
        if len(request.payload) > limit:
            raise RejectedRequest(f"payload of {len(request.payload)} bytes exceeds {limit} bytes")
        return request.payload
    raise RejectedRequest(f"unknown payload codec {request.codec}")


def check_points(mp: metrics_pb2.MetricPoints, points: codec.DecodedPoints) -> str | None:
    """The per-metric rule decoded points break, or None."""
    if not mp.name:
        return "the metric name is empty"
    if len(mp.name) > limits.MAX_NAME_LENGTH:
        return f"the metric name has {len(mp.name)} characters, more than MAX_NAME_LENGTH ({limits.MAX_NAME_LENGTH})"
    if len(points.columns) > limits.MAX_COLUMNS:
        return f"{len(points.columns)} columns is more than MAX_COLUMNS ({limits.MAX_COLUMNS})"
    for col in points.columns.values():
        if len(col.name) > limits.MAX_NAME_LENGTH:
            return (
                f"column name {col.name[:40]!r}... has {len(col.name)} characters, more than MAX_NAME_LENGTH "
                f"({limits.MAX_NAME_LENGTH})"
            )
        if col.type == codec.STRING and col.values:
            longest = max(map(len, col.values))
            if longest > limits.MAX_STRING_VALUE_LENGTH:
                what = f"column {col.name!r} has" if col.name else "has"
                return (
                    f"{what} a string of {longest} characters, more than MAX_STRING_VALUE_LENGTH "
                    f"({limits.MAX_STRING_VALUE_LENGTH})"
                )
    return None
