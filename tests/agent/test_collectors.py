"""The agent's collector list: parsing, DNS expansion, the start replica of each stream, failover order."""

from __future__ import annotations

import collections

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runwire.agent.collectors import (
    MAX_COLLECTOR_ENTRIES,
    ROLES,
    CollectorLink,
    Collectors,
    Entry,
    Target,
    channel_factory,
    home_index,
    next_index,
    parse_collectors,
    resolve_entry,
)


def test_parse_list_keeps_order_and_drops_repeats():
    entries = parse_collectors("a.example:7420, 10.0.0.2:7421,[::1]:7420,a.example:7420")
    assert entries == [Entry("a.example", 7420), Entry("10.0.0.2", 7421), Entry("::1", 7420)]
    assert [e.text for e in entries] == ["a.example:7420", "10.0.0.2:7421", "[::1]:7420"]
    assert [e.is_literal for e in entries] == [False, True, True]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "no empty entry"),
        ("a:1,,b:2", "no empty entry"),
        ("a:1,b", "'b'"),
        ("a:99999", "'a:99999'"),
        ("a:0", "port 0"),
        (",".join(f"h{i}:1" for i in range(MAX_COLLECTOR_ENTRIES + 1)), "MAX_COLLECTOR_ENTRIES"),
    ],
)
def test_parse_refuses_bad_lists_naming_the_part(value, words):
    with pytest.raises(ValueError, match=words):
        parse_collectors(value)


def test_one_agent_spreads_its_streams_over_three_replicas():
    for agent_id in ("node-1", "node-2", "gpu-17-abcdef"):
        assert sorted(home_index(agent_id, role, 3) for role in ROLES) == [0, 1, 2]
        assert home_index(agent_id, "ingest", 3) == home_index(agent_id, "ingest", 3)  # stable


def test_agents_spread_evenly_over_replicas():
    counts = collections.Counter(home_index(f"host-{i}-{i * 7919:x}", "ingest", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(800 <= c <= 1200 for c in counts.values()), counts


def test_home_index_needs_a_replica():
    with pytest.raises(ValueError):
        home_index("a", "ingest", 0)


def _targets(*addresses: str) -> list[Target]:
    return [Target(a, Entry(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1]))) for a in addresses]


def test_failover_goes_round_the_list():
    targets = _targets("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")
    assert next_index(targets, None, 1) == 1
    assert next_index(targets, targets[1], 1) == 2
    assert next_index(targets, targets[2], 1) == 0  # wraps round
    gone = Target("10.0.0.9:1", Entry("10.0.0.9", 1))
    assert next_index(targets, gone, 5) == 2  # the replica left the list: back to the start replica


async def test_names_expand_to_sorted_addresses_and_are_resolved_again():
    answers = {"db.example": ["10.0.0.3:7420", "10.0.0.1:7420"]}

    async def resolve(entry: Entry) -> list[str]:
        if entry.is_literal:
            return [entry.text]
        if entry.host not in answers:
            raise OSError("Name or service not known")
        return sorted(answers[entry.host])

    collectors = Collectors(parse_collectors("db.example:7420,10.0.0.2:7420,nowhere.example:1"), resolve=resolve)
    targets = await collectors.resolve()
    assert [t.address for t in targets] == ["10.0.0.1:7420", "10.0.0.3:7420", "10.0.0.2:7420", "nowhere.example:1"]
    assert targets[0].entry == Entry("db.example", 7420)
    answers["db.example"] = ["10.0.0.4:7420"]
    assert [t.address for t in await collectors.resolve()][:2] == ["10.0.0.4:7420", "10.0.0.2:7420"]


async def test_real_dns_resolves_localhost():
    addresses = await resolve_entry(Entry("localhost", 7420))
    assert "127.0.0.1:7420" in addresses or "[::1]:7420" in addresses
    assert addresses == sorted(addresses)


class _Channel:
    """Stands in for a grpc.aio.Channel: the link only dials and closes channels."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.closed = False

    async def close(self, grace=None) -> None:
        self.closed = True


async def test_link_stays_on_a_working_replica_and_moves_once_per_failure():
    collectors = Collectors.parse("127.0.0.1:1001,127.0.0.1:1002,127.0.0.1:1003")
    link = CollectorLink(collectors, "uploads", "agent-x", _Channel)
    first = await link.channel()
    home = home_index("agent-x", "uploads", 3)
    assert first.target.address == f"127.0.0.1:{1001 + home}"
    assert await link.channel() is first  # no failure: same channel
    link.up()
    assert link.connected
    link.failed(first)
    link.failed(first)  # a second worker reporting the same broken channel moves nothing more
    second = await link.channel()
    assert second.target.address == f"127.0.0.1:{1001 + (home + 1) % 3}"
    assert not link.connected and link.failovers == 1
    link.failed(first)  # stale report
    assert await link.channel() is second
    link.failed(second)
    third = await link.channel()
    assert third.target.address == f"127.0.0.1:{1001 + (home + 2) % 3}"
    await link.close()
    assert first.closed and second.closed and third.closed


async def test_link_with_one_collector_reconnects_to_it():
    link = CollectorLink(Collectors.parse("127.0.0.1:7420"), "ingest", "a", _Channel)
    ch = await link.channel()
    link.failed(ch)
    again = await link.channel()
    assert again is not ch and again.target.address == "127.0.0.1:7420" and link.failovers == 0
    await link.close()


def test_link_refuses_unknown_roles():
    with pytest.raises(ValueError, match="role"):
        CollectorLink(Collectors.parse("127.0.0.1:1"), "bogus", "a", _Channel)


async def _health_server() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_link_fails_over_between_real_grpc_servers():
    (one, p1), (two, p2) = await _health_server(), await _health_server()
    link = CollectorLink(
        Collectors.parse(f"127.0.0.1:{p1},127.0.0.1:{p2}"), "ingest", "agent-y", channel_factory(None, [])
    )
    try:
        channel = await link.channel()
        first = link.address
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        await (one if first.endswith(f":{p1}") else two).stop(None)  # the replica in use dies
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        link.failed(channel)
        channel = await link.channel()
        assert link.address != first and link.failovers == 1
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await link.close()
        await one.stop(None)
        await two.stop(None)


async def test_link_resolves_the_name_again_at_each_reconnection():
    answers = [["10.0.0.1:7420", "10.0.0.2:7420"], ["10.0.0.7:7420"]]
    calls = []

    async def resolve(entry: Entry) -> list[str]:
        calls.append(entry.host)
        return answers[min(len(calls), len(answers)) - 1]

    link = CollectorLink(Collectors(parse_collectors("pods.example:7420"), resolve=resolve), "ingest", "n", _Channel)
    first = await link.channel()
    assert first.target.address in answers[0] and first.target.entry == Entry("pods.example", 7420)
    link.failed(first)
    second = await link.channel()  # the name now has one other address: the old replica left the list
    assert second.target.address == "10.0.0.7:7420" and calls == ["pods.example", "pods.example"]
    await link.close()
