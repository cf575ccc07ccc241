"""The SDK's logging transport: in-memory buffers, a background sender thread, the agent socket.

`run.log()` extends the flat list `Producer.scalars` and returns; nothing else happens on the
caller's thread. The sender thread wakes every `SDK_SEND_INTERVAL_S`, encodes what was buffered
into columnar batches (`_batching`), and writes them as frames to the agent's Unix socket. It keeps
every batch until the agent acknowledges it as spooled; when the agent is unreachable, or too far
behind (`SDK_MAX_UNACKED_BYTES`), batches go to the SDK spool file instead, and are sent from
there as soon as the agent takes them again (or delivered later by `runwire sync`).

One producer per process: after `fork()` the child gets a fresh identity, empty buffers, its own
connection and thread (the parent's unsent data stays the parent's).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util as mp_util
import os
import selectors
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from runwire import _batching, frames
from runwire.limits import (
    CLAIM_FRAME_RUN_IDS,
    MAX_CLAIMS_PER_CONNECTION,
    PROTOCOL_VERSION,
    SDK_MAX_UNACKED_BYTES,
    SDK_SEND_INTERVAL_S,
)
from runwire.v1 import frames_pb2, metrics_pb2

from .sdk_spool import SdkSpool

log = logging.getLogger("runwire.sdk")

AGENT_UNREACHABLE_GRACE_S = 10.0
"""How long `flush()` waits for an unreachable agent before leaving the data in the SDK spool."""
CONNECT_BACKOFF_MAX_S = 2.0
"""Longest pause between two attempts to reach the agent."""
HELLO_TIMEOUT_S = 5.0
EXIT_FLUSH_TIMEOUT_S = float(os.environ.get("RUNWIRE_EXIT_FLUSH_TIMEOUT", "60"))
"""How long interpreter exit waits for logged data to be committed (env RUNWIRE_EXIT_FLUSH_TIMEOUT)."""
CLIENT_NAME = "runwire-sdk/0.1.0"
DRAIN_MAX_POINTS = 16_384
"""Scalar points the sender encodes in one slice before letting other threads run."""
DRAIN_MAX_CALLS = 256
SPOOL_PUMP_SLICE_BYTES = 8 * 1024 * 1024
"""Bytes of the SDK spool file read into memory at a time when handing it to the agent."""
"""log_list/log_row/log_table calls the sender encodes in one slice."""
CLAIM_EXIT_WAIT_S = 2.0
"""How long interpreter exit waits for claims not yet written to the agent socket."""


class FlushTimeout(Exception):
    pass


def max_unacked_bytes() -> int:
    """`SDK_MAX_UNACKED_BYTES`, or the environment's RUNWIRE_SDK_MAX_UNACKED_BYTES (bytes, at least 1)."""
    raw = os.environ.get("RUNWIRE_SDK_MAX_UNACKED_BYTES")
    if not raw:
        return SDK_MAX_UNACKED_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"RUNWIRE_SDK_MAX_UNACKED_BYTES must be a positive number of bytes, got {raw!r}")
    return value


class _Refused(ConnectionError):
    """The agent answered the handshake with an ErrorFrame (e.g. its peer check refused this uid)."""


class _Flush:
    __slots__ = ("done", "sent", "target_seq", "token")

    def __init__(self, token: int) -> None:
        self.token = token
        self.target_seq = -1  # set by the sender once everything before the flush is encoded
        self.sent = False
        self.done = False


