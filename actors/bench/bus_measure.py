"""The bus benchmark's measuring kit: payloads, paced sending and latency statistics.

Payloads: 64 B, an action chunk (50x6 float32), one 640x480x3 uint8 frame, three frames.
Latency is one-way: the sender stamps CLOCK_MONOTONIC just before sending, the receiver
subtracts on arrival after decoding (same host, same clock).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgevla.actors.wire.messages import ActionChunk, Features, Frame, Observation

SIZES = {
    "64B": lambda: np.zeros(64, np.uint8),
    "chunk_50x6": lambda: np.random.rand(50, 6).astype(np.float32),
    "frame_640x480": lambda: np.random.randint(0, 255, (480, 640, 3), np.uint8),
    "3_frames": lambda: np.random.randint(0, 255, (3, 480, 640, 3), np.uint8),
}


def payload_message(size: str, arr: np.ndarray, t_ns: int):
    if size == "chunk_50x6":
        return ActionChunk(t0_ns=t_ns, dt_ns=33_000_000, actions=arr, t_capture_ns=t_ns)
    if size == "frame_640x480":
        return Frame(camera="top", image=arr, t_capture_ns=t_ns)
    if size == "3_frames":
        return Observation(images={"top": arr[0], "gripper": arr[1], "left": arr[2]},
                           state=np.zeros(6, np.float32), t_capture_ns=t_ns)
    return Features(tensors={"x": arr}, t_capture_ns=t_ns)


def latency_stats(lat_ns: list[int], recv_ns: list[int], sent: int, nbytes: int,
           t_burst_ns: int) -> dict[str, Any]:
    lat_us = np.asarray(lat_ns, np.float64) / 1e3
    elapsed = max(((recv_ns[-1] if recv_ns else t_burst_ns) - t_burst_ns) / 1e9, 1e-9)
    return {
        "received": len(lat_ns), "sent": sent,
        "p50_us": float(np.percentile(lat_us, 50)) if len(lat_us) else float("nan"),
        "p99_us": float(np.percentile(lat_us, 99)) if len(lat_us) else float("nan"),
        "msgs_per_s": len(recv_ns) / elapsed,
        "MB_per_s": len(recv_ns) * nbytes / elapsed / 1e6,
    }


def rtt_stats(samples: list[int]) -> dict[str, float]:
    a = np.asarray(samples, np.float64) / 1e3
    return {"rtt_p50_us": float(np.percentile(a, 50)) if a.size else float("nan"),
            "rtt_p99_us": float(np.percentile(a, 99)) if a.size else float("nan")}


def sleep_until(t_ns: int) -> None:
    while True:
        left = t_ns - time.monotonic_ns()
        if left <= 0:
            return
        if left > 2_000_000:
            time.sleep((left - 1_000_000) / 1e9)


def memcpy_floor_us(size: str, reps: int = 50) -> float:
    arr = SIZES[size]()
    dst = np.empty_like(arr)
    t = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        np.copyto(dst, arr)
        t.append(time.perf_counter_ns() - t0)
    return float(np.median(t)) / 1e3
