"""The bus benchmark's last row: three 30 fps 640x480 camera streams, checked for loss."""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from typing import Any

import numpy as np
import zmq

from edgevla.actors.bench.bus_measure import sleep_until
from edgevla.actors.wire.bus import Publisher, Subscriber
from edgevla.actors.wire.messages import Frame


def _camera_stream(endpoint: str, fps: float, seconds: float, start_at_ns: int) -> None:
    ctx = zmq.Context()
    pub = Publisher(ctx, endpoint, producer=endpoint, hwm=4)
    img = np.random.randint(0, 255, (480, 640, 3), np.uint8)
    sleep_until(start_at_ns)
    period = int(1e9 / fps)
    n = int(seconds * fps)
    for i in range(n):
        t = start_at_ns + i * period
        sleep_until(t)
        pub.send("cam", Frame(camera=endpoint, image=img, seq=i + 1,
                              t_capture_ns=time.monotonic_ns()))
    time.sleep(0.5)
    pub.close()
    ctx.term()


def three_streams(seconds: float) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="evb")
    eps = [f"ipc://{tmp}/cam{i}.sock" for i in range(3)]
    ctx_mp = mp.get_context("spawn")
    start_at = time.monotonic_ns() + int(3e9)
    procs = [ctx_mp.Process(target=_camera_stream, args=(e, 30.0, seconds, start_at), daemon=True)
             for e in eps]
    for p in procs:
        p.start()
    zctx = zmq.Context()
    sub = Subscriber(zctx, eps, ["cam"], hwm=4)
    last_seq: dict[str, int] = {}
    gaps = received = 0
    lat = []
    deadline = start_at / 1e9 + seconds + 3
    while time.monotonic() < deadline:
        got = sub.recv(200)
        if got is None:
            continue
        _, msg = got
        received += 1
        lat.append(time.monotonic_ns() - msg.t_capture_ns)
        prev = last_seq.get(msg.producer, 0)
        gaps += max(0, msg.seq - prev - 1)
        last_seq[msg.producer] = msg.seq
    for p in procs:
        p.join(10)
    sub.close()
    zctx.term()
    expected = 3 * int(seconds * 30)
    lat_us = np.asarray(lat) / 1e3 if lat else np.array([np.nan])
    return {"expected": expected, "received": received, "lost": expected - received,
            "seq_gaps": gaps, "p50_us": float(np.percentile(lat_us, 50)),
            "p99_us": float(np.percentile(lat_us, 99))}
