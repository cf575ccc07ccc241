"""The scope and the experiment rule of every gRPC method of the collector. A method missing here is
refused (fail closed), and tests/server/test_auth_methods.py fails when a service gains a method
without an entry. The gRPC health service is open and not listed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runwire.server.auth.scopes import Scope

READ, WRITE = Scope.READ, Scope.WRITE

OPEN_SERVICES = ("grpc.health.v1.Health",)
"""Services every caller may use without a token."""


@dataclass(frozen=True)
class Rule:
    """What a method needs. For a token restricted to experiments (`--experiment`): the request fields
    in `runs` name runs and those in `experiments` name experiments, which must be among the token's;
    `named` refuses a request naming neither (it would cover every experiment); `unrestricted` refuses
    the token outright; `response_filter` keeps only the allowed experiments' entries of the answer;
    `first_message` is the field of a client stream's first message that holds those fields."""

    scope: Scope
    runs: tuple[str, ...] = ()
    experiments: tuple[str, ...] = ()
    named: bool = False
    unrestricted: str = ""
    """Why restricted tokens are refused (empty: they are not)."""
    response_filter: Callable[[Any, frozenset[str]], None] | None = None
    first_message: str = ""
    write_if_new: str = ""
    """The request field naming an experiment that `scope` may only get when it exists: creating it needs
    `write` (a read token may still open `Experiment(ws, name)` of an existing experiment)."""


def _keep_experiments(response: Any, allowed: frozenset[str]) -> None:
    kept = [e for e in response.experiments if e.name in allowed]
    del response.experiments[:]
    response.experiments.extend(kept)


def _keep_active_runs(response: Any, allowed: frozenset[str]) -> None:
    kept = [r for r in response.runs if r.experiment_name in allowed]
    del response.runs[:]
    response.runs.extend(kept)


ALL_EXPERIMENTS = "it carries data of every experiment"

METHOD_RULES: dict[str, Rule] = {
    # Ingest: agents carry the points of every experiment
    "/runwire.v1.Ingest/Ingest": Rule(WRITE, unrestricted=ALL_EXPERIMENTS),
    # Runs
    "/runwire.v1.Runs/GetOrCreateExperiment": Rule(READ, experiments=("name",), named=True, write_if_new="name"),
    "/runwire.v1.Runs/ListExperiments": Rule(READ, experiments=("name",), response_filter=_keep_experiments),
    "/runwire.v1.Runs/CreateRun": Rule(WRITE, runs=("parent_run_id",), experiments=("experiment_name",), named=True),
    "/runwire.v1.Runs/GetRun": Rule(READ, runs=("run_id",)),
    "/runwire.v1.Runs/ListRuns": Rule(READ, runs=("parent_run_id",), experiments=("experiment_name",), named=True),
    "/runwire.v1.Runs/UpdateRun": Rule(WRITE, runs=("run_id",)),
    "/runwire.v1.Runs/SetTags": Rule(WRITE, runs=("run_id",)),
    "/runwire.v1.Runs/AddProperties": Rule(WRITE, runs=("run_id",)),
    "/runwire.v1.Runs/GetMetrics": Rule(READ, runs=("run_id",)),
    "/runwire.v1.Runs/GetLog": Rule(READ, runs=("run_id",)),
    "/runwire.v1.Runs/GetCollectorStatus": Rule(READ),
    # Artifacts: blobs and snapshots are content-addressed (no experiment); files belong to runs
    "/runwire.v1.Artifacts/Upload": Rule(WRITE, runs=("run_id",), first_message="header"),
    "/runwire.v1.Artifacts/UploadBatch": Rule(WRITE, unrestricted="the agent's path for files of every experiment"),
    "/runwire.v1.Artifacts/UploadStatus": Rule(WRITE, runs=("run_id",)),
    "/runwire.v1.Artifacts/Download": Rule(READ, runs=("run_id",)),
    "/runwire.v1.Artifacts/List": Rule(READ, runs=("run_id",)),
    "/runwire.v1.Artifacts/Check": Rule(READ, runs=("run_id",)),
    "/runwire.v1.Artifacts/MissingBlobs": Rule(READ),
    "/runwire.v1.Artifacts/PutSnapshot": Rule(WRITE),
    "/runwire.v1.Artifacts/GetSnapshot": Rule(READ),
    # Live
    "/runwire.v1.Live/Subscribe": Rule(READ, runs=("run_id",), experiments=("experiment_name",), named=True),
    # Compute
    "/runwire.v1.Compute/SubmitRun": Rule(
        WRITE, runs=("run.parent_run_id",), experiments=("run.experiment_name",), named=True
    ),
    "/runwire.v1.Compute/GetJob": Rule(READ, runs=("run_id",)),
    "/runwire.v1.Compute/CancelRun": Rule(WRITE, runs=("run_id",)),
    "/runwire.v1.Compute/Work": Rule(WRITE, unrestricted="a node runs the jobs of every experiment"),
    "/runwire.v1.Compute/ListComputeTargets": Rule(READ, unrestricted="nodes list the runs of every experiment"),
    "/runwire.v1.Compute/ListActiveRuns": Rule(READ, response_filter=_keep_active_runs),
}


def field_value(message: Any, path: str) -> str:
    """The string at a dotted field path of a protobuf message ("" when unset)."""
    for part in path.split("."):
        message = getattr(message, part)
    return str(message)


def is_open(method: str) -> bool:
    return any(method.startswith(f"/{service}/") for service in OPEN_SERVICES)
