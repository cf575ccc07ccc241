"""The agent's Unix-socket server: SDK connections, the frame protocol, acknowledgements.

Per connection: `Hello` first (protocol version checked), then `Batch` frames, each validated
cheaply but for real (producer id, non-empty run id and name, every `MetricPoints` decodes) and
handed to the batcher as the bytes that arrived. `BatchAck{seq}` goes back once every batch up to
`seq` on this connection is in the disk spool (acks are cumulative and coalesced). `Claim` names
runs the peer process owns: new claims are passed to `on_claims(pid, run_ids)` as they arrive (the
agent keeps them in its claims files, see `runwire.agent.watch`), and when a connection with claims
closes, `on_claims_closed(pid, run_ids)` is called (the agent watches that pid and reports the runs
Failed if it exits). `FlushRequest` cuts the open bundle and is answered once everything this
producer sent before it is committed at the collector. A frame that breaks the protocol closes
that connection only, with an `ErrorFrame` naming the reason; the other connections and what is
already spooled are not affected.

The socket file is created with mode 0600 (only the agent's user can connect), or 0660 and owned by
`--socket-group` (members of that group can connect too). Each peer is identified with SO_PEERCRED
(and its groups with SO_PEERGROUPS) and checked again here, whatever the file's mode became: the
agent's own user, root, and with a socket group a process holding that group (primary or
supplementary) are served; anyone else gets an `ErrorFrame` naming the rule, then the connection
closes.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import grp
import itertools
import logging
import os
import socket
import stat
import struct
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runwire import codec
from runwire.agent.batcher import Batcher
from runwire.agent.metrics import AgentStats
from runwire.agent.spool import Spool
from runwire.frames import FrameError, pack, parse_client_frame, read_frame
from runwire.limits import MAX_CLAIMS_PER_CONNECTION, MAX_FRAME_BYTES, PROTOCOL_VERSION
from runwire.v1 import frames_pb2, metrics_pb2

if TYPE_CHECKING:
    from runwire.agent.uploads import Uploads

log = logging.getLogger("runwire.agent.receiver")

SOCKET_READ_LIMIT = 1024 * 1024
"""Stream buffer size of an SDK connection: the agent pauses reading a socket beyond twice this."""
STALE_SOCKET_PROBE_S = 1.0
"""How long the agent tries to connect to an existing socket file to tell a live agent from a stale file."""

MAX_PENDING_FLUSHES = 1024
"""Flush requests one connection may have waiting for the collector; more is a protocol error."""

SOCKET_MODE = 0o600
"""Mode of the agent socket: only the agent's user may connect."""
SOCKET_GROUP_MODE = 0o660
"""Mode of the agent socket with `--socket-group`: that group may connect too."""

_PEERCRED = struct.Struct("3i")
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13; Python does not name it
_MAX_PEER_GROUPS = 65536
_BATCH_TAG = 0x12  # ClientFrame.batch: field 2, length-delimited
_FILE_FRAMES = ("file_begin", "file_chunk", "file_end", "file_wait")


class ProtocolError(Exception):
    """A frame that is well-formed protobuf but breaks the protocol."""


class AgentAlreadyRunning(RuntimeError):
    """Another process answers on the socket path."""


def peer_allowed(
    peer_uid: int, own_uid: int, peer_gids: frozenset[int] = frozenset(), group: int | None = None
) -> bool:
    """The agent's own user, root (who can reach any socket anyway), and with a socket group any
    process holding that group may talk to the agent."""
    return peer_uid in (own_uid, 0) or (group is not None and group in peer_gids)


def refusal_reason(peer_uid: int, own_uid: int, group_name: str | None) -> str:
    rule = f"only uid {own_uid} (the agent's user) and root may use this agent"
    if group_name:
        rule = f"only uid {own_uid} (the agent's user), root and members of group {group_name!r} may use this agent"
    else:
        rule += "; start it with --socket-group GROUP to let a group in"
    return f"permission denied: uid {peer_uid} is refused ({rule})"


