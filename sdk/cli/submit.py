"""Submit a script with its folder as a run on a compute target, then stream its log until it ends
(as `run.wait_for_completion(show_output=True)` does).

  runwire submit train.py --experiment diabetes -- --alpha 0.5

Everything after `--` is passed to the script. The source folder (default: the script's folder) is
snapshotted and unpacked by the node that runs the job; the folder itself is never written.
Exit status: 0 when the run ends Completed, 1 when it ends Failed or Canceled (the error is
printed), 2 for bad usage, 130 on Ctrl-C (the run keeps going: `runwire logs -f RUN` follows it).
With --detach it prints the run id and returns at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from runwire.cli._common import add_endpoint_arguments, endpoint_from_args, fail, safe
from runwire.jobs import DEFAULT_TARGET
from runwire.limits import MAX_DISPLAY_NAME_LENGTH

FALLBACK_EXPERIMENT = "script"
"""Experiment name of `runwire submit` when the script's file stem has no letter or digit to keep."""

_EXPERIMENT_MAX = 255


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", metavar="SCRIPT", help="the Python script to run (inside --source-dir)")
    parser.add_argument("arguments", nargs="*", metavar="ARGS", help="arguments for the script (put them after `--`)")
    parser.add_argument(
        "--experiment", default=None, metavar="NAME", help="experiment name (default: from the script's file name)"
    )
    parser.add_argument(
        "--source-dir", default=None, metavar="DIR", help="folder snapshotted and run from (default: the script's)"
    )
    parser.add_argument(
        "--compute-target", default=DEFAULT_TARGET, metavar="NAME", help=f"compute target (default {DEFAULT_TARGET})"
    )
    parser.add_argument(
        "--interpreter",
        default=None,
        metavar="PATH",
        help="Python interpreter on the node, user-managed (default: the node agent's Python)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable for the job (repeatable)"
    )
    parser.add_argument(
        "--tag", action="append", default=[], metavar="KEY[=VALUE]", help="tag for the run (repeatable)"
    )
    parser.add_argument("--display-name", default=None, metavar="TEXT", help="the run's display name")
    parser.add_argument("--detach", action="store_true", help="print the run id and return at once")
    add_endpoint_arguments(parser)


def default_experiment_name(script: str | Path) -> str:
    """The experiment name `runwire submit` uses without --experiment: the script's file stem with
    every character other than letters, digits, `_` and `-` made `_`, leading characters that are
    not ASCII letters or digits dropped, cut to 255 characters (`script` if nothing is left)."""
    name = re.sub(r"[^\w-]", "_", Path(script).stem)
    name = re.sub(r"^[^a-zA-Z0-9]+", "", name)[:_EXPERIMENT_MAX]
    return name or FALLBACK_EXPERIMENT


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


def _pairs(items: list[str], what: str, need_value: bool) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or (need_value and not eq):
            form = "KEY=VALUE" if need_value else "KEY[=VALUE]"
            raise UsageError(f"{what} {item!r} is not of the form {form}")
        out[key] = value if eq else None
    return out


def _resolve(args: argparse.Namespace) -> tuple[Path, str]:
    """The source folder and the script's path inside it."""
    script = Path(args.script)
    if not script.is_file():
        raise UsageError(f"no such script: {args.script}")
    source = Path(args.source_dir) if args.source_dir is not None else script.resolve().parent
    if not source.is_dir():
        raise UsageError(f"--source-dir {args.source_dir} is not a folder")
    try:
        relative = script.resolve().relative_to(source.resolve())
    except ValueError:
        raise UsageError(f"the script {args.script} is not inside the source folder {source}") from None
    return source, relative.as_posix()


def _build(args: argparse.Namespace) -> tuple[Any, str, dict[str, str | None]]:
    """The ScriptRunConfig, the experiment name and the tags, or UsageError."""
    from runwire import Environment, ScriptRunConfig
    from runwire.exceptions import UserErrorException
    from runwire.experiment import check_experiment_name

    source, script = _resolve(args)
    name = args.experiment if args.experiment is not None else default_experiment_name(script)
    try:
        check_experiment_name(name)
    except UserErrorException as e:
        raise UsageError(str(e)) from None
    if args.display_name is not None and len(args.display_name) > MAX_DISPLAY_NAME_LENGTH:
        raise UsageError(f"--display-name is longer than MAX_DISPLAY_NAME_LENGTH ({MAX_DISPLAY_NAME_LENGTH})")
    env_vars = _pairs(args.env, "--env", need_value=True)
    tags = _pairs(args.tag, "--tag", need_value=False)
    env = Environment("runwire-submit")
    if args.interpreter:
        env.python.user_managed_dependencies = True
        env.python.interpreter_path = args.interpreter
    if env_vars:
        env.environment_variables.update(env_vars)
    config = ScriptRunConfig(
        source_directory=str(source),
        script=script,
        arguments=list(args.arguments),
        compute_target=args.compute_target,
        environment=env,
    )
    return config, name, tags


def run(args: argparse.Namespace) -> int:
    from runwire import Experiment, Workspace
    from runwire.exceptions import AzureMLException

    try:
        config, name, tags = _build(args)
    except UsageError as e:
        return fail("submit", str(e), 2)
    except (AzureMLException, TypeError, ValueError) as e:
        return fail("submit", str(e), 2)
    try:
        ws = Workspace(_endpoint=endpoint_from_args(args))
        script_run = Experiment(ws, name).submit(config, tags=tags or None)
        if args.display_name is not None:
            script_run.display_name = args.display_name
    except (AzureMLException, OSError, TypeError, ValueError) as e:
        return fail("submit", str(e))
    run_id = script_run.id
    if args.detach:
        print(run_id, flush=True)
        print(f"follow it with: runwire logs -f {safe(run_id)}", file=sys.stderr)
        return 0
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # each streamed line shows at once, also in a pipe
    print(f"Submitted {safe(run_id)} (experiment {safe(name)}, compute target {safe(args.compute_target)})")
    try:
        details = script_run.wait_for_completion(show_output=True, raise_on_error=False)
    except KeyboardInterrupt:
        return _interrupted(run_id)
    except AzureMLException as e:
        if isinstance(e.__context__, KeyboardInterrupt) or isinstance(e.__cause__, KeyboardInterrupt):
            return _interrupted(run_id)
        return fail("submit", f"watching run {run_id}: {e}")
    sys.stdout.flush()
    status = details.get("status", "")
    if status == "Completed":
        return 0
    error = (details.get("error") or {}).get("error") or {}
    reason = f": {error.get('message')}" if error.get("message") else ""
    return fail("submit", f"run {run_id} ended {status}{reason}")


def _interrupted(run_id: str) -> int:
    rid = safe(run_id)
    print(
        f"\nrunwire submit: stopped watching; run {rid} keeps going.\n"
        f"  follow it:  runwire logs -f {rid}\n"
        f"  cancel it:  runwire runs cancel {rid}",
        file=sys.stderr,
    )
    return 130
