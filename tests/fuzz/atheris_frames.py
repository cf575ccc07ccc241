"""Coverage-guided fuzz target (atheris) for the agent's frame decoding path.

    python tests/fuzz/atheris_frames.py -atheris_runs=100000

Feeds arbitrary bytes through `frames.parse_client_frame` and, for batch frames, through
`codec.decode_points` for every MetricPoints — exactly what the agent does with a frame body.
Anything other than FrameError / CodecError is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from runwire import codec, frames


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


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
