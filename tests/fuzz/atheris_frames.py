"""Coverage-guided fuzz target (atheris) for the agent's frame decoding path.

    python tests/fuzz/atheris_frames.py -atheris_runs=100000 [CORPUS_DIR]

Feeds arbitrary bytes through `frames.parse_client_frame` and, for batch frames, through
`codec.decode_points` for every MetricPoints — exactly what the agent does with a frame body.
Anything other than FrameError / CodecError is a crash. With a CORPUS_DIR, valid frames of every
kind (`write_seed_corpus`) are written there first, so mutations start from real frames and reach the
column decoders, not only the protobuf parser.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
import numpy as np

from runwire import codec, frames
from runwire.v1 import frames_pb2, metrics_pb2


def one_input(data: bytes) -> None:
    try:
        frame = frames.parse_client_frame(data)
    except frames.FrameError:
        return
    if frame.WhichOneof("body") == "batch":
        for mp in frame.batch.metrics:
            try:
                codec.decode_points(mp)
            except codec.CodecError:
                pass


def seed_frames() -> list[bytes]:
    ts = np.arange(4, dtype=np.int64) * 1000
    steps = np.arange(4, dtype=np.int64)
    metrics = [
        codec.encode_points("r", "loss", codec.SCALAR, ts, steps, [codec.encode_column("", [0.5, 0.25, -1.0, 2.0])]),
        codec.encode_points("r", "n", codec.SCALAR, ts, None, [codec.encode_column("", [1, 2, 3, 4])]),
        codec.encode_points("r", "ok", codec.LIST, ts, None, [codec.encode_column("", [True, False, True, True])]),
        codec.encode_points("r", "s", codec.SCALAR, ts, None, [codec.encode_column("", ["a", "bb", "", "ccc"])]),
        codec.encode_points(
            "r",
            "t",
            codec.TABLE,
            ts,
            None,
            [codec.encode_column("x", [1, 2, 3, 4]), codec.encode_column("y", [0.1] * 4)],
        ),
    ]
    batch = metrics_pb2.Batch(producer_id="p", seq=1, metrics=metrics)
    return [
        frames_pb2.ClientFrame(batch=batch).SerializeToString(),
        *(
            frames_pb2.ClientFrame(batch=metrics_pb2.Batch(producer_id="p", seq=2, metrics=[m])).SerializeToString()
            for m in metrics
        ),
        frames_pb2.ClientFrame(hello=frames_pb2.Hello()).SerializeToString(),
        frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest()).SerializeToString(),
    ]


def write_seed_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(seed_frames()):
        (folder / f"seed{i}").write_bytes(body)


def main() -> None:
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            write_seed_corpus(Path(arg))
    # The editable install loads runwire through a custom finder, which atheris' import hook misses:
    # instrument everything already loaded instead.
    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
