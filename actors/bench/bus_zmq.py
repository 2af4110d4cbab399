"""The bus benchmark's ZeroMQ transports, measured side by side in one receiver process.

``raw_zmq`` (bare pyzmq PUB/SUB, zero-copy frames) is the baseline the edgevla bus is held to;
``edgevla``, ``edgevla_copy`` and ``edgevla_inline`` are the project's bus with borrowed
shared-memory views, copied ones, and shared memory off. Messages of all transports are
interleaved so that noise hits all alike; sends are paced so that the latency is not queueing.
"""

from __future__ import annotations

import multiprocessing as mp
import struct
import tempfile
import time
from typing import Any, Callable

import numpy as np
import zmq

from edgevla.actors.bench.bus_measure import SIZES, latency_stats, payload_message, rtt_stats, sleep_until
from edgevla.actors.wire.bus import IMAGE_HWM, SHM_AUTO, Publisher, Subscriber, send_frames
from edgevla.actors.wire.codec import encode
from edgevla.actors.wire.messages import Request
from edgevla.actors.wire.shm import still_valid

ZMQ_MODES = ("raw_zmq", "edgevla", "edgevla_copy", "edgevla_inline")
_BIG_ONLY = ("edgevla_copy", "edgevla_inline")  # below 256 KiB they are the edgevla path


def _recv_zmq_all(endpoints: dict[str, str], expected: dict[str, int], n_thr: int, ready, out_q,
                  ack_q) -> None:
    """One receiver for the three ZeroMQ transports, so they share the same conditions.

    Messages of the latency phase and the unpaced (throughput) phase are told apart by the
    producer name ("lat"/"thr") or, for raw frames, a phase byte. Every latency message is
    answered at once with a small ack over the same kind of transport (the sender times the
    round trip, as gRPC's unary call does by construction).
    """
    ctx = zmq.Context()
    acks = {}
    for m in endpoints:
        a = ctx.socket(zmq.PUSH)
        a.setsockopt(zmq.LINGER, 0)
        a.connect(endpoints[m].replace(".sock", ".ack.sock"))
        acks[m] = a
    ack_msg = encode("ack", Request(reason="ack"))
    raw = ctx.socket(zmq.SUB)
    raw.setsockopt(zmq.RCVHWM, 100_000)
    raw.setsockopt(zmq.SUBSCRIBE, b"")
    raw.connect(endpoints["raw_zmq"])
    subs = {m: Subscriber(ctx, [endpoints[m], endpoints[m].replace(".sock", ".thr.sock")],
                          ["bench"], hwm=100_000, borrow=m == "edgevla")
            for m in ("edgevla", "edgevla_copy", "edgevla_inline") if m in endpoints}
    poller = zmq.Poller()
    poller.register(raw, zmq.POLLIN)
    by_sock = {raw: "raw_zmq"}
    for m, sub in subs.items():
        poller.register(sub.sock, zmq.POLLIN)
        by_sock[sub.sock] = m
    lat: dict[str, list[int]] = {m: [] for m in endpoints}
    thr: dict[str, list[int]] = {m: [] for m in endpoints}
    ready.set()
    total = sum(expected.values())
    while sum(len(v) for v in lat.values()) + sum(len(v) for v in thr.values()) < total:
        events = dict(poller.poll(5000))
        if not events:
            break
        for sock in events:
            mode = by_sock[sock]
            if mode == "raw_zmq":
                frames = raw.recv_multipart(copy=False)
                now = time.monotonic_ns()
                (t_send,) = struct.unpack("<q", frames[1].buffer)
                _ = np.frombuffer(frames[3].buffer, np.uint8)  # touch it like a consumer
                phase = bytes(frames[2].buffer)
            else:
                got = subs[mode]._recv_one(0)
                if got is None:
                    continue
                msg = got[1]
                if mode == "edgevla":
                    if not still_valid(msg):  # the consumer's after-use check
                        continue
                now = time.monotonic_ns()
                t_send = msg.t_capture_ns
                phase = msg.producer.encode()
            if phase == b"lat":
                lat[mode].append(now - t_send)
                if mode == "raw_zmq":
                    acks[mode].send(b"ack")
                else:
                    send_frames(acks[mode], ack_msg)  # the bus's own send path
            else:
                thr[mode].append(now)
                if len(thr[mode]) == n_thr:
                    ack_q.put(mode)  # this burst is fully drained: the next may start
    raw.close(linger=0)
    for sub in subs.values():
        sub.close()
    for a in acks.values():
        a.close(linger=0)
    out_q.put((lat, thr))
    ctx.term()


def _open_publishers(zctx: zmq.Context, eps: dict[str, str], modes: list[str], big: bool,
                     nbytes: int, n_thr: int) -> tuple[Any, dict[str, Publisher],
                                                       dict[str, Publisher]]:
    """The raw PUB socket, then per edgevla mode a latency and a burst publisher."""
    raw = zctx.socket(zmq.PUB)
    raw.setsockopt(zmq.SNDHWM, 100_000)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(eps["raw_zmq"])
    # Latency messages go out as an actor would send them: a camera-like publisher (queue of
    # IMAGE_HWM frames, the default ring of hwm + 4 slots, which stays cache-warm). The unpaced
    # burst has its own publisher whose ring holds the whole burst (the queues here are 100k
    # deep): a ring smaller than what a subscriber has queued drops the oldest as shm_overwritten.
    def shm_min(m: str) -> int:
        return 0 if m == "edgevla_inline" else SHM_AUTO  # edgevla_copy: same writer as edgevla

    pubs = {m: Publisher(zctx, eps[m], producer="lat", hwm=IMAGE_HWM if big else 100_000,
                         shm_min_bytes=shm_min(m))
            for m in modes if m != "raw_zmq"}
    thr_pubs = {m: Publisher(zctx, eps[m].replace(".sock", ".thr.sock"), producer="thr",
                             hwm=100_000, shm_min_bytes=shm_min(m), shm_slots=n_thr + 16,
                             shm_max_bytes=(n_thr + 16) * nbytes + 2 ** 20)
                for m in modes if m != "raw_zmq"}
    return raw, pubs, thr_pubs


