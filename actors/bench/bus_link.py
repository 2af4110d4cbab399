"""The bus benchmark's row between machines: camera frames over tcp with CURVE, raw and JPEG.

What a graph across machines does with a camera topic (`actors/runtime/placement.py`): the
producer binds tcp with its machine's CURVE key pair, the consumer trusts it by that key, and
with ``network.jpeg`` the publisher JPEG-encodes each frame and the subscriber decodes it on
arrival. Here both ends run on this host (loopback): the latency is the software's (CURVE,
JPEG, copies), not a network's; the bandwidth is what a real link would have to carry, the
bytes of one frame on the wire times 3 cameras at 30 fps. The frame is camera-like (smooth
shading, edges, sensor noise of sigma 3): JPEG size depends on content, random pixels would
not compress at all. Modes are interleaved message by message, one receiver process for all.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import numpy as np
import zmq

from edgevla.actors.bench.bus_measure import latency_stats, sleep_until
from edgevla.actors.wire.bus import CurveKeys, Publisher, Subscriber
from edgevla.actors.wire.codec import encode
from edgevla.actors.wire.frame_codec import compress_frame
from edgevla.actors.wire.messages import Frame

# mode -> (CURVE, JPEG quality); plain tcp shows what CURVE costs
LINK_MODES = {"tcp_raw": (False, None), "tcp_curve_raw": (True, None),
              "tcp_curve_jpeg90": (True, 90), "tcp_curve_jpeg75": (True, 75)}
CAMERAS, FPS = 3, 30


def camera_like_frame(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([120 + 60 * np.sin(x / 90), 110 + 50 * np.cos(y / 70), 100 + 0.1 * (x + y)], 2)
    for _ in range(12):  # objects: flat patches with hard edges
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(20, 90)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _keys() -> tuple[CurveKeys, CurveKeys]:
    spub, ssec = zmq.curve_keypair()
    cpub, csec = zmq.curve_keypair()
    return CurveKeys(public=spub, secret=ssec), CurveKeys(public=cpub, secret=csec, server_public=spub)


def _receive(endpoints: dict[str, str], client: CurveKeys, expected: int, ready, warm, out_q) -> None:
    ctx = zmq.Context()
    subs = {m: Subscriber(ctx, [ep], ["cam/top"], hwm=10_000, curve=client if LINK_MODES[m][0] else None)
            for m, ep in endpoints.items()}
    poller = zmq.Poller()
    for sub in subs.values():
        poller.register(sub.sock, zmq.POLLIN)
    by_sock = {sub.sock: m for m, sub in subs.items()}
    lat: dict[str, list[int]] = {m: [] for m in endpoints}
    recv: dict[str, list[int]] = {m: [] for m in endpoints}
    warmed: set[str] = set()
    ready.set()
    while sum(len(v) for v in lat.values()) < expected * len(endpoints):
        events = dict(poller.poll(5000))
        if not events:
            break
        for sock in events:
            m = by_sock[sock]
            got = subs[m]._recv_one(0)
            if got is None:
                continue
            now = time.monotonic_ns()
            frame = got[1]
            if frame.producer == "warm":  # connections (CURVE handshakes) are up before timing
                warmed.add(m)
                if len(warmed) == len(endpoints):
                    warm.set()
                continue
            _ = int(frame.image[0, 0, 0])  # decoded, H x W x 3, touched as a consumer would
            lat[m].append(now - frame.t_capture_ns)
            recv[m].append(now)
    out_q.put((lat, recv))
    for sub in subs.values():
        sub.sock.close(linger=0)
    ctx.term()


def run_link(n: int, period_s: float = 1 / 30, base_port: int = 7600) -> list[dict[str, Any]]:
    """One row per mode: one-way latency (send -> decoded on arrival), bytes a frame on the
    wire, and the bandwidth three cameras at 30 fps would need."""
    server, client = _keys()
    endpoints = {m: f"tcp://127.0.0.1:{base_port + i}" for i, m in enumerate(LINK_MODES)}
    ctx = zmq.Context()
    pubs = {m: Publisher(ctx, ep, producer="cam", curve=server if curve else None, jpeg_quality=q,
                         hwm=10_000)
            for (m, (curve, q)), ep in zip(LINK_MODES.items(), endpoints.values())}
    mpc = mp.get_context("spawn")
    ready, warm, out_q = mpc.Event(), mpc.Event(), mpc.Queue()
    proc = mpc.Process(target=_receive, args=(endpoints, client, n, ready, warm, out_q), daemon=True)
    proc.start()
    ready.wait(30)
    image = camera_like_frame()
    deadline = time.monotonic() + 60
    while not warm.is_set() and time.monotonic() < deadline:  # every link up before timing
        for pub in pubs.values():
            pub.send("cam/top", Frame(camera="top", image=image, producer="warm"))
        warm.wait(0.05)
    wire = {m: _wire_bytes(image, q) for m, (_, q) in LINK_MODES.items()}
    t_next = time.monotonic_ns()
    t0 = t_next
    for _ in range(n):
        for m, pub in pubs.items():
            pub.send("cam/top", Frame(camera="top", image=image, t_capture_ns=time.monotonic_ns()))
        t_next += int(period_s * 1e9)
        sleep_until(t_next)
    lat, recv = out_q.get(timeout=120)
    proc.join(10)
    for pub in pubs.values():
        pub.close()
    ctx.term()
    rows = []
    for m in LINK_MODES:
        st = latency_stats(lat[m], recv[m], n, wire[m], t0)
        rows.append({"payload": "frame_640x480", "transport": m, "p50_us": st["p50_us"],
                     "p99_us": st["p99_us"], "lost": n - st["received"],
                     "wire_kB": round(wire[m] / 1e3, 1),
                     "link_Mbit_s_3cam_30fps": round(wire[m] * 8 * CAMERAS * FPS / 1e6, 1)})
    return rows


def _wire_bytes(image: np.ndarray, quality: int | None) -> int:
    frame = Frame(camera="top", image=image, t_capture_ns=1)
    if quality:
        frame = compress_frame(frame, quality)
    return sum(memoryview(f).nbytes for f in encode("cam/top", frame))
