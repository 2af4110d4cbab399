"""One episode of a policy in the simulated scene, closed loop: synchronously (capture, infer,
execute the chunk) or asynchronously (the executor core on a virtual clock)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgevla.actors.executor.blending import BlendConfig
from edgevla.actors.executor.core import ExecutorConfig, ExecutorCore, SafetyLimits
from edgevla.actors.executor.request_policy import RequestConfig, RequestPolicy
from edgevla.training.eval.chunk_policies import ChunkPolicy
from edgevla.training.eval.eval_config import EvalConfig
from edgevla.training.sim.kinematics import JOINT_LIMITS


@dataclass
class EpisodeResult:
    index: int
    split: str
    cluster: int
    success: bool
    steps: int
    sim_seconds: float
    inferences: int
    starvation_ticks: int = 0
    dropped_chunks: int = 0
    idle_steps: int = 0  # ticks the arm held still waiting for a chunk (sync: latency; async: starving)
    startup_steps: int = 0  # of those, the wait for the first chunk (the same in both modes)
    frames: list[np.ndarray] = field(default_factory=list, repr=False)


def _frame_strip(images: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([images[c] for c in sorted(images)], axis=1)


def executed_per_chunk(policy: ChunkPolicy, cfg: EvalConfig) -> int:
    return cfg.actions_per_chunk or policy.n_action_steps


def run_sync(env, policy: ChunkPolicy, spec, cfg: EvalConfig, latencies: list[float],
             latency_ns: int = 0) -> EpisodeResult:
    obs = env.reset(spec)
    max_steps = int(cfg.max_seconds * env.cfg.fps)
    idle_ticks = int(round(latency_ns * env.cfg.fps / 1e9))
    steps = inferences = idle = 0
    success = False
    frames: list[np.ndarray] = []
    goal = np.asarray(obs["state"], np.float32)  # servos keep their last goal while waiting
    while steps < max_steps and not success:
        if cfg.frames_every:
            frames.append(_frame_strip(obs["images"]))
        t = time.perf_counter()
        chunk = policy.predict(obs["images"], obs["state"], obs["goal"])
        latencies.append(time.perf_counter() - t)
        inferences += 1
        for _ in range(min(idle_ticks, max_steps - steps)):
            env.step(goal, render=False)
            steps += 1
            idle += 1
            if env.is_success():
                success = True
                break
        if success or steps >= max_steps:
            break
        n_exec = min(executed_per_chunk(policy, cfg), len(chunk))
        for i in range(n_exec):
            keep = cfg.frames_every and (steps + 1) % cfg.frames_every == 0
            last = i == n_exec - 1
            obs = env.step(chunk[i], render=bool(keep))
            goal = np.asarray(chunk[i], np.float32)
            if keep and not last:
                frames.append(_frame_strip(obs["images"]))
            steps += 1
            if env.is_success():
                success = True
                break
            if steps >= max_steps:
                break
        if not success and steps < max_steps:
            obs = env.observe(render=True)
    return EpisodeResult(spec.index, spec.split, spec.cluster, success, steps, steps / env.cfg.fps, inferences,
                         idle_steps=idle, startup_steps=min(idle, idle_ticks), frames=frames)


def run_async(env, policy: ChunkPolicy, spec, cfg: EvalConfig, latency_ns: int,
              latencies: list[float]) -> EpisodeResult:
    """Executor core + request policy on a virtual clock; inference results arrive after latency_ns."""

    fps = env.cfg.fps
    dt_ns = int(round(1e9 / fps))
    limits = SafetyLimits(
        joint_min=JOINT_LIMITS[:, 0].astype(np.float64),
        joint_max=JOINT_LIMITS[:, 1].astype(np.float64),
        # The demonstrations stay far below these; they only stop a wild chunk.
        max_velocity_rad_s=np.array([6.0]),
        max_accel_rad_s2=np.array([200.0]),
        hold_decel_rad_s2=np.array([50.0]),
    )
    executor = ExecutorCore(ExecutorConfig(
        rate_hz=float(fps), min_horizon_ms=1000.0 / fps, blend=BlendConfig(strategy=cfg.strategy, crossfade_ms=cfg.crossfade_ms),
        limits=limits,
    ))
    requests = RequestPolicy(RequestConfig(mode=cfg.request_mode, threshold=cfg.request_threshold,
                                           latency_margin=cfg.request_latency_margin,
                                           timeout_ms=max(1000.0, 3 * latency_ns / 1e6),
                                           startup_period_ms=max(50.0, latency_ns / 1e6)))
    obs = env.reset(spec)
    max_steps = int(cfg.max_seconds * fps)
    hold = np.asarray(obs["state"], np.float64)
    pending: list[tuple[int, int, np.ndarray]] = []  # (ready_ns, t_capture_ns, chunk)
    seq = 0
    steps = inferences = 0
    success = False
    frames: list[np.ndarray] = []
    chunk_horizon_ns = policy.chunk_size * dt_ns
    waiting = 0
    for steps in range(1, max_steps + 1):
        now = (steps - 1) * dt_ns
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            executor.add_chunk(now_ns=now, t0_ns=item[1], dt_ns=dt_ns, actions=item[2][: executed_per_chunk(policy, cfg)],
                               obs_seq=item[1] // dt_ns, seq=item[1] // dt_ns)
            # Any arrival, kept or dropped as stale, answers the outstanding request.
            requests.on_chunk_received(now, item[1])
        end = executor.coverage_end_ns()
        decision = requests.decide(
            now, horizon_left_ns=0 if end is None else max(0, end - now),
            chunk_horizon_ns=chunk_horizon_ns, have_chunk=end is not None,
            starving=executor.started and (end is None or end <= now),
        )
        if decision is not None:
            if not obs["images"]:
                obs = env.observe(render=True)
            t = time.perf_counter()
            chunk = policy.predict(obs["images"], obs["state"], obs["goal"])
            latencies.append(time.perf_counter() - t)
            inferences += 1
            seq += 1
            pending.append((now + latency_ns, now, chunk))
        executor.set_measured(obs["state"])
        out = executor.tick(now)
        waiting += out is None  # before the first chunk: holding, like sync's first wait
        target = hold if out is None else out.positions
        keep = bool(cfg.frames_every) and steps % cfg.frames_every == 0
        if keep:
            if not obs["images"]:
                obs = env.observe(render=True)
            frames.append(_frame_strip(obs["images"]))
        # Render only when the next tick may need a capture: cheap ticks stay cheap.
        obs = env.step(target, render=False)
        if env.is_success():
            success = True
            break
    return EpisodeResult(spec.index, spec.split, spec.cluster, success, steps, steps / fps, inferences,
                         starvation_ticks=executor.starvation_ticks,
                         dropped_chunks=sum(executor.dropped.values()),
                         idle_steps=waiting + executor.starvation_ticks, startup_steps=waiting,
                         frames=frames)
