"""The collectors an agent talks to: the address list, which replica each stream uses, and failover.

`--collector` takes one or more `HOST:PORT` entries separated by commas. An entry whose host is a
DNS name stands for every address it resolves to (A and AAAA records); names are resolved again
each time a stream (re)connects, so replicas added to or removed from the name are followed.

The policy, for every stream role of the agent (`ingest`, `uploads`, `work`):

- The replica list is the entries in the order given, each entry's addresses sorted (DNS servers
  rotate their answers; sorting keeps the choice stable).
- A role starts on replica `(h(agent_id) + ROLE_OFFSETS[role]) mod n`, `h` being the first 8 bytes
  of the sha256 of the agent id: agents spread evenly over the replicas, and one agent's three
  streams go to three different replicas when there are at least three.
- A stream stays on its replica while it works. When it fails (stream error, UNAVAILABLE, the
  collector ending the stream) the next attempt goes to the next replica in the list, after the
  list is resolved again; a replica that left the list sends the role back to its start replica.
  One jittered exponential backoff spans the attempts across the list (the caller's `Backoff`,
  reset once a stream has stayed up a while), so a dead replica costs one quick retry and a
  cluster that is down entirely is not hammered.
- The collector deduplicates SDK batches by (producer_id, seq) in the shared database, so the
  records resent to the new replica (every record not acknowledged yet) are stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from runwire._runtime import format_hostport, parse_hostport
from runwire._transports.channel import ClientSecurity, open_aio_channel

log = logging.getLogger("runwire.agent.collectors")

MAX_COLLECTOR_ENTRIES = 64
"""`--collector` entries (HOST:PORT, comma-separated) an agent takes at most."""

ROLES = ("ingest", "uploads", "work")
REPLICA_FAILURES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN)
"""Call outcomes that blame the replica (unreachable, connection lost, hung) rather than the request."""
CREDENTIAL_FAILURES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
"""Call outcomes that blame the agent's token: the operator's to fix, so what was refused is kept and retried."""
ROLE_OFFSETS = {role: i for i, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Entry:
    """One configured `HOST:PORT`."""

    host: str
    port: int

    @property
    def text(self) -> str:
        return format_hostport(self.host, self.port)

    @property
    def is_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False


@dataclass(frozen=True)
class Target:
    """One replica to dial: `address` (an IP and port, or the entry itself when it could not be
    resolved) and the entry it came from (its host is the name TLS checks)."""

    address: str
    entry: Entry


def parse_collectors(value: str) -> list[Entry]:
    """`HOST:PORT[,HOST:PORT...]` to entries; ValueError naming the bad part."""
    parts = [p.strip() for p in value.split(",")]
    if not value.strip() or any(not p for p in parts):
        raise ValueError(f"expected HOST:PORT[,HOST:PORT...] with no empty entry, got {value!r}")
    if len(parts) > MAX_COLLECTOR_ENTRIES:
        raise ValueError(f"{len(parts)} collector entries, more than MAX_COLLECTOR_ENTRIES ({MAX_COLLECTOR_ENTRIES})")
    entries: list[Entry] = []
    for part in parts:
        try:
            host, port = parse_hostport(part)
        except ValueError as e:
            raise ValueError(f"collector entry {part!r}: {e}") from None
        if port == 0:
            raise ValueError(f"collector entry {part!r}: port 0 is not an address to connect to")
        entry = Entry(host, port)
        if entry not in entries:
            entries.append(entry)
    return entries


def format_collectors(entries: list[Entry]) -> str:
    return ",".join(e.text for e in entries)


def home_index(agent_id: str, role: str, n: int) -> int:
    """The replica a role of this agent starts on (see the module docstring)."""
    if n <= 0:
        raise ValueError("no replica to choose from")
    h = int.from_bytes(hashlib.sha256(agent_id.encode()).digest()[:8], "big")
    return (h + ROLE_OFFSETS[role]) % n


def next_index(targets: list[Target], previous: Target | None, home: int) -> int:
    """The replica after `previous` in `targets`; `home` when there is no previous one or it left."""
    n = len(targets)
    if previous is not None:
        for i, t in enumerate(targets):
            if t.address == previous.address:
                return (i + 1) % n
    return home % n


async def resolve_entry(entry: Entry) -> list[str]:
    """Every address of `entry` as `HOST:PORT` strings, sorted (IPv4 and IPv6)."""
    if entry.is_literal:
        return [entry.text]
    infos = await asyncio.get_running_loop().getaddrinfo(
        entry.host, entry.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return sorted({format_hostport(info[4][0], entry.port) for info in infos})


class Collectors:
    """The configured entries and their last resolution (shared by the agent's links)."""

    def __init__(self, entries: list[Entry], resolve=resolve_entry) -> None:
        if not entries:
            raise ValueError("at least one collector is needed")
        self.entries = entries
        self._resolve = resolve
        self.targets: list[Target] = [Target(e.text, e) for e in entries]
        self._unresolved_logged: set[Entry] = set()

    @classmethod
    def parse(cls, value: str) -> Collectors:
        return cls(parse_collectors(value))

    @property
    def spec(self) -> str:
        return format_collectors(self.entries)

    async def resolve(self) -> list[Target]:
        """Resolve every entry again. An entry that does not resolve stays in the list by name (gRPC
        then reports it unreachable and the stream moves on), logged once until it resolves."""
        targets: list[Target] = []
        seen: set[str] = set()
        for entry in self.entries:
            try:
                addresses = await self._resolve(entry)
                self._unresolved_logged.discard(entry)
            except OSError as e:
                if entry not in self._unresolved_logged:
                    self._unresolved_logged.add(entry)
                    log.warning(
                        f"collector {entry.text} does not resolve ({e}); kept by name",
                        extra={"fields": {"collector": entry.text, "error": str(e)}},
                    )
                addresses = [entry.text]
            for address in addresses or [entry.text]:
                if address not in seen:
                    seen.add(address)
                    targets.append(Target(address, entry))
        self.targets = targets
        return targets


ChannelFactory = Callable[[Target], grpc.aio.Channel]


class CollectorLink:
    """The replica one stream role uses, and its channel.

    `await channel()` gives the current channel, dialling a replica when there is none: the role's
    start replica the first time, the next one in the list after `failed()`. Callers report the
    outcome: `up()` when a call went through, `failed(channel)` when the replica failed them (only
    the first report for a channel moves the role; later ones for the same channel are ignored, so
    many concurrent uploads failing together move it once).
    """

    def __init__(self, collectors: Collectors, role: str, agent_id: str, make_channel: ChannelFactory) -> None:
        if role not in ROLE_OFFSETS:
            raise ValueError(f"unknown stream role {role!r}")
        self.collectors = collectors
        self.role = role
        self.agent_id = agent_id
        self._make_channel = make_channel
        self.target: Target | None = None  # the replica in use (or last used)
        self.connected = False
        self.failovers = 0
        self._channel: grpc.aio.Channel | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        """The replica in use; before the first connection, the one the role will start on."""
        if self.target is not None:
            return self.target.address
        targets = self.collectors.targets
        return targets[home_index(self.agent_id, self.role, len(targets))].address

    async def channel(self) -> grpc.aio.Channel:
        async with self._lock:
            if self._channel is None:
                targets = await self.collectors.resolve()
                home = home_index(self.agent_id, self.role, len(targets))
                previous = self.target
                target = targets[next_index(targets, previous, home)]
                if previous is not None and previous.address != target.address:
                    self.failovers += 1
                    log.info(
                        f"{self.role} stream moves from collector {previous.address} to {target.address}",
                        extra={"fields": {"role": self.role, "from": previous.address, "to": target.address}},
                    )
                self.target = target
                self._channel = self._make_channel(target)
            return self._channel

    def up(self) -> None:
        self.connected = True

    def failed(self, channel: grpc.aio.Channel | None) -> None:
        """The replica behind `channel` failed a call: the next `channel()` dials the next replica."""
        if channel is None or channel is not self._channel:
            return
        self._channel = None
        self.connected = False
        task = asyncio.get_running_loop().create_task(channel.close(grace=None))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        self.connected = False
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close(grace=None)
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task


def channel_factory(security: ClientSecurity | None, options: list[tuple[str, object]]) -> ChannelFactory:
    """Channels as `security` says (TLS, token) with `options`. A replica dialled by an address that
    its entry's name resolved to keeps that name as the authority and as the name TLS checks."""

    def make(target: Target) -> grpc.aio.Channel:
        opts = list(options)
        if target.address != target.entry.text:
            opts.append(("grpc.default_authority", target.entry.text))
            if security is not None and security.tls:
                opts.append(("grpc.ssl_target_name_override", target.entry.host))
        return open_aio_channel(target.address, security, opts)

    return make