def _open_ack_legs(zctx: zmq.Context, eps: dict[str, str], modes: list[str]
                   ) -> tuple[dict[str, Any], dict[str, Subscriber]]:
    """Where each mode's acks come back: a PULL socket per mode, bound before the receiver."""
    ack_socks = {}
    ack_subs: dict[str, Subscriber] = {}
    for m in modes:
        if m == "raw_zmq":
            a = zctx.socket(zmq.PULL)
            a.setsockopt(zmq.LINGER, 0)
        else:  # the ack leg of an edgevla mode goes through the edgevla bus too
            ack_subs[m] = Subscriber(zctx, [], ["ack"], kind=zmq.PULL, hwm=100_000)
            a = ack_subs[m].sock
        a.bind(eps[m].replace(".sock", ".ack.sock"))
        ack_socks[m] = a
    return ack_socks, ack_subs


def _paced_round_trips(send: Callable[[str, str], None], modes: list[str], n: int,
                       period_s: float, ack_socks: dict[str, Any],
                       ack_subs: dict[str, Subscriber]) -> dict[str, list[int]]:
    """``n`` latency messages per mode, rotating which mode goes first; each waits for its ack."""
    rtt: dict[str, list[int]] = {m: [] for m in modes}
    for i in range(n):
        for mode in modes[i % len(modes):] + modes[:i % len(modes)]:
            t = time.monotonic_ns()
            send(mode, "lat")
            if ack_socks[mode].poll(5000):
                if mode == "raw_zmq":
                    ack_socks[mode].recv()
                elif ack_subs[mode]._recv_one(0) is None:
                    raise RuntimeError(f"{mode}: malformed ack")
                rtt[mode].append(time.monotonic_ns() - t)
            sleep_until(t + int(period_s * 1e9 / len(modes)))
    return rtt


def _bursts(send: Callable[[str, str], None], modes: list[str], n_thr: int,
            ack_q: Any) -> dict[str, int]:
    """An unpaced burst of ``n_thr`` messages per mode, one mode at a time; returns its start."""
    burst_start: dict[str, int] = {}
    time.sleep(0.2)
    for mode in modes:
        burst_start[mode] = time.monotonic_ns()
        for i in range(n_thr):
            send(mode, "thr")
        try:
            ack_q.get(timeout=60)  # wait until the receiver drained this burst
        except Exception:  # noqa: BLE001 - queue.Empty: losses show in the row
            pass
    return burst_start


def run_zmq(size: str, n: int, n_thr: int, period_s: float) -> dict[str, dict[str, Any]]:
    """The ZeroMQ transports (ZMQ_MODES), messages interleaved so noise hits all alike."""
    arr = SIZES[size]()
    big = arr.nbytes > 100_000
    modes = [m for m in ZMQ_MODES if big or m not in _BIG_ONLY]
    ctx_mp = mp.get_context("spawn")
    ready, out_q, ack_q = ctx_mp.Event(), ctx_mp.Queue(), ctx_mp.Queue()
    tmp = tempfile.mkdtemp(prefix="evb")
    eps = {m: f"ipc://{tmp}/{m}.sock" for m in modes}
    expected = {m: n + n_thr for m in modes}
    proc = ctx_mp.Process(target=_recv_zmq_all, args=(eps, expected, n_thr, ready, out_q, ack_q),
                          daemon=True)
    zctx = zmq.Context()
    raw, pubs, thr_pubs = _open_publishers(zctx, eps, modes, big, arr.nbytes, n_thr)
    ack_socks, ack_subs = _open_ack_legs(zctx, eps, modes)
    proc.start()
    ready.wait(30)
    time.sleep(0.5)  # slow joiner: let the subscriptions propagate

    def send(mode: str, phase: str) -> None:
        t = time.monotonic_ns()
        if mode == "raw_zmq":
            raw.send_multipart([b"bench", struct.pack("<q", t), phase.encode(), arr], copy=False)
        else:
            msg = payload_message(size, arr, t)
            msg.producer = phase
            (pubs if phase == "lat" else thr_pubs)[mode].send("bench", msg)

    rtt = _paced_round_trips(send, modes, n, period_s, ack_socks, ack_subs)
    burst_start = _bursts(send, modes, n_thr, ack_q)
    lat, thr = out_q.get(timeout=120)
    proc.join(10)
    raw.close(0)
    for p in [*pubs.values(), *thr_pubs.values()]:
        p.close()
    for a in ack_socks.values():
        a.close(0)  # (the edgevla acks' Subscribers own these sockets; closing once is enough)
    zctx.term()
    return {m: {**latency_stats(lat[m], thr[m], n, arr.nbytes, burst_start[m]),
                **rtt_stats(rtt[m])}
            for m in modes}
