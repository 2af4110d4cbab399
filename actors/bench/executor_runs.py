"""One executor run against the simulated policy (edgevla's `ExecutorActor` on a virtual clock,
or LeRobot's async client), and the metrics of its command timeline."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgevla.actors.bench.executor_world import (CAMERA_HZ, CONTROL_HZ, EXECUTOR_PARAMS, FPS, N_JOINTS, NS,
                                                 NoisyPolicy, reference)
from edgevla.actors.bench.lerobot_baseline import LeRobotAsync
from edgevla.actors.executor.actor import ExecutorActor
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.messages import ActionChunk, RobotState


def run_edgevla(strategy: str, policy: NoisyPolicy, duration_s: float) -> dict[str, Any]:
    actor = ExecutorActor("executor")
    actor.setup(dict(EXECUTOR_PARAMS, strategy=strategy))
    clock = VirtualClock(NS)  # t = 1 s at start (0 would read as "no capture time")
    tick = int(NS / CONTROL_HZ)
    cam = int(NS / CAMERA_HZ)
    dt = int(round(NS / FPS))
    pending_request: int | None = None
    busy_until = 0
    in_flight: list[ActionChunk] = []
    seq = 0
    t_cmd, y_cmd, starved, arrivals = [], [], [], []
    state = RobotState(joints=reference(1.0).astype(np.float32))
    for k in range(int(duration_s * CONTROL_HZ)):
        now = NS + k * tick
        clock.set_ns(now)
        inputs: dict[str, Any] = {"state": state} if k == 0 else {}
        due = [c for c in in_flight if c.t_pub_ns <= now]
        if due:
            inputs["chunks"] = due[-1]  # latest-value delivery, as the runtime does
            in_flight = [c for c in in_flight if c.t_pub_ns > now]
            arrivals.append(now)
        out = actor.step(clock, inputs) or {}
        if "requests" in out:
            pending_request = now
        # one policy process: the newest request is served when it is free, at a camera frame
        if pending_request is not None:
            tc = max(-(-max(pending_request, busy_until) // cam) * cam, 0)
            if tc <= now + tick:
                chunk, lat_s = policy(tc / NS)
                t_pub = tc + int(lat_s * NS)
                seq += 1
                in_flight.append(ActionChunk(seq=seq, t_capture_ns=tc, t_pub_ns=t_pub,
                                             producer="policy", t0_ns=tc, dt_ns=dt,
                                             actions=chunk, obs_seq=seq))
                busy_until = t_pub
                pending_request = None
        if "commands" in out:
            c = out["commands"]
            t_cmd.append(c.t_target_ns)
            y_cmd.append(c.positions)
            starved.append(c.starved)
    s = actor.stats()
    return {"t": np.array(t_cmd) / NS, "y": np.array(y_cmd, np.float64),
            "starved": np.array(starved), "tick_s": 1 / CONTROL_HZ, "stats": s,
            "arrivals_s": np.array(arrivals) / NS}


def run_edgevla_blend_only(strategy: str, policy: NoisyPolicy, duration_s: float):
    """Same run, but the safety layer wide open: the blended target itself."""
    saved = dict(EXECUTOR_PARAMS)
    try:
        EXECUTOR_PARAMS.update(max_velocity_rad_s=1e6, max_accel_rad_s2=1e9,
                               hold_decel_rad_s2=1e9)
        return run_edgevla(strategy, policy, duration_s)
    finally:
        EXECUTOR_PARAMS.clear()
        EXECUTOR_PARAMS.update(saved)


def run_lerobot(policy: NoisyPolicy, duration_s: float, lr: dict[str, Any]) -> dict[str, Any]:
    client = LeRobotAsync(fps=FPS, actions_per_chunk=policy.horizon, chunk_size_threshold=0.5,
                          aggregate_fn_name="weighted_average", lerobot=lr)
    measured = reference(1.0)
    t_out, y_out, starved = [], [], []
    started = False

    def serve(state, t_capture_s, timestep):
        return policy(t_capture_s)

    for k in range(int(duration_s * FPS)):
        now_s = 1.0 + k / FPS
        r = client.tick(now_s, measured, serve)
        if r.action is not None:
            measured = r.action  # position-controlled servo reaches its goal
            started = True
        if started:
            t_out.append(now_s)
            y_out.append(measured.copy())
            starved.append(r.action is None)
    return {"t": np.array(t_out), "y": np.array(y_out, np.float64), "starved": np.array(starved),
            "tick_s": 1 / FPS, "stats": client.stats()}



def metrics(run: dict[str, Any], skip_s: float = 1.5) -> dict[str, float]:
    t, y = run["t"], run["y"]
    keep = t >= t[0] + skip_s
    t, y, st = t[keep], y[keep], run["starved"][keep]
    err = y - reference(t)
    grid = np.arange(t[0], t[-1], 1e-3)
    e = np.stack([np.interp(grid, t, err[:, j]) for j in range(N_JOINTS)], axis=1)
    lag = int(round(1e3 / FPS))
    jumps = np.max(np.abs(e[lag:] - e[:-lag]), axis=1)
    i_max = int(np.argmax(jumps))
    # jerk on one common grid (the policy step) for every executor: a finer control grid
    # must not look jerkier just because it samples the same path more often
    h = 1.0 / FPS
    g = np.arange(t[0], t[-1], h)
    yg = np.stack([np.interp(g, t, y[:, j]) for j in range(N_JOINTS)], axis=1)
    jerk = np.diff(yg, n=3, axis=0) / h**3
    return {
        "max_seam_jump_rad": float(jumps[i_max]),
        "seam_at_s": float(grid[i_max + lag]),
        "rms_jerk_rad_s3": float(np.sqrt(np.mean(jerk**2))),
        "tracking_rms_rad": float(np.sqrt(np.mean(err**2))),
        "tracking_max_rad": float(np.max(np.abs(err))),
        "starved_ms": float(np.sum(st) * run["tick_s"] * 1e3),
    }
