"""Schemathesis against a real collector process (tests/server/studio_data.py: data made through the
SDK): every /api/v1 operation of /api/v1/openapi.json, with generated parameters (valid ones, and
invalid ones), answers without a 5xx, with a documented status, content type and schema. Each
generated case is also sent with its path parameters replaced by names that exist, so the checks
reach real runs, metrics, files and logs, not only 404s."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from runwire.server.studio.openapi import openapi_document
from tests.server.studio_data import EXPERIMENT, get_json, studio_cluster

MAX_EXAMPLES = int(os.environ.get("RUNWIRE_FUZZ_EXAMPLES", "20"))
"""Generated cases per operation and mode (20 keeps the module well under a minute; a long campaign sets
RUNWIRE_FUZZ_EXAMPLES)."""

OPERATIONS = sorted(
    p
    for p, item in openapi_document()["paths"].items()
    if "text/event-stream" not in item["get"]["responses"]["200"].get("content", {})
)
"""Every operation but the never-ending event stream (its parameters are tested in test_sse.py)."""
WITH_QUERY = [
    p for p in OPERATIONS if any(q["in"] == "query" for q in openapi_document()["paths"][p]["get"]["parameters"])
]
"""Operations with query parameters: the ones invalid input can be generated for (paths are free text)."""
CASES = [(p, GenerationMode.POSITIVE) for p in OPERATIONS] + [(p, GenerationMode.NEGATIVE) for p in WITH_QUERY]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with studio_cluster(tmp_path_factory.mktemp("studio-st")) as d:
        yield d


@pytest.fixture(scope="module")
def real_names(data) -> dict[str, str]:
    run = get_json(data.base, f"/api/v1/runs/{data.script_run_id}")["run"]
    files = get_json(data.base, f"/api/v1/runs/{data.script_run_id}/files")["files"]
    return {
        "experiment": EXPERIMENT,
        "run_id": data.script_run_id,
        "metric": "loss",
        "file": files[0]["name"],
        "path": run["log_files"][0],
        "target": "local",
    }


@pytest.fixture(scope="module")
def api_schema(data):
    return schemathesis.openapi.from_url(f"{data.base}/api/v1/openapi.json")


def _real(path: str, key: str, names: dict[str, str]) -> str | None:
    if key == "name":
        if "/metrics/" in path:
            return names["metric"]
        if "/files/" in path:
            return names["file"]
        return names["experiment"]
    return names.get(key)


@pytest.mark.parametrize(("path", "mode"), CASES, ids=[f"{p}-{m.value}" for p, m in CASES])
def test_operation_conforms_to_the_document(api_schema, real_names, path, mode):
    operation = api_schema[path]["GET"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        case.call_and_validate()
        if case.path_parameters and mode == GenerationMode.POSITIVE:
            for key in list(case.path_parameters):
                real = _real(path, key, real_names)
                if real is not None:
                    case.path_parameters[key] = real
            case.call_and_validate()

    check()
