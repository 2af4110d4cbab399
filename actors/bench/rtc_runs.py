"""One closed-loop run of `edgevla bench rtc`: the simulated arm, the executor actor and the
merged policy actor, on a virtual clock, with the inference delay simulated.

The executor (`ExecutorActor`, ``rtc: true`` in every run so each request carries what it has
committed to) ticks at the policy's frame rate and drives the sim's servos. The policy
(`PolicyActor`: all stages of the bundle, ONNX Runtime, the board's code) serves the newest
request when it is free: it captures the cameras and the arm's state at that tick, and its
chunk reaches the executor ``delay`` later, as a slow board's would. With guidance off the
commitment is ignored (plain asynchronous chunking). Every chunk is compared with what the
executor had committed to when it was asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevla.actors.executor.actor import ExecutorActor
from edgevla.actors.kinds.stages import PolicyActor
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.messages import ActionChunk, Commitment, Frame, Request, RobotState
from edgevla.deploy.inference.rtc import committed_at

NS = 1_000_000_000


@dataclass(frozen=True)
class Method:
    """How a run executes: guidance in the denoiser, and the executor's blending."""

    name: str
    rtc: bool
    strategy: str
    crossfade_ms: float = 0.0
    correction: str = "lerobot"


METHODS = (Method("rtc", True, "latest"),
           Method("rtc+crossfade", True, "crossfade", 100.0),
           Method("rtc-full", True, "latest", correction="full"),
           Method("crossfade", False, "crossfade", 200.0),
           Method("weighted_average", False, "weighted_average"))


@dataclass
class RunRecord:
    """What one run leaves: the command stream and, per chunk, its agreement with the commitment."""

    t_s: np.ndarray
    y: np.ndarray  # commands [T, D], rad
    starved: np.ndarray
    chunk_arrivals_s: list[float] = field(default_factory=list)
    disagreement: list[float] = field(default_factory=list)  # mean |chunk - committed| over d steps
    seams: list[dict[str, Any]] = field(default_factory=list)  # for the plot
    success: bool = False
    stats: dict[str, Any] = field(default_factory=dict)


def executor_params(method: Method, fps: float, joint_limits: np.ndarray) -> dict[str, Any]:
    return {"strategy": method.strategy, "crossfade_ms": method.crossfade_ms, "rate_hz": fps,
            "rtc": True, "request_mode": "latency", "request_latency_margin": 1.5,
            "min_horizon_ms": 1000.0 / fps,
            "joint_min": joint_limits[:, 0].tolist(), "joint_max": joint_limits[:, 1].tolist(),
            # wide open: the commands are the blended targets, so a seam shows as it is (what
            # the safety layer makes of it is the executor bench's and the reliability suite's)
            "max_velocity_rad_s": 1e3, "max_accel_rad_s2": 1e6, "hold_decel_rad_s2": 50.0}


def policy_actor(bundle: str, method: Method, seed: int, threads: int = 1) -> PolicyActor:
    actor = PolicyActor("policy")
    params = {"model": bundle, "seed": seed, "threads": threads, "rtc": method.rtc}
    if method.rtc:
        params["rtc_correction"] = method.correction
    actor.setup(params)
    return actor


def _frames(images: dict[str, np.ndarray], t_ns: int) -> dict[str, Frame]:
    return {c: Frame(camera=c, image=img, t_capture_ns=t_ns, producer="sim")
            for c, img in images.items()}


def disagreement(chunk: ActionChunk, commitment: Commitment | None, delay_ns: int) -> float | None:
    """Mean |new chunk - committed| (rad) over the actions that run during the delay (at least
    the first), the new chunk's own time grid."""
    if commitment is None:
        return None
    d = max(1, math.ceil(delay_ns / chunk.dt_ns))
    times = chunk.t0_ns + np.arange(min(d, len(chunk.actions)), dtype=np.int64) * chunk.dt_ns
    ref = committed_at(commitment.actions, commitment.t0_ns, commitment.dt_ns, times)
    if len(ref) == 0:
        return None
    return float(np.mean(np.abs(chunk.actions[:len(ref)] - ref)))


