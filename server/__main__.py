"""`python -m runwire.server`: the collector on its own."""

from __future__ import annotations

import argparse
import sys

from runwire.server.main import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runwire.server", description="Run the runwire collector.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
