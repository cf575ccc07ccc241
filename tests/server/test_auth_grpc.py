"""The collector's gRPC gate with auth on (in-process collector, raw gRPC with `authorization` metadata):
every method has a scope, bad tokens get UNAUTHENTICATED on every method, each scope boundary holds,
experiment restrictions hold, and the per-token rate limit counts calls (a stream once)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import grpc
import pytest
from auth_helpers import all_methods, bearer, call_code, make_token, method_path, start_auth_collector
from collector_helpers import batch, points, request
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runwire.server import limits as server_limits
from runwire.server.auth.methods import METHOD_RULES, OPEN_SERVICES
from runwire.server.auth.scopes import Scope
from runwire.v1 import artifacts_pb2, compute_pb2, ingest_pb2, ingest_pb2_grpc, live_pb2, runs_pb2, runs_pb2_grpc

DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
async def collector(tmp_path, monkeypatch):
    monkeypatch.setattr(server_limits, "AUTH_CACHE_TTL_S", 0.0)  # every call looks its token up again
    c = await start_auth_collector(tmp_path)
    try:
        yield c
    finally:
        await c.stop(grace=1)


@pytest.fixture
async def channel(collector):
    async with grpc.aio.insecure_channel(collector.grpc_address) as ch:
        yield ch


def test_every_rpc_of_every_service_has_a_scope_rule():
    paths = {method_path(m) for m in all_methods()}
    assert len(paths) >= 28
    missing = sorted(paths - set(METHOD_RULES))
    assert not missing, f"gRPC methods without a scope rule in runwire.server.auth.methods: {missing}"
    stale = sorted(set(METHOD_RULES) - paths)
    assert not stale, f"scope rules for methods that do not exist: {stale}"
    assert not any(p.startswith(tuple(f"/{s}/" for s in OPEN_SERVICES)) for p in paths)


async def test_health_is_open(channel):
    health = health_pb2_grpc.HealthStub(channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service="runwire.v1.Runs"), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_missing_and_bad_tokens_are_unauthenticated_on_every_method(collector, channel):
    good = await make_token(collector, "admin")
    revoked = await make_token(collector, "admin")
    await collector.store.revoke_token(revoked[4:16])
    token_id, secret = good[4:16], good[17:]
    wrong_secret = f"rwt_{token_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    bad = {
        "missing": (),
        "malformed": bearer("rwt_nothex_abc"),
        "not bearer": (("authorization", f"Basic {good}"),),
        "wrong secret": bearer(wrong_secret),
        "unknown id": bearer(f"rwt_000000000000_{secret}"),
        "revoked": bearer(revoked),
    }
    for method in all_methods():
        for what, metadata in bad.items():
            code = await call_code(channel, method, metadata)
            assert code == UNAUTH, f"{method_path(method)} with a {what} token: {code}"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await runs_pb2_grpc.RunsStub(channel).GetCollectorStatus(
            runs_pb2.CollectorStatusRequest(), metadata=bad["revoked"]
        )
    assert "revoked" in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await runs_pb2_grpc.RunsStub(channel).GetCollectorStatus(runs_pb2.CollectorStatusRequest())
    assert "no token" in e.value.details() and "runwire token create" in e.value.details()


async def test_each_scope_reaches_exactly_its_methods(collector, channel):
    tokens = {scope: await make_token(collector, scope.label) for scope in Scope}
    for method in all_methods():
        rule = METHOD_RULES[method_path(method)]
        needed = Scope.WRITE if rule.write_if_new else rule.scope  # the empty request names a new experiment
        for scope, token in tokens.items():
            code = await call_code(channel, method, bearer(token), timeout=1.0)
            if scope.allows(needed):
                assert code not in (UNAUTH, DENIED), f"{method_path(method)} with a {scope.label} token: {code}"
            else:
                assert code == DENIED, f"{method_path(method)} with a {scope.label} token: {code}"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await runs_pb2_grpc.RunsStub(channel).CreateRun(
            runs_pb2.CreateRunRequest(experiment_name="e"), metadata=bearer(tokens[Scope.READ])
        )
    assert e.value.code() == DENIED and "scope write or higher" in e.value.details()
    runs = runs_pb2_grpc.RunsStub(channel)
    read = bearer(tokens[Scope.READ])
    with pytest.raises(grpc.aio.AioRpcError) as e:  # a read token gets an experiment but cannot create one
        await runs.GetOrCreateExperiment(runs_pb2.GetOrCreateExperimentRequest(name="fresh"), metadata=read)
    assert e.value.code() == DENIED and "new experiment 'fresh'" in e.value.details()
    await runs.GetOrCreateExperiment(
        runs_pb2.GetOrCreateExperimentRequest(name="fresh"), metadata=bearer(tokens[Scope.WRITE])
    )
    got = await runs.GetOrCreateExperiment(runs_pb2.GetOrCreateExperimentRequest(name="fresh"), metadata=read)
    assert got.name == "fresh"


async def test_a_method_without_a_rule_is_refused(collector, channel, monkeypatch):
    monkeypatch.delitem(METHOD_RULES, "/runwire.v1.Runs/GetCollectorStatus")
    token = await make_token(collector, "admin")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await runs_pb2_grpc.RunsStub(channel).GetCollectorStatus(
            runs_pb2.CollectorStatusRequest(), metadata=bearer(token)
        )
    assert e.value.code() == DENIED and "no scope defined" in e.value.details()


async def test_experiment_restriction(collector, channel):
    admin = bearer(await make_token(collector, "admin"))
    limited = bearer(await make_token(collector, "write", "allowed", "also"))
    runs = runs_pb2_grpc.RunsStub(channel)
    for exp, run_id in (("allowed", "r-allowed"), ("other", "r-other")):
        await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name=exp, run_id=run_id), metadata=admin)

    ok = await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="allowed", run_id="mine"), metadata=limited)
    assert ok.run_id == "mine"
    m = {m.name: m for m in all_methods()}
    refusals = {
        "CreateRun elsewhere": (m["CreateRun"], runs_pb2.CreateRunRequest(experiment_name="other", run_id="x")),
        "CreateRun under a foreign parent": (
            m["CreateRun"], runs_pb2.CreateRunRequest(experiment_name="allowed", run_id="y", parent_run_id="r-other")),
        "GetRun": (m["GetRun"], runs_pb2.GetRunRequest(run_id="r-other")),
        "ListRuns elsewhere": (m["ListRuns"], runs_pb2.ListRunsRequest(experiment_name="other")),
        "ListRuns of everything": (m["ListRuns"], runs_pb2.ListRunsRequest()),
        "GetOrCreateExperiment": (m["GetOrCreateExperiment"], runs_pb2.GetOrCreateExperimentRequest(name="new")),
        "SetTags": (m["SetTags"], runs_pb2.SetTagsRequest(run_id="r-other")),
        "UpdateRun": (m["UpdateRun"], runs_pb2.UpdateRunRequest(run_id="r-other", status="Completed")),
        "GetMetrics": (m["GetMetrics"], runs_pb2.GetMetricsRequest(run_id="r-other")),
        "Ingest": (m["Ingest"], ingest_pb2.IngestRequest()),
        "Subscribe to everything": (m["Subscribe"], live_pb2.SubscribeRequest()),
        "Subscribe to a foreign run": (m["Subscribe"], live_pb2.SubscribeRequest(run_id="r-other")),
        "Upload to a foreign run": (m["Upload"], artifacts_pb2.UploadRequest(
            header=artifacts_pb2.UploadHeader(run_id="r-other", name="f.txt", size=1, sha256="0" * 64))),
        "UploadBatch": (m["UploadBatch"], artifacts_pb2.UploadRequest()),
        "Download": (m["Download"], artifacts_pb2.DownloadRequest(run_id="r-other", name="f.txt")),
        "SubmitRun elsewhere": (m["SubmitRun"], compute_pb2.SubmitRunRequest(
            run=runs_pb2.CreateRunRequest(experiment_name="other"))),
        "CancelRun": (m["CancelRun"], compute_pb2.CancelRunRequest(run_id="r-other")),
        "Work": (m["Work"], compute_pb2.NodeMessage()),
        "ListComputeTargets": (m["ListComputeTargets"], compute_pb2.ListComputeTargetsRequest()),
    }  # fmt: skip
    for what, (method, req) in refusals.items():
        assert await call_code(channel, method, limited, req) == DENIED, what
        assert await call_code(channel, method, admin, req) != DENIED, what

    assert (await runs.GetRun(runs_pb2.GetRunRequest(run_id="r-allowed"), metadata=limited)).run_id == "r-allowed"
    assert (
        await call_code(channel, m["GetRun"], limited, runs_pb2.GetRunRequest(run_id="nope"))
        == grpc.StatusCode.NOT_FOUND
    )
    listed = await runs.ListExperiments(runs_pb2.ListExperimentsRequest(), metadata=limited)
    assert [e.name for e in listed.experiments] == ["allowed"]
    listed = await runs.ListRuns(runs_pb2.ListRunsRequest(experiment_name="allowed"), metadata=limited)
    assert {r.run_id for r in listed.runs} == {"r-allowed", "mine"}
    await runs.SetTags(
        runs_pb2.SetTagsRequest(run_id="r-allowed", tags=[runs_pb2.KeyValue(key="k", value="v")]), metadata=limited
    )
    data = b"hello"
    header = artifacts_pb2.UploadHeader(
        run_id="r-allowed", name="f.txt", size=len(data), sha256=hashlib.sha256(data).hexdigest(), upload_id="u1"
    )
    upload = [artifacts_pb2.UploadRequest(header=header), artifacts_pb2.UploadRequest(data=data)]
    info = await channel.stream_unary(
        "/runwire.v1.Artifacts/Upload",
        request_serializer=lambda x: x.SerializeToString(),
        response_deserializer=artifacts_pb2.ArtifactInfo.FromString,
    )(iter(upload), metadata=limited)
    assert info.size == len(data)

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await runs.GetRun(runs_pb2.GetRunRequest(run_id="r-other"), metadata=limited)
    assert "belongs to experiment 'other'" in e.value.details() and "'allowed', 'also'" in e.value.details()
    call = ingest_pb2_grpc.IngestStub(channel).Ingest(metadata=limited)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call.read()
    assert e.value.code() == DENIED and "without experiment restriction" in e.value.details()


def test_list_active_runs_answers_are_trimmed_to_the_allowed_experiments():
    rule = METHOD_RULES["/runwire.v1.Compute/ListActiveRuns"]
    response = compute_pb2.ListActiveRunsResponse(
        runs=[compute_pb2.ActiveRun(run_id="a", experiment_name="allowed"),
              compute_pb2.ActiveRun(run_id="b", experiment_name="other")]
    )  # fmt: skip
    rule.response_filter(response, frozenset({"allowed"}))
    assert [r.run_id for r in response.runs] == ["a"]


async def test_rate_limit_counts_calls_and_a_stream_once(tmp_path):
    c = await start_auth_collector(tmp_path, rate_limit=0.001, rate_burst=3)
    try:
        writer = bearer(await make_token(c, "write"))
        other = bearer(await make_token(c, "read"))
        async with grpc.aio.insecure_channel(c.grpc_address) as ch:
            runs = runs_pb2_grpc.RunsStub(ch)
            await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="e", run_id="r"), metadata=writer)  # 1
            call = ingest_pb2_grpc.IngestStub(ch).Ingest(metadata=writer)  # 2: the stream counts once
            for seq in range(1, 6):
                await call.write(request(seq, batch("p", seq, points("r", "m", [float(seq)]))))
                ack = await call.read()
                assert ack.status == ingest_pb2.ACK_STATUS_COMMITTED
            await call.done_writing()
            await runs.GetRun(runs_pb2.GetRunRequest(run_id="r"), metadata=writer)  # 3
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await runs.GetRun(runs_pb2.GetRunRequest(run_id="r"), metadata=writer)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "over its rate limit of 0.001 calls/s (burst 3)" in e.value.details()
            assert (await runs.GetRun(runs_pb2.GetRunRequest(run_id="r"), metadata=other)).run_id == "r"  # own bucket
            health = health_pb2_grpc.HealthStub(ch)  # health is never limited
            for _ in range(5):
                await health.Check(health_pb2.HealthCheckRequest(service=""))
    finally:
        await c.stop(grace=1)


async def test_new_and_revoked_tokens_take_effect_within_the_cache_ttl(tmp_path, monkeypatch):
    monkeypatch.setattr(server_limits, "AUTH_CACHE_TTL_S", 0.3)
    c = await start_auth_collector(tmp_path)
    try:
        token = await make_token(c, "read")  # made after start: no restart needed
        async with grpc.aio.insecure_channel(c.grpc_address) as ch:
            runs = runs_pb2_grpc.RunsStub(ch)

            async def refused() -> bool:
                try:
                    await runs.GetCollectorStatus(runs_pb2.CollectorStatusRequest(), metadata=bearer(token))
                except grpc.aio.AioRpcError as e:
                    assert e.code() == UNAUTH
                    return True
                return False

            assert not await refused()
            await wait_for_async(lambda: c.store.get_token(token[4:16]), lambda t: t.last_used_time is not None)
            await c.store.revoke_token(token[4:16])
            await wait_for_async(refused, bool, timeout=server_limits.AUTH_CACHE_TTL_S + 10)
    finally:
        await c.stop(grace=1)


async def wait_for_async(fetch, predicate, timeout: float = 10.0) -> None:
    """Poll `predicate(await fetch())` until true (a condition, never a blind sleep); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate(await fetch()):
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(0.02)


async def test_auth_on_with_no_token_warns_how_to_create_one(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="runwire.server.app")
    c = await start_auth_collector(tmp_path)
    try:
        assert any("runwire token create --scope admin" in r.getMessage() for r in caplog.records)
    finally:
        await c.stop(grace=1)