def resolve_group(name: str) -> int:
    """The gid of a group name (or a numeric gid); ValueError naming it when there is no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    if name.isdigit():
        return int(name)
    raise ValueError(f"--socket-group: no group named {name!r}")


def peer_groups(sock, primary_gid: int) -> frozenset[int]:
    """Every group of the peer process (SO_PEERGROUPS), its primary group included."""
    gids = {primary_gid}
    size = 64
    while size <= _MAX_PEER_GROUPS:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, size * 4)
        except OSError as e:
            if e.errno == 34 and size < _MAX_PEER_GROUPS:  # ERANGE: more groups than fit
                size *= 8
                continue
            break
        gids.update(array.array("I", raw[: len(raw) // 4 * 4]))
        break
    return frozenset(gids)


def peer_credentials(sock) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return _PEERCRED.unpack(raw)


def raw_batch(body: bytes) -> memoryview | None:
    """The serialized `Batch` inside a `ClientFrame{batch}` body without copying, when the body is
    exactly that one field (what every encoder writes); None otherwise."""
    if not body or body[0] != _BATCH_TAG:
        return None
    length = 0
    shift = 0
    pos = 1
    end = min(len(body), 11)
    while pos < end:
        byte = body[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    else:
        return None
    if pos + length != len(body):
        return None
    return memoryview(body)[pos:]


def validate_batch(batch: metrics_pb2.Batch, producer_id: str) -> int:
    """Check a batch; returns its number of points. Raises ProtocolError naming what is wrong."""
    if batch.producer_id != producer_id:
        raise ProtocolError(
            f"batch seq={batch.seq}: producer_id {batch.producer_id!r} is not the hello's {producer_id!r}"
        )
    points = 0
    for i, mp in enumerate(batch.metrics):
        if not mp.run_id:
            raise ProtocolError(f"batch seq={batch.seq}: metric #{i} ({mp.name!r}) has an empty run_id")
        if not mp.name:
            raise ProtocolError(f"batch seq={batch.seq}: metric #{i} of run {mp.run_id!r} has an empty name")
        try:
            codec.decode_points(mp)
        except codec.CodecError as e:
            raise ProtocolError(f"batch seq={batch.seq}: metric {mp.name!r} of run {mp.run_id!r}: {e}") from e
        except Exception as e:  # anything else the decoder trips on is bad input too
            raise ProtocolError(
                f"batch seq={batch.seq}: metric {mp.name!r} of run {mp.run_id!r} does not decode: {e!r}"
            ) from e
        points += mp.count
    return points


def _agent_frame(**body) -> bytes:
    return pack(frames_pb2.AgentFrame(**body))


class Connection:
    """One SDK connection."""

    def __init__(self, receiver: Receiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cid: int):
        self.receiver = receiver
        self.reader = reader
        self.writer = writer
        self.id = cid
        self.pid = -1
        self.uid = -1
        self.producer_id: str | None = None
        self.claims: dict[str, None] = {}  # run ids the peer process claimed (ordered set)
        self.pending: deque[tuple[int, asyncio.Future]] = deque()  # (batch seq, bundle future)
        self._ack_wakeup = asyncio.Event()
        self.acks_sent = asyncio.Event()
        self.acks_sent.set()
        self._ack_task: asyncio.Task | None = None
        self._flush_tasks: set[asyncio.Task] = set()
        self.reader_task: asyncio.Task | None = None
        self.closed = False

    def _fields(self, **more) -> dict:
        return {"conn": self.id, "pid": self.pid, "uid": self.uid, "producer": self.producer_id or "", **more}

    # --- main loop --------------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            sock = self.writer.get_extra_info("socket")
            gid = -1
            try:
                self.pid, self.uid, gid = peer_credentials(sock)
            except (OSError, AttributeError) as e:
                log.warning("no peer credentials", extra={"fields": self._fields(error=str(e))})
            log.info("client connected", extra={"fields": self._fields()})
            if self.uid >= 0 and not self.receiver.peer_ok(sock, self.uid, gid):
                self.receiver.stats.peers_refused += 1
                raise ProtocolError(refusal_reason(self.uid, os.getuid(), self.receiver.socket_group))
            self._ack_task = asyncio.create_task(self._ack_loop(), name=f"acks-{self.id}")
            await self._read_loop()
        except (FrameError, ProtocolError) as e:
            await self._reject(str(e))
        except asyncio.CancelledError:
            if self.receiver.stopping:
                return  # graceful stop: the receiver sends the last acks, then closes
            await self.close()
            raise
        except (ConnectionError, OSError) as e:
            log.info("client connection broke", extra={"fields": self._fields(error=str(e))})
        except Exception as e:
            log.exception("internal error serving a client", extra={"fields": self._fields()})
            await self._reject(f"internal agent error: {e!r}")
        await self.close()

    async def _read_loop(self) -> None:
        receiver = self.receiver
        batcher = receiver.batcher
        stats = receiver.stats
        reader = self.reader
        max_bytes = receiver.max_frame_bytes
        while True:
            body = await read_frame(reader, max_bytes)
            if body is None:
                log.info("client disconnected", extra={"fields": self._fields()})
                return
            frame = parse_client_frame(body)
            kind = frame.WhichOneof("body")
            if kind == "batch":
                if self.producer_id is None:
                    raise ProtocolError("batch before hello")
                # Backpressure: while the spool is full this connection is not read further (its SDK
                # keeps what it logs); status queries and other connections' frames still are.
                await batcher.wait_room()
                batch = frame.batch
                points = validate_batch(batch, self.producer_id)
                data = raw_batch(body)
                if data is None:
                    data = batch.SerializeToString()
                fut = batcher.add(data, self.producer_id, batch.seq, points)
                self.pending.append((batch.seq, fut))
                self.acks_sent.clear()
                self._ack_wakeup.set()
                stats.batches_received += 1
                stats.points_received += points
                stats.bytes_received += len(body)
            elif kind == "hello":
                self._hello(frame.hello)
            elif kind == "flush":
                if self.producer_id is None:
                    raise ProtocolError("flush before hello")
                self._flush(frame.flush.token)
            elif kind == "claim":
                self._claim(frame.claim)
            elif kind == "status":
                self._send(_agent_frame(status=receiver.status_fn()))
            elif kind in _FILE_FRAMES:
                await self._file_frame(frame, kind)
            else:  # pragma: no cover - parse_client_frame refuses bodies it does not know
                raise ProtocolError(f"unexpected frame {kind!r}")

    async def _file_frame(self, frame: frames_pb2.ClientFrame, kind: str) -> None:
        uploads = self.receiver.uploads
        if self.producer_id is None:
            raise ProtocolError(f"{kind} before hello")
        if uploads is None:
            raise ProtocolError("this agent does not take files")
        from runwire.agent.uploads import UploadProtocolError

        try:
            await uploads.on_frame(self, frame, kind)
        except UploadProtocolError as e:
            raise ProtocolError(str(e)) from e

    def _claim(self, claim: frames_pb2.Claim) -> None:
        if self.producer_id is None:
            raise ProtocolError("claim before hello")
        new = []
        for run_id in claim.run_ids:
            if not run_id:
                raise ProtocolError("claim of an empty run id")
            if run_id not in self.claims:
                self.claims[run_id] = None
                new.append(run_id)
        if len(self.claims) > MAX_CLAIMS_PER_CONNECTION:
            raise ProtocolError(f"more than {MAX_CLAIMS_PER_CONNECTION} runs claimed on one connection")
        on_claims = self.receiver.on_claims
        if new and self.pid > 0 and on_claims is not None:
            try:
                on_claims(self.pid, new)
            except Exception:
                log.exception("could not keep the claims of a client", extra={"fields": self._fields()})
        log.debug(
            "client claims runs",
            extra={"fields": self._fields(claim_pid=self.pid, claimed=len(claim.run_ids), claims=len(self.claims))},
        )

    def _hello(self, hello: frames_pb2.Hello) -> None:
        if self.producer_id is not None:
            raise ProtocolError("second hello on one connection")
        if hello.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version {hello.protocol_version} is not supported (this agent speaks {PROTOCOL_VERSION})"
            )
        if not hello.producer_id:
            raise ProtocolError("hello without a producer_id")
        self.producer_id = hello.producer_id
        log.info(
            "client hello",
            extra={"fields": self._fields(client=hello.client, client_pid=hello.pid)},
        )
        self._send(
            _agent_frame(
                hello_ack=frames_pb2.HelloAck(
                    protocol_version=PROTOCOL_VERSION,
                    agent_id=self.receiver.agent_id,
                    max_frame_bytes=self.receiver.max_frame_bytes,
                )
            )
        )

    # --- acknowledgements -------------------------------------------------------------------------

    async def _ack_loop(self) -> None:
        pending = self.pending
        while True:
            if not pending:
                self.acks_sent.set()
                self._ack_wakeup.clear()
                await self._ack_wakeup.wait()
                continue
            head = pending[0][1]
            if not head.done():
                await asyncio.wait((head,))  # never cancels the shared bundle future
            last = None
            while pending and pending[0][1].done():
                seq, fut = pending.popleft()
                if fut.cancelled() or fut.exception() is not None:
                    await self._reject("the agent could not write a batch to its spool; resend it", protocol=False)
                    return
                last = seq
            if last is not None:
                self._send(_agent_frame(batch_ack=frames_pb2.BatchAck(seq=last)))
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()

    def _flush(self, token: int) -> None:
        if len(self._flush_tasks) >= MAX_PENDING_FLUSHES:
            raise ProtocolError(f"more than {MAX_PENDING_FLUSHES} flushes waiting on one connection")
        self.receiver.batcher.cut()
        last = self.pending[-1][1] if self.pending else None
        task = asyncio.create_task(self._answer_flush(token, last), name=f"flush-{self.id}")
        self._flush_tasks.add(task)
        task.add_done_callback(self._flush_tasks.discard)

    async def _answer_flush(self, token: int, last: asyncio.Future | None) -> None:
        spool = self.receiver.spool
        if last is not None:
            if not last.done():
                await asyncio.wait((last,))
            if last.cancelled() or last.exception() is not None:
                return  # the ack loop reports it and closes
        await spool.wait_committed(self.producer_id, spool.next_seq - 1)
        self._send(_agent_frame(flush_ack=frames_pb2.FlushAck(token=token)))

    # --- sending and closing ----------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def _reject(self, reason: str, protocol: bool = True) -> None:
        """Send an ErrorFrame and close. `protocol`: the client broke the protocol (counted as rejected)."""
        if protocol:
            self.receiver.stats.frames_rejected += 1
        log.warning(
            f"closing client connection of pid {self.pid} (uid {self.uid}): {reason}",
            extra={"fields": self._fields(reason=reason)},
        )
        self._send(_agent_frame(error=frames_pb2.ErrorFrame(reason=reason)))
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        me = asyncio.current_task()
        tasks = [t for t in (self.reader_task, self._ack_task, *self._flush_tasks) if t is not None and t is not me]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        if self.receiver.uploads is not None:
            self.receiver.uploads.connection_closed(self)
        self.receiver._forget(self)
        on_claims_closed = self.receiver.on_claims_closed
        if self.claims and self.pid > 0 and on_claims_closed is not None and not self.receiver.stopping:
            try:
                on_claims_closed(self.pid, list(self.claims))
            except Exception:
                log.exception("could not watch the process of a closed connection", extra={"fields": self._fields()})


class Receiver:
    """Listens on `path`; call `await start()`, then `stop()` and `close()` (see `Agent.stop`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        batcher: Batcher,
        spool: Spool,
        *,
        agent_id: str,
        stats: AgentStats | None = None,
        status_fn: Callable[[], frames_pb2.AgentStatus] | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        uploads: Uploads | None = None,
        on_claims_closed: Callable[[int, list[str]], None] | None = None,
        on_claims: Callable[[int, list[str]], None] | None = None,
        socket_group: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.socket_group = socket_group
        self._group_gid = resolve_group(socket_group) if socket_group else None
        self.batcher = batcher
        self.spool = spool
        self.agent_id = agent_id
        self.stats = stats if stats is not None else AgentStats()
        self.status_fn = status_fn or (lambda: frames_pb2.AgentStatus(agent_id=agent_id, pid=os.getpid()))
        self.max_frame_bytes = max_frame_bytes
        self.uploads = uploads
        self.on_claims_closed = on_claims_closed
        self.on_claims = on_claims
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self._inode: int | None = None

    @property
    def clients(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        prepare_socket_path(self.path)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=str(self.path), limit=SOCKET_READ_LIMIT)
        finally:
            os.umask(old)
        if self._group_gid is not None:
            os.chown(self.path, -1, self._group_gid)
            os.chmod(self.path, SOCKET_GROUP_MODE)
        else:
            os.chmod(self.path, SOCKET_MODE)
        self._inode = os.stat(self.path).st_ino

    @property
    def socket_mode(self) -> int:
        return SOCKET_GROUP_MODE if self._group_gid is not None else SOCKET_MODE

    def peer_ok(self, sock, uid: int, gid: int) -> bool:
        """Whether the peer (uid, primary gid) may use this agent; its other groups are asked for only
        when a socket group could let it in."""
        own = os.getuid()
        if peer_allowed(uid, own):
            return True
        group = self._group_gid
        if group is None:
            return False
        gids = peer_groups(sock, gid) if gid != group else frozenset((gid,))
        return peer_allowed(uid, own, gids, group)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopping:
            writer.close()
            return
        conn = Connection(self, reader, writer, next(self._ids))
        self._connections.add(conn)
        self.stats.connections += 1
        # Our own task, not asyncio's callback task: it is cancelled on stop and on close.
        conn.reader_task = asyncio.create_task(conn.serve(), name=f"conn-{conn.id}")

    def _forget(self, conn: Connection) -> None:
        self._connections.discard(conn)

    async def stop(self) -> None:
        """Stop accepting connections and reading frames; connections stay open for their last acks."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        tasks = [c.reader_task for c in self._connections if c.reader_task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._unlink()

    async def wait_acks(self, timeout: float) -> None:
        """Wait (at most `timeout`) until every connection has acknowledged what it received."""
        waits = [c.acks_sent.wait() for c in list(self._connections) if not c.closed]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout)

    async def close(self) -> None:
        if not self.stopping:
            await self.stop()
        for conn in list(self._connections):
            await conn.close()
        self._connections.clear()

    def _unlink(self) -> None:
        """Remove the socket file if it is still ours."""
        if self._inode is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        self._inode = None


def prepare_socket_path(path: Path) -> None:
    """Make the parent folder, remove a stale socket file, refuse when a live agent answers there."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AgentAlreadyRunning(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(STALE_SOCKET_PROBE_S)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale agent socket", extra={"fields": {"socket": str(path)}})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as e:
        raise AgentAlreadyRunning(f"cannot tell whether an agent listens on {path}: {e}") from e
    finally:
        probe.close()
    raise AgentAlreadyRunning(f"another agent is listening on {path}")
