"""Tick jitter of the executor on the wall clock: a real 100 Hz loop running
`ExecutorActor.step`, idle or with one CPU-burning child process per core, optionally at
SCHED_FIFO as on the board."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

import numpy as np

from edgevla.actors.bench.executor_world import CONTROL_HZ, EXECUTOR_PARAMS, FPS, MS, NS, NoisyPolicy
from edgevla.actors.executor.actor import ExecutorActor
from edgevla.actors.wire.clock import WallClock
from edgevla.actors.wire.messages import ActionChunk


def _burn(stop) -> None:  # child process: keep one core busy until told to stop
    x = 0
    while not stop.is_set():
        for _ in range(20000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def _enter_realtime(priority: int = 50):
    """SCHED_FIFO for this thread if allowed (as the executor runs on the board); returns the
    previous (policy, param) to restore, or None when not permitted here."""
    try:
        old = (os.sched_getscheduler(0), os.sched_getparam(0))
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return old
    except (AttributeError, PermissionError, OSError):
        return None


def measure_jitter(duration_s: float, load: bool, realtime: bool = False) -> dict[str, Any]:
    """A real 100 Hz control loop on the wall clock driving ExecutorActor.step."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    burners = [ctx.Process(target=_burn, args=(stop,), daemon=True)
               for _ in range(os.cpu_count() or 1)] if load else []
    for b in burners:  # started before any priority change: they must not inherit it
        b.start()
    restore = None
    try:
        if load:
            time.sleep(0.5)  # let the burners spin up
        if realtime:
            restore = _enter_realtime()
        clock = WallClock()
        actor = ExecutorActor("executor")
        actor.setup(dict(EXECUTOR_PARAMS, strategy="crossfade"))
        policy = NoisyPolicy(latency_ms=150)
        tick = int(NS / CONTROL_HZ)
        n = int(duration_s * CONTROL_HZ)
        t_start = clock.now_ns() + 20 * MS
        # a chunk every 400 ms, published 150 ms after its capture
        chunks = []
        for i in range(int(duration_s / 0.4) + 1):
            tc = t_start + i * 400 * MS
            acts, _ = policy((tc - t_start) / NS)
            chunks.append(ActionChunk(seq=i + 1, t_capture_ns=tc, t_pub_ns=tc + 150 * MS,
                                      t0_ns=tc, dt_ns=int(NS / FPS), actions=acts,
                                      obs_seq=i + 1))
        late = np.zeros(n)
        step_ns = np.zeros(n)
        step_cpu_ns = np.zeros(n)
        j = 0
        for k in range(n):
            sched = t_start + k * tick
            clock.sleep_until_ns(sched)
            woke = clock.now_ns()
            inputs = {}
            while j < len(chunks) and chunks[j].t_pub_ns <= woke:
                inputs["chunks"] = chunks[j]
                j += 1
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            actor.step(clock, inputs)
            step_ns[k] = time.perf_counter_ns() - t0
            step_cpu_ns[k] = time.thread_time_ns() - c0
            late[k] = woke - sched
    finally:
        if restore is not None:
            os.sched_setscheduler(0, restore[0], restore[1])
        stop.set()
        for b in burners:
            b.join(timeout=5)
            if b.is_alive():
                b.terminate()
    return {
        "priority": "SCHED_FIFO" if restore is not None else "normal",
        "jitter_p50_ms": float(np.percentile(late, 50) / MS),
        "jitter_p99_ms": float(np.percentile(late, 99) / MS),
        "jitter_max_ms": float(np.max(late) / MS),
        "overruns": int(np.sum(late > tick)),
        "step_p50_us": float(np.percentile(step_ns, 50) / 1e3),
        "step_p99_us": float(np.percentile(step_ns, 99) / 1e3),
        "step_cpu_p50_us": float(np.percentile(step_cpu_ns, 50) / 1e3),
        "step_cpu_p99_us": float(np.percentile(step_cpu_ns, 99) / 1e3),
        "starvation_ticks": int(actor.stats()["starvation_ticks"]),
    }