def run(env, spec, policy: PolicyActor, method: Method, delay_s: float, duration_s: float
        ) -> RunRecord:
    fps = float(env.cfg.fps)
    tick = int(round(NS / fps))
    delay = int(round(delay_s * NS))
    ex = ExecutorActor("executor")
    ex.setup(executor_params(method, fps, env.joint_limits))
    clock = VirtualClock(NS)
    obs = env.reset(spec)
    pending: Request | None = None
    busy_until = 0
    in_flight: list[tuple[ActionChunk, Commitment | None]] = []
    rec_t, rec_y, rec_st = [], [], []
    rec = RunRecord(np.empty(0), np.empty((0, 6)), np.empty(0))
    hold = np.asarray(obs["state"], np.float64)
    for k in range(int(duration_s * fps)):
        now = NS + k * tick
        clock.set_ns(now)
        inputs: dict[str, Any] = {"state": RobotState(joints=obs["state"], t_capture_ns=now)}
        due = [c for c in in_flight if c[0].t_pub_ns <= now]
        if due:
            chunk, commitment = due[-1]
            in_flight = [c for c in in_flight if c[0].t_pub_ns > now]
            inputs["chunks"] = chunk
            rec.chunk_arrivals_s.append(now / NS)
            gap = disagreement(chunk, commitment, delay)
            if gap is not None:
                rec.disagreement.append(gap)
                rec.seams.append({"t_s": now / NS, "chunk": chunk, "commitment": commitment})
        out = ex.step(clock, inputs) or {}
        if "requests" in out:
            pending = out["requests"]
        if pending is not None and now >= busy_until:
            chunk = _infer(env, obs, policy, clock, pending, now)
            if chunk is not None:
                chunk.t_pub_ns = now + delay
                in_flight.append((chunk, pending.commitment))
                busy_until = now + delay
            pending = None
        cmd = out.get("commands")
        target = hold if cmd is None else cmd.positions
        if cmd is not None:
            rec_t.append(now / NS)
            rec_y.append(np.asarray(cmd.positions, np.float64))
            rec_st.append(bool(cmd.starved))
        obs = env.step(target, render=False)
        rec.success = rec.success or bool(env.is_success())
    rec.t_s, rec.y, rec.starved = np.array(rec_t), np.array(rec_y), np.array(rec_st)
    rec.stats = {"executor": ex.stats(), "policy": policy.stats()}
    return rec


def _infer(env, obs, policy: PolicyActor, clock: VirtualClock, request: Request,
           now: int) -> ActionChunk | None:
    images = obs["images"] or env.render()
    state = RobotState(joints=obs["state"], commanded=obs["goal"], t_capture_ns=now)
    out = policy.step(clock, {**_frames(images, now), "state": state, "request": request})
    return None if not out else out["chunks"]


def _plan_at(c: Commitment, times_ns: np.ndarray) -> np.ndarray:
    """The commitment at ``times_ns``, continued past its end at its last velocity (the motion
    in progress, when the next chunk arrives just as coverage ends)."""
    a = c.actions.astype(np.float64)
    inside = committed_at(a, c.t0_ns, c.dt_ns, times_ns)
    if len(inside) == len(times_ns):
        return inside
    v = (a[-1] - a[-2]) / c.dt_ns if len(a) > 1 else np.zeros_like(a[-1])
    rest = a[-1] + (times_ns[len(inside):, None] - c.end_ns) * v
    return np.concatenate([inside, rest]) if len(inside) else rest


def metrics(rec: RunRecord, fps: float, skip_s: float = 1.0, window_s: float = 0.3
            ) -> dict[str, float]:
    """Seam jump: for each chunk with a commitment, within ``window_s`` of its arrival (where
    it takes over), the largest change from one tick to the next of (command - what the
    executor had committed to, continued at its last velocity where it ends): how abruptly the
    arm leaves the motion in progress, the closed-loop counterpart of `bench executor`'s
    tracking-error jump. RMS jerk: third difference / dt^3 of the commands on the control
    grid, whole run."""
    t, y = rec.t_s, rec.y
    h = 1.0 / fps
    out = {"max_seam_jump_rad": 0.0, "seam_at_s": float("nan"), "rms_jerk_rad_s3": float("nan"),
           "starved_ms": float(np.sum(rec.starved) * h * 1e3)}
    if len(t) < 4:
        return out
    start = t[0] + skip_s
    for seam in rec.seams:
        c = seam["commitment"]
        ticks = np.flatnonzero((t >= max(seam["t_s"] - h, start)) & (t <= seam["t_s"] + window_s))
        if len(ticks) < 2:
            continue
        dev = y[ticks] - _plan_at(c, np.round(t[ticks] * NS).astype(np.int64))
        jumps = np.max(np.abs(np.diff(dev, axis=0)), axis=1)
        if len(jumps) and jumps.max() > out["max_seam_jump_rad"]:
            out["max_seam_jump_rad"] = float(jumps.max())
            out["seam_at_s"] = float(t[ticks[int(np.argmax(jumps)) + 1]])
    keep = t >= start
    if int(np.sum(keep)) >= 4:
        jerk = np.diff(y[keep], n=3, axis=0) / h ** 3
        out["rms_jerk_rad_s3"] = float(np.sqrt(np.mean(jerk ** 2)))
    return out
