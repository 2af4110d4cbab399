"""ZeroMQ transport for messages: publishers, latest-value subscribers, work queues.

Sockets carry ``[topic, header, *buffers]`` (see `messages`). Large arrays go out zero-copy
(``copy=False``; pyzmq copies below its 64 KiB threshold anyway). Receiving never raises on bad
input: a frame list that does not decode is dropped, counted per (topic, kind) in `BusCounters`
and logged once per (topic, kind), so one broken producer cannot take a consumer down.

Endpoints: ``ipc://`` sockets in a per-run directory created 0700; ``tcp://`` bound on
127.0.0.1 unless configured otherwise; CURVE when a graph declares a remote endpoint.

Shared memory (`shm`): a publisher on an ``ipc://`` endpoint sends every array of at least
``shm_min_bytes`` (256 KiB by default: camera frames, big feature maps) through a ring of
shared-memory slots it owns; only a small descriptor crosses ZeroMQ and each subscriber copies
the slot into a pre-faulted buffer it owns (a borrowing subscriber, ``borrow=True``, gets a
read-only view instead). Off for ``tcp://`` (a remote peer cannot map it),
with ``shm_min_bytes=0``/None, and everywhere with the environment variable ``EDGEVLA_SHM=0``
(the supervisor passes its environment to every actor, so ``EDGEVLA_SHM=0 edgevla run ...``
turns it off for a whole run). ``Publisher.close`` unlinks the segments; the supervisor removes
those of an actor that died without closing.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import zmq

from edgevla.actors.wire import shm as _shm
from edgevla.actors.wire.codec import decode_body, encode
from edgevla.actors.wire.curve_auth import ZAP_DOMAIN
from edgevla.actors.wire.errors import MalformedMessage
from edgevla.actors.wire.frame_codec import compress_frame, decompress_frame, is_compressed
from edgevla.actors.wire.messages import Frame, Message

log = logging.getLogger("edgevla.bus")

_BASE_SEND = zmq.backend.Socket.send  # see Publisher.send
_BASE_RECV = zmq.backend.Socket.recv  # see Subscriber._recv_one
_BASE_GET = zmq.backend.Socket.get
_RCVMORE = zmq.RCVMORE
_MORE = zmq.SNDMORE | zmq.NOBLOCK

SHM_AUTO = -1  # Publisher default: shared memory on ipc:// endpoints (see module docstring)
IMAGE_HWM = 4  # frames are big and only the newest matters: a short queue bounds memory/latency
DEFAULT_HWM = 100


@dataclass
class CurveKeys:
    """CURVE key material for one socket (Z85 bytes). Servers need secret; clients need both."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None  # for clients: the server they trust
    # for clients of several servers (a graph across machines): endpoint -> that server's key
    server_keys: dict[str, bytes] | None = None
    zap_domain: str | None = None  # for servers: ask the context's ZAP handler who may connect


@dataclass
class BusCounters:
    """Per-topic counters a process exposes in its heartbeat."""

    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # superseded by newer
    dropped_send: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # HWM / no peer
    malformed: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    _logged: set[tuple[str, str]] = field(default_factory=set)

    def count_malformed(self, topic: str, err: MalformedMessage) -> None:
        self.malformed[topic][err.kind] += 1
        if (topic, err.kind) not in self._logged:  # once per kind: a flood must not flood the log
            self._logged.add((topic, err.kind))
            log.warning("dropped malformed message on %r (%s): %s", topic, err.kind, err.detail)

    def malformed_total(self) -> int:
        return sum(sum(k.values()) for k in self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": dict(self.received),
            "sent": dict(self.sent),
            "skipped": dict(self.skipped),
            "dropped_send": dict(self.dropped_send),
            "malformed": {t: dict(k) for t, k in self.malformed.items()},
        }


def run_base(base: str | os.PathLike | None = None) -> Path:
    """Where run directories live: ``base``, else $EDGEVLA_RUN_BASE, else a per-user folder."""
    return Path(base or os.environ.get("EDGEVLA_RUN_BASE") or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or "/tmp", f"edgevla-{os.getuid()}"))