class Producer:
    """Buffers, batches and delivers the metric points logged in this process."""

    def __init__(self, socket_path: str | None, spool_dir: Path) -> None:
        self.socket_path = socket_path
        self.spool_dir = spool_dir
        self.max_unacked_bytes = max_unacked_bytes()
        self.scalars: list = []  # SCALAR_FIELDS items per point
        self.others: list[_batching.OtherEntry] = []
        self.descriptions: dict[tuple[str, str], str] = {}
        self._init_state()
        self._start()

    # --- state ------------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self.pid = os.getpid()
        self.producer_id = uuid.uuid4().hex
        self._cond = threading.Condition()
        self._next_seq = 1
        self._unacked: OrderedDict[int, bytes] = OrderedDict()
        self._unacked_bytes = 0
        self._spool = SdkSpool(self.spool_dir, self.producer_id)
        self._spool_pending_upto = 0  # the spool file stays until the agent acks this seq
        self._acked_upto = 0  # highest seq the agent acknowledged (seqs only grow)
        self._flushes: dict[int, _Flush] = {}
        self._next_token = 1
        # Runs this process started (claimed): told to the agent after every Hello, so that it can
        # report them Failed if this process dies without ending them. A dict as an ordered set.
        self._claims: dict[str, None] = {}
        self._claims_unsent: list[str] = []  # claimed since the last (re)connect, not yet queued
        self._sock: socket.socket | None = None
        self._reader: bytearray = bytearray()
        self._out = bytearray()
        self._connect_after = 0.0
        self._backoff = 0.05
        self._unreachable_since: float | None = None
        self._denied = False  # the agent refused this process (socket permissions or its peer check)
        self._closing = False
        self._stopped = False
        self.last_error: str | None = None
        self.points_sent = 0
        self.points_spooled = 0  # points written to the SDK spool (agent unreachable, or at its spool cap)
        self.batches_spooled = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="runwire-sender", daemon=True)
        self._thread.start()

    def after_fork_in_child(self) -> None:
        """The child keeps the same buffer objects (runs hold them) but none of the parent's data."""
        self.scalars.clear()
        self.others.clear()
        self.descriptions.clear()
        if self._sock is not None:
            try:
                os.close(self._sock.detach())
            except OSError:
                pass
        self._spool.forget()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._init_state()
        self._start()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # --- public -----------------------------------------------------------------------------------

    def claim(self, run_id: str) -> None:
        """Tell the agent that this process owns `run_id` (never blocks).

        The sender thread connects to the agent if needed and sends the claim; a process with
        claims stays connected (reconnecting after an agent restart) and sends every claim again
        after each reconnect. If this process then exits without ending the run, the agent
        reports it Failed. A forked child starts with no claims.
        """
        with self._cond:
            if run_id in self._claims:
                return
            if len(self._claims) >= MAX_CLAIMS_PER_CONNECTION:
                log.warning(
                    "runwire: more than %d runs claimed by one process; %s is not claimed",
                    MAX_CLAIMS_PER_CONNECTION,
                    run_id,
                )
                return
            self._claims[run_id] = None
            self._claims_unsent.append(run_id)
        self.wake()

    @property
    def claims(self) -> list[str]:
        """The runs this process claimed, in order."""
        with self._cond:
            return list(self._claims)

    def flush(self, timeout: float) -> None:
        """Return once everything buffered before the call is committed at the collector.

        Raises FlushTimeout (with what is left and where) when that does not happen in time.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            token = self._next_token
            self._next_token += 1
            request = _Flush(token)
            self._flushes[token] = request
        self.wake()
        with self._cond:
            while not request.done:
                now = time.monotonic()
                if self._stopped:
                    break
                if (
                    self._unreachable_since is not None
                    and (self._denied or now - self._unreachable_since > AGENT_UNREACHABLE_GRACE_S)
                    and not self._unacked_in_flight()
                ):
                    break  # a refusal will not go away by waiting: say so at once
                if now >= deadline:
                    break
                self._cond.wait(min(0.5, deadline - now))
            self._flushes.pop(token, None)
            if request.done:
                return
            pending = len(self._unacked) + self._spool.records
        where = f"spooled at {self._spool.path}" if self._spool.records else "waiting in memory"
        reason = self.last_error or "the agent did not confirm in time"
        raise FlushTimeout(
            f"runwire could not confirm delivery ({reason}); {pending} batches are {where} and will be "
            "delivered when the agent is reachable (or run `runwire sync`)"
        )

    def _unacked_in_flight(self) -> bool:
        return bool(self._unacked) and self._sock is not None

    def close(self, timeout: float = EXIT_FLUSH_TIMEOUT_S) -> None:
        """Flush, then stop the thread; whatever is still unconfirmed is left in the SDK spool."""
        if self._stopped or os.getpid() != self.pid:
            return
        self._send_claims_before_exit()
        has_data = self.scalars or self.others or self._unacked or self._spool.records
        if has_data:
            if self._sock is None and self._unreachable_since is not None:
                timeout = 0.0  # the agent is away: spool at once rather than hold up the exit
            try:
                self.flush(timeout)
            except FlushTimeout as e:
                print(f"runwire: {e}", file=sys.stderr)
        with self._cond:
            self._closing = True
        self.wake()
        self._thread.join(timeout=5)

    def _send_claims_before_exit(self) -> None:
        """Give claims not yet on the socket a short chance to get there before the process ends."""
        with self._cond:
            if not self._claims:
                return
        deadline = time.monotonic() + CLAIM_EXIT_WAIT_S
        self.wake()
        with self._cond:
            while (self._claims_unsent or (self._out and self._sock is not None)) and not self._stopped:
                if self._unreachable_since is not None and self._sock is None:
                    return
                now = time.monotonic()
                if now >= deadline:
                    return
                self._cond.wait(min(0.05, deadline - now))

    def stats(self) -> dict[str, object]:
        with self._cond:
            return {
                "producer_id": self.producer_id,
                "connected": self._sock is not None,
                "unacked_batches": len(self._unacked),
                "spooled_batches": self._spool.records,
                "spool_path": str(self._spool.path),
                "points_spooled_total": self.points_spooled,
                "batches_spooled_total": self.batches_spooled,
                "next_seq": self._next_seq,
                "last_error": self.last_error,
            }

    # --- sender thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while True:
                self._drain_buffers()
                with self._cond:
                    closing = self._closing
                    wants_agent = bool(self._unacked or self._spool.records or self._pending_flushes() or self._claims)
                if wants_agent and self._sock is None:
                    self._connect()
                if self._sock is not None:
                    self._queue_claims()
                    self._pump_spool()
                    self._queue_flushes()
                if closing:
                    self._shutdown()
                    return
                self._wait(sel)
        except Exception:  # never let the thread die silently: data would pile up unseen
            log.exception("runwire sender thread failed")
            with self._cond:
                self.last_error = "sender thread failed (see log)"
                self._stopped = True
                self._cond.notify_all()
            self._spill_unacked()

    def _pending_flushes(self) -> bool:
        return any(not f.done for f in self._flushes.values())

    def _wait(self, sel: selectors.BaseSelector) -> None:
        sock = self._sock
        if sock is not None:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._out else 0)
            sel.register(sock, events, "sock")
        try:
            timeout = SDK_SEND_INTERVAL_S
            if sock is None and (self._unacked or self._spool.records or self._claims):
                timeout = max(SDK_SEND_INTERVAL_S, min(0.2, self._connect_after - time.monotonic()))
            for key, mask in sel.select(timeout):
                if key.data == "wake":
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                elif mask & selectors.EVENT_READ:
                    self._read_frames()
                if key.data == "sock" and mask & selectors.EVENT_WRITE and self._sock is not None:
                    self._write_some()
        finally:
            if sock is not None:
                try:
                    sel.unregister(sock)
                except (KeyError, ValueError):
                    pass

    def _drain_buffers(self) -> None:
        """Encode what was logged since the last pass into batches, and note flush targets."""
        with self._cond:
            flushes = [f for f in self._flushes.values() if f.target_seq < 0]
        while True:
            # A bounded slice per pass: every numpy/protobuf call stays short, so this thread never
            # holds the GIL long enough to stall a logging thread.
            n_s = min(len(self.scalars), DRAIN_MAX_POINTS * _batching.SCALAR_FIELDS)
            n_o = min(len(self.others), DRAIN_MAX_CALLS)
            if not n_s and not n_o:
                break
            scalars = self.scalars[:n_s]
            del self.scalars[:n_s]
            others = self.others[:n_o]
            del self.others[:n_o]
            points = _batching.encode_scalars(scalars, self.descriptions)
            points += _batching.encode_others(others, self.descriptions)
            for group in _batching.pack_batches(points):
                self._enqueue_batch(group)
            time.sleep(0)  # let logging threads run between slices
        with self._cond:
            for f in flushes:
                f.target_seq = self._next_seq - 1
                if f.target_seq == 0:  # nothing was ever logged here: nothing to wait for
                    f.done = True
            if flushes:
                self._cond.notify_all()

    def _enqueue_batch(self, group: list) -> None:
        with self._cond:
            seq = self._next_seq
            self._next_seq += 1
        batch = metrics_pb2.Batch(producer_id=self.producer_id, seq=seq, metrics=group)
        frame = frames.pack(frames_pb2.ClientFrame(batch=batch))
        points = sum(mp.count for mp in group)
        self.points_sent += points
        with self._cond:
            direct = self._sock is not None and not self._spool.records and self._unacked_bytes < self.max_unacked_bytes
            if direct:
                self._unacked[seq] = frame
                self._unacked_bytes += len(frame)
        if direct:
            self._send(frame)
        else:
            if not self._spool.records:
                why = "the agent is unreachable" if self._sock is None else "the agent is not taking data (spool cap)"
                log.info("runwire: %s; keeping logged points in %s until it takes them", why, self._spool.path)
            self._spool.append(seq, frame)
            self.points_spooled += points
            self.batches_spooled += 1

    def _claim_frames(self, run_ids: list[str]) -> bytes:
        out = bytearray()
        for i in range(0, len(run_ids), CLAIM_FRAME_RUN_IDS):
            claim = frames_pb2.Claim(run_ids=run_ids[i : i + CLAIM_FRAME_RUN_IDS])
            out += frames.pack(frames_pb2.ClientFrame(claim=claim))
        return bytes(out)

    def _queue_claims(self) -> None:
        with self._cond:
            if not self._claims_unsent or self._sock is None:
                return
            self._out += self._claim_frames(self._claims_unsent)
            self._claims_unsent = []
        self._write_some()

    def _pump_spool(self) -> None:
        """Move spooled batches onto the socket, a slice at a time, while the agent keeps up."""
        while self._spool.records and self._unacked_bytes < self.max_unacked_bytes:
            records = self._spool.read_next(SPOOL_PUMP_SLICE_BYTES)
            with self._cond:
                for seq, frame in records:
                    if seq > self._acked_upto and seq not in self._unacked:
                        self._unacked[seq] = frame
                        self._unacked_bytes += len(frame)
                        self._out += frame
                if not self._spool.records:
                    # The file stays until the agent acknowledges its last record (see _on_frame).
                    self._spool_pending_upto = self._spool.max_seq
            self._write_some()
            if self._sock is None:
                return

    def _queue_flushes(self) -> None:
        with self._cond:
            if self._spool.records:
                return  # a flush frame must follow every batch before it
            for f in self._flushes.values():
                if not f.sent and f.target_seq >= 0 and not f.done:
                    f.sent = True
                    self._out += frames.pack(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=f.token)))
        self._write_some()

    # --- socket -----------------------------------------------------------------------------------

    def _connect(self) -> None:
        now = time.monotonic()
        if now < self._connect_after:
            return
        if not self.socket_path:
            self._unreachable("no agent socket is configured (RUNWIRE_AGENT_SOCKET)")
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(HELLO_TIMEOUT_S)
            sock.connect(self.socket_path)
            hello = frames_pb2.Hello(
                protocol_version=PROTOCOL_VERSION, producer_id=self.producer_id, pid=os.getpid(), client=CLIENT_NAME
            )
            try:
                sock.sendall(frames.pack(frames_pb2.ClientFrame(hello=hello)))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent refused us before reading: its ErrorFrame, read below, says why
            reader = frames.SocketReader(sock)
            body = reader.read()
            if body is None:
                raise ConnectionError("the agent closed the connection during the handshake")
            reply = frames.parse_agent_frame(body)
            if reply.WhichOneof("body") == "error":
                raise _Refused(f"the agent refused the connection: {reply.error.reason}")
            if reply.WhichOneof("body") != "hello_ack":
                raise ConnectionError("the agent answered the handshake with something else")
            sock.setblocking(False)
        except (OSError, frames.FrameError) as e:
            sock.close()
            denied = isinstance(e, (PermissionError, _Refused))
            hint = ""
            if isinstance(e, PermissionError):
                hint = (
                    " (the agent's socket admits only the agent's user, or the group of `runwire agent --socket-group`)"
                )
            self._unreachable(f"cannot reach the agent at {self.socket_path}: {e}{hint}", denied=denied)
            return
        with self._cond:
            self._sock = sock
            self._reader = bytearray(reader._buf)
            self._out = bytearray()
            self._backoff = 0.05
            self._unreachable_since = None
            self.last_error = None
            # Every claim first (right after the Hello), then everything not yet acknowledged, in
            # order, then every pending flush.
            self._out += self._claim_frames(list(self._claims))
            self._claims_unsent = []
            for frame in self._unacked.values():
                self._out += frame
            for f in self._flushes.values():
                f.sent = False
        self._write_some()

    def _unreachable(self, reason: str, denied: bool = False) -> None:
        with self._cond:
            self._denied = denied
            if self.last_error != reason:
                log.debug(reason)
            self.last_error = reason
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
            self._connect_after = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, CONNECT_BACKOFF_MAX_S)
            self._cond.notify_all()
        self._spill_unacked()

    def _spill_unacked(self) -> None:
        """Without an agent, batches waiting for an ack also go to the spool (durable on disk)."""
        with self._cond:
            if self._sock is not None or not self._unacked:
                return
            for seq, frame in self._unacked.items():
                if not self._spool.holds(seq):  # batches pumped from the file are still in it
                    self._spool.append(seq, frame)
            self._spool.rewind()
            self._unacked.clear()
            self._unacked_bytes = 0
            self._spool_pending_upto = 0

    def _disconnect(self, reason: str) -> None:
        with self._cond:
            self._close_socket()
        self._unreachable(reason)

    def _close_socket(self) -> None:
        """Drop the connection and whatever was queued on it (unacked batches are resent later)."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._out = bytearray()

    def _send(self, frame: bytes) -> None:
        with self._cond:
            self._out += frame
        self._write_some()

    def _write_some(self) -> None:
        sock = self._sock
        if sock is None:
            return
        with self._cond:
            if not self._out:
                return
            try:
                n = sock.send(self._out)
            except BlockingIOError:
                return
            except OSError as e:
                n = -1
                error = e
            if n >= 0:
                del self._out[:n]
                if not self._out:
                    self._cond.notify_all()
                return
        self._disconnect(f"lost the agent connection: {error}")

    def _read_frames(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as e:
            self._disconnect(f"lost the agent connection: {e}")
            return
        if not data:
            self._disconnect("the agent closed the connection")
            return
        buf = self._reader
        buf += data
        while len(buf) >= frames.HEADER.size:
            (length,) = frames.HEADER.unpack_from(buf)
            end = frames.HEADER.size + length
            if len(buf) < end:
                break
            body = bytes(buf[frames.HEADER.size : end])
            del buf[:end]
            try:
                frame = frames.parse_agent_frame(body)
            except frames.FrameError as e:
                self._disconnect(f"the agent sent a bad frame: {e}")
                return
            self._on_frame(frame)

    def _on_frame(self, frame: frames_pb2.AgentFrame) -> None:
        kind = frame.WhichOneof("body")
        with self._cond:
            if kind == "batch_ack":
                acked = frame.batch_ack.seq
                self._acked_upto = max(self._acked_upto, acked)
                while self._unacked:
                    seq = next(iter(self._unacked))
                    if seq > acked:
                        break
                    self._unacked_bytes -= len(self._unacked.pop(seq))
                upto = self._spool_pending_upto
                if upto and acked >= upto and not self._spool.records:
                    self._spool.remove()
                    self._spool_pending_upto = 0
            elif kind == "flush_ack":
                f = self._flushes.get(frame.flush_ack.token)
                if f is not None:
                    f.done = True
            elif kind == "error":
                self.last_error = f"the agent reported: {frame.error.reason}"
                log.warning(self.last_error)
            self._cond.notify_all()

    def _shutdown(self) -> None:
        with self._cond:
            self._close_socket()
            self._stopped = True
            self._cond.notify_all()
        self._spill_unacked()
        if self._spool.records:
            self._spool.release()
            print(
                f"runwire: {self._spool.records} batches not yet delivered are kept in {self._spool.path}; "
                "run `runwire sync` to deliver them",
                file=sys.stderr,
            )


# --- one producer per process ---------------------------------------------------------------------

_producers: dict[tuple[str | None, str], Producer] = {}
_lock = threading.Lock()


def get_producer(socket_path: str | None, spool_dir: Path) -> Producer:
    key = (socket_path, str(spool_dir))
    producer = _producers.get(key)
    if producer is None:
        with _lock:
            producer = _producers.get(key)
            if producer is None:
                producer = _producers[key] = Producer(socket_path, spool_dir)
    return producer


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for producer in _producers.values():
        producer.after_fork_in_child()


class _MultiprocessingHook:
    """multiprocessing's fork children leave through os._exit(): atexit does not run there, but
    Finalize callbacks do. Their registry is cleared when a child starts, so the callback is
    registered from an after-fork hook that multiprocessing runs in every child it starts."""

    @staticmethod
    def register_in_child(_: object) -> None:
        mp_util.Finalize(None, close_all, exitpriority=100)


_mp_hook = _MultiprocessingHook()
mp_util.register_after_fork(_mp_hook, _MultiprocessingHook.register_in_child)


def close_all() -> None:
    for producer in list(_producers.values()):
        producer.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close_all)
