"""The `runwire` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from runwire import __version__

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _commands() -> list[Command]:
    from runwire.agent import main as agent_main
    from runwire.cli import compute, logs, runs, status, submit, sync, tail, token, up
    from runwire.server import main as server_main

    return [
        ("up", up.__doc__ or "", up.add_arguments, up.run),
        ("server", "Run a collector: gRPC ingest and queries, HTTP health and metrics.", server_main.add_arguments,
         server_main.run),
        ("agent", "Run an agent: the sidecar that takes points from training processes on a Unix socket.",
         agent_main.add_arguments, agent_main.run),
        ("status", status.__doc__ or "", status.add_arguments, status.run),
        ("sync", sync.__doc__ or "", sync.add_arguments, sync.run),
        ("tail", tail.__doc__ or "", tail.add_arguments, tail.run),
        ("submit", submit.__doc__ or "", submit.add_arguments, submit.run),
        ("runs", runs.__doc__ or "", runs.add_arguments, runs.run),
        ("logs", logs.__doc__ or "", logs.add_arguments, logs.run),
        ("compute", compute.__doc__ or "", compute.add_arguments, compute.run),
        ("token", token.__doc__ or "", token.add_arguments, token.run),
    ]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwire",
        description="runwire: a self-hosted experiment tracker. `runwire up` starts everything on this machine.",
    )
    parser.add_argument("--version", action="version", version=f"runwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, doc, add_arguments, run in _commands():
        summary = doc.strip().splitlines()[0] if doc.strip() else ""
        p = sub.add_parser(name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


PASSTHROUGH = {"submit": "arguments"}
"""Commands whose arguments after the first `--` go, as they are, to the named attribute."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] | None = None
    if argv[:1] and argv[0] in PASSTHROUGH and "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if passthrough is not None:
        dest = PASSTHROUGH[argv[0]]
        setattr(args, dest, [*getattr(args, dest, []), *passthrough])
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from runwire._transports.channel import ClientSecurityError
    from runwire.exceptions import UserErrorException

    try:
        return int(args._run(args) or 0)
    except ClientSecurityError as e:  # token or TLS settings that cannot work (names the setting or file)
        print(f"runwire {args.command}: {e}", file=sys.stderr)
        return 2
    except UserErrorException as e:  # no config found, a bad config file, ...: the message, not a traceback
        print(f"runwire {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (`runwire logs RUN | head`): stop quietly, and keep the
        # interpreter's final flush from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