def make_run_dir(base: str | os.PathLike | None = None, name: str = "run") -> Path:
    """A private (0700) directory for this run's ipc sockets and state files."""
    base_path = run_base(base)
    base_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(base_path, 0o700)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run, n = base_path / stem, 1
    while True:  # two runs started by one process within a second get distinct directories
        try:
            run.mkdir(mode=0o700)
            break
        except FileExistsError:
            n += 1
            run = base_path / f"{stem}-{n}"
    os.chmod(run, 0o700)  # mkdir's mode is masked by umask; make it exact
    return run


def check_private_dir(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(f"{path}: run directory must be owned by uid {os.getuid()} and "
                              f"mode 0700, got uid {st.st_uid} mode {oct(stat.S_IMODE(st.st_mode))}")


def curve_keys(material: dict[str, Any] | None, *, server: bool) -> CurveKeys | None:
    """A process's CURVE material (z85 strings, as `ActorWiring` hands it out) as the keys of
    its servers (publishers: asking the ZAP handler when the material lists whom it admits) or
    of its clients (subscribers: the server key, and per endpoint where there are several)."""
    if not material:
        return None
    public, secret = material["public"].encode(), material["secret"].encode()
    if server:
        return CurveKeys(public=public, secret=secret,
                         zap_domain=ZAP_DOMAIN if material.get("allowed") else None)
    return CurveKeys(public=public, secret=secret, server_public=material["server_public"].encode(),
                     server_keys={e: k.encode() for e, k in (material.get("server_keys") or {}).items()})


def apply_curve(sock: zmq.Socket, keys: CurveKeys | None, server: bool) -> None:
    if keys is None:
        return
    if server:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_server = True
        if keys.zap_domain:
            sock.zap_domain = keys.zap_domain.encode()
    else:
        if keys.server_public is None:
            raise ValueError("a CURVE client needs the server's public key")
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_serverkey = keys.server_public


def bind(sock: zmq.Socket, endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        # zmq creates the socket file with the process umask: keep it private to this user.
        old = os.umask(0o077)
        try:
            sock.bind(endpoint)
        finally:
            os.umask(old)
    else:
        sock.bind(endpoint)


def send_frames(sock: zmq.Socket, frames: list[Any]) -> None:
    """Send an encoded message without blocking; raises zmq.Again when the queue is full.

    Part by part through the socket's base send: pyzmq's send_multipart re-validates every part
    in Python first, which costs more than the send itself for small messages. When a queue is
    full (Again) libzmq rolls back the parts already written, so a message goes out whole or not
    at all, as with send_multipart.
    """
    send = _BASE_SEND
    send(sock, frames[0], _MORE, True, False)
    last = len(frames) - 1
    for i in range(1, last):
        send(sock, frames[i], _MORE, False, False)
    send(sock, frames[last], zmq.NOBLOCK, False, False)


class Publisher:
    """One bound PUB (stream) or PUSH (work queue) socket; stamps t_pub_ns, producer and seq."""

    def __init__(self, ctx: zmq.Context, endpoint: str, *, producer: str = "",
                 kind: int = zmq.PUB, hwm: int = DEFAULT_HWM, curve: CurveKeys | None = None,
                 counters: BusCounters | None = None, clock_ns=time.monotonic_ns,
                 shm_min_bytes: int | None = SHM_AUTO, shm_slots: int | None = None,
                 shm_max_bytes: int | None = None, jpeg_quality: int | None = None) -> None:
        """``shm_min_bytes``: arrays at least this big go through shared memory (ipc only;
        None/0 disables, `SHM_AUTO` = `shm.DEFAULT_MIN_BYTES` on ipc). ``shm_slots``: messages
        the ring holds before a slot is reused (default ``hwm + 4``: a consumer whose queue is
        full is the one that loses anyway), bounded by ``shm_max_bytes`` per segment.
        ``jpeg_quality``: camera frames leave as JPEG (`frame_codec`; a link between machines)."""
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        if kind == zmq.PUSH:
            # A work queue with no consumer must not block the producer: drop and count instead.
            self.sock.setsockopt(zmq.SNDTIMEO, 0)
        apply_curve(self.sock, curve, server=True)
        bind(self.sock, endpoint)
        self.endpoint = endpoint
        self.producer = producer
        self.jpeg_quality = jpeg_quality
        self.counters = counters or BusCounters()
        self._clock_ns = clock_ns
        self._seq: dict[str, int] = defaultdict(int)
        if shm_min_bytes == SHM_AUTO:
            shm_min_bytes = _shm.DEFAULT_MIN_BYTES
        self.shm: _shm.ShmWriter | None = None
        if shm_min_bytes and endpoint.startswith("ipc://") and _shm.enabled() \
                and _shm.supported():
            self.shm = _shm.ShmWriter(
                min_bytes=shm_min_bytes, slots=shm_slots or min(hwm, 1000) + 4,
                max_bytes=shm_max_bytes or _shm.DEFAULT_MAX_BYTES)

    def send(self, topic: str, msg: Message) -> bool:
        self._seq[topic] += 1
        if not msg.seq:
            msg.seq = self._seq[topic]
        if not msg.producer:
            msg.producer = self.producer
        msg.t_pub_ns = self._clock_ns()
        if self.jpeg_quality and type(msg) is Frame:
            msg = compress_frame(msg, self.jpeg_quality)
        frames = encode(topic, msg, self.shm)
        try:
            send_frames(self.sock, frames)
        except zmq.Again:
            self.counters.dropped_send[topic] += 1
            return False
        self.counters.sent[topic] += 1
        return True

    def send_raw(self, frames: list[Any]) -> bool:
        """Forward already-encoded frames (replay, fault injection)."""
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def close(self) -> None:
        self.sock.close(linger=0)
        if self.shm is not None:
            self.shm.close()


class Subscriber:
    """Connects to every producer of its topics; reads with latest-value or keep-all semantics.

    ZMQ_CONFLATE drops all but one part of a multipart message, so "latest value" is done here:
    `drain()` empties the socket and keeps the newest message per topic, counting the rest as
    skipped. Topics are matched exactly (ZMQ subscriptions are prefixes).
    """

    def __init__(self, ctx: zmq.Context, endpoints: Iterable[str], topics: Iterable[str], *,
                 kind: int = zmq.SUB, hwm: int = DEFAULT_HWM, curve: CurveKeys | None = None,
                 counters: BusCounters | None = None,
                 shm_reader: _shm.ShmReader | None = None, borrow: bool = False) -> None:
        """``borrow``: shared-memory arrays arrive as read-only views into the producer's ring
        instead of copies; each such message carries ``shm_leases`` and the consumer checks
        `shm.still_valid(msg)` after using it (a slot reused meanwhile means drop the result)."""
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        if borrow and shm_reader is None:
            shm_reader = _shm.ShmReader(borrow=True)
        self.shm = shm_reader  # None: the process's default reader, when a message needs one
        self.sock.setsockopt(zmq.LINGER, 0)
        # A producer that binds after we connect is retried every RECONNECT_IVL (100 ms by
        # default), and a PUB drops what it sends until the connection is made: 10 ms keeps a
        # recorder's first missed messages to a step or two. No exponential back-off
        # (RECONNECT_IVL_MAX stays 0): a producer started seconds later, after the M7, would
        # otherwise wait up to the back-off's ceiling to be heard.
        self.sock.setsockopt(zmq.RECONNECT_IVL, 10)
        apply_curve(self.sock, curve, server=False)
        self.topics = {t.encode(): t for t in topics}
        if kind == zmq.SUB:
            if "*" in self.topics.values():
                self.sock.setsockopt(zmq.SUBSCRIBE, b"")
            for t in self.topics:
                self.sock.setsockopt(zmq.SUBSCRIBE, t)
        self._all = "*" in self.topics.values()
        for ep in endpoints:
            if curve is not None and curve.server_keys and ep in curve.server_keys:
                # the key of this endpoint's server: read at connect, so one socket can trust
                # the publishers of several machines
                self.sock.curve_serverkey = curve.server_keys[ep]
            self.sock.connect(ep)
        self.counters = counters or BusCounters()

    def _recv_one(self, flags: int) -> tuple[str, Message] | None:
        # Part by part through the socket's base recv: topic and header as bytes, array
        # buffers as zero-copy frames. Measured 6.5 vs 9.5 µs (cold) for recv_multipart, whose
        # Python loop makes a Frame object for every part. Once the first part is here the
        # rest of the message is too (ZeroMQ delivers multipart messages whole), and every part
        # is read before anything is judged so a rejected message never leaves parts behind.
        sock = self.sock
        raw_topic = _BASE_RECV(sock, flags, True, False)
        header = _BASE_RECV(sock, 0, True, False) if _BASE_GET(sock, _RCVMORE) else None
        buffers = []
        while _BASE_GET(sock, _RCVMORE):
            buffers.append(_BASE_RECV(sock, 0, False, False))
        topic = self.topics.get(raw_topic)
        if topic is None:
            if not self._all:
                return None  # prefix match of a longer topic name: not ours
            topic = raw_topic.decode("utf-8", "replace")
        try:
            if header is None:
                raise MalformedMessage("frame_count", "1 frame(s), need at least 2")
            msg = decode_body(header, buffers, self.shm)
            if type(msg) is Frame and is_compressed(msg):  # JPEG from another machine
                msg = decompress_frame(msg)
            if self.shm is not None and self.shm.leases:
                msg.shm_leases, self.shm.leases = self.shm.leases, []
        except Exception as err:  # noqa: BLE001 - nothing on the wire may crash a consumer
            if self.shm is not None:
                self.shm.leases = []  # of a message that failed part-way: never attach them
            if not isinstance(err, MalformedMessage):
                err = MalformedMessage("decode_error", repr(err))
            self.counters.count_malformed(topic, err)
            return None
        self.counters.received[topic] += 1
        return topic, msg

    def recv(self, timeout_ms: int) -> tuple[str, Message] | None:
        """Block up to timeout_ms for one valid message."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left < 0 or not self.sock.poll(max(left, 0)):
                return None
            got = self._recv_one(0)
            if got is not None:
                return got

    def drain_all(self, limit: int = 10_000) -> list[tuple[str, Message]]:
        """Every valid message waiting now, in arrival order (bounded by ``limit``)."""
        out: list[tuple[str, Message]] = []
        for _ in range(limit):
            try:
                got = self._recv_one(zmq.NOBLOCK)
            except zmq.Again:
                break
            if got is not None:
                out.append(got)
        return out

    def drain(self, limit: int = 10_000) -> dict[str, Message]:
        """The newest valid message per topic waiting now; older ones are counted as skipped."""
        latest: dict[str, Message] = {}
        for topic, msg in self.drain_all(limit):
            if topic in latest:
                self.counters.skipped[topic] += 1
            latest[topic] = msg
        return latest

    def close(self) -> None:
        self.sock.close(linger=0)


def serve_requests(sock: zmq.Socket, handler) -> None:
    """Answer every control request waiting on a REP socket (msgpack map in, map out).

    A request that does not decode or makes the handler raise gets ``{"ok": False, "error"}``:
    a bad client must never take an actor or the supervisor down.
    """
    import msgpack

    while True:
        try:
            raw = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            reply = handler(msgpack.unpackb(raw, raw=False))
        except Exception as exc:  # noqa: BLE001 - answered, never raised
            reply = {"ok": False, "error": repr(exc)}
        sock.send(msgpack.packb(reply, use_bin_type=True, default=str))


def request(ctx: zmq.Context, endpoint: str, payload: dict[str, Any], timeout_ms: int = 1000,
            curve: CurveKeys | None = None) -> dict[str, Any] | None:
    """One control request (msgpack map) to a REP/ROUTER endpoint; None on timeout.

    A fresh REQ socket per call keeps a lost reply from wedging the REQ state machine.
    """
    import msgpack

    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    apply_curve(sock, curve, server=False)
    try:
        sock.connect(endpoint)
        sock.send(msgpack.packb(payload, use_bin_type=True))
        if not sock.poll(timeout_ms):
            return None
        reply = msgpack.unpackb(sock.recv(), raw=False)
        return reply if isinstance(reply, dict) else None
    finally:
        sock.close(linger=0)
