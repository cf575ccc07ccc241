"""Property-based fuzzing (hypothesis) of the frame decoder, the collector's batch decoding, the
columnar codec and the SDK's validation: bad input gets its named error, never anything else."""

from __future__ import annotations

import asyncio
import math
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runwire import _validate, codec, frames
from runwire.exceptions import MetricTypeError, MetricValueError
from runwire.server.batches import RejectedRequest, decode_request
from runwire.v1 import ingest_pb2, metrics_pb2

EXAMPLES = int(os.environ.get("RUNWIRE_FUZZ_EXAMPLES", "300"))
"""Examples per property; CI uses the default, a long campaign sets RUNWIRE_FUZZ_EXAMPLES."""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
)


@FUZZ
@given(st.binary(max_size=512))
def test_client_frame_decoder_only_raises_frame_error(body):
    try:
        frame = frames.parse_client_frame(body)
    except frames.FrameError:
        return
    assert frame.WhichOneof("body") is not None


@FUZZ
@given(st.binary(max_size=2048))
def test_stream_reader_only_raises_frame_error(data):
    async def read_all():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        bodies = []
        while True:
            body = await frames.read_frame(reader, max_bytes=1024)
            if body is None:
                return bodies
            bodies.append(body)

    try:
        bodies = asyncio.run(read_all())
    except frames.FrameError:
        return
    assert sum(len(b) + 4 for b in bodies) == len(data)


columns = st.builds(
    metrics_pb2.Column,
    name=st.text(max_size=5),
    type=st.integers(min_value=0, max_value=6),
    data=st.binary(max_size=64),
    strings=st.lists(st.text(max_size=5), max_size=5),
    nulls=st.lists(st.integers(min_value=0, max_value=20), max_size=4),
)
points = st.builds(
    metrics_pb2.MetricPoints,
    run_id=st.text(max_size=8),
    name=st.text(max_size=8),
    kind=st.integers(min_value=0, max_value=5),
    count=st.integers(min_value=0, max_value=10),
    timestamps=st.binary(max_size=96),
    steps=st.binary(max_size=96),
    columns=st.lists(columns, max_size=3),
)


@FUZZ
@given(points)
def test_codec_decode_points_only_raises_codec_error(mp):
    try:
        decoded = codec.decode_points(mp)
    except codec.CodecError:
        return
    assert decoded.count == mp.count
    for col in decoded.columns.values():
        assert len(col.to_python(decoded.count)) == decoded.count


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=256),
        st.lists(
            st.builds(
                metrics_pb2.Batch,
                producer_id=st.text(max_size=4),
                seq=st.integers(0, 5),
                metrics=st.lists(points, max_size=2),
            ),
            max_size=3,
        ).map(lambda bs: codec.compress(metrics_pb2.BatchBundle(batches=bs).SerializeToString())),
    ),
    st.sampled_from([ingest_pb2.CODEC_NONE, ingest_pb2.CODEC_ZSTD, 7]),
)
def test_collector_batch_decoding_rejects_or_decodes(payload, codec_id):
    request = ingest_pb2.IngestRequest(agent_id="a", seq=1, codec=codec_id, payload=payload)
    try:
        unit = decode_request(request)
    except RejectedRequest as e:
        assert str(e)
        return
    assert unit is not None


@FUZZ
@given(st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=3), scalars, max_size=2)))
def test_log_validation_normalises_or_raises_named_errors(value):
    try:
        out = _validate.check_log_value("m", value)
    except (MetricTypeError, MetricValueError) as e:
        assert "'m'" in str(e)
        return
    assert type(out) in (int, float, bool, str, type(None))


@FUZZ
@given(st.lists(scalars, max_size=20))
def test_log_list_validation_and_round_trip(values):
    try:
        checked = _validate.check_list("m", values)
        _validate.common_class("m", checked, "the list")
    except (MetricTypeError, MetricValueError) as e:
        assert "'m'" in str(e)
        return
    col = codec.encode_column("", checked)
    back = codec.decode_column(col, len(checked)).to_python(len(checked))
    assert len(back) == len(checked)
    promote = any(type(v) is float for v in checked)
    for a, b in zip(checked, back, strict=True):
        if a is None:
            assert b is None
        elif isinstance(a, float) and math.isnan(a):
            assert math.isnan(b)
        elif promote and type(a) is int:
            assert b == float(a) and type(b) is float
        else:
            assert b == a and type(b) is type(a)


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=4), st.lists(scalars, min_size=0, max_size=4), max_size=3))
def test_log_table_validation(table):
    try:
        checked, rows = _validate.check_table("t", table)
    except (MetricTypeError, MetricValueError) as e:
        assert "'t'" in str(e)
        return
    assert all(len(c) == rows for c in checked.values())


@FUZZ
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1, max_size=50))
def test_delta_encoding_round_trips_with_wraparound(values):
    arr = np.array(values, dtype=np.int64)
    assert codec.decode_deltas(codec.encode_deltas(arr), len(arr)).tolist() == values
