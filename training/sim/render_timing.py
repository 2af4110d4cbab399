"""How long the scene takes to render and to simulate, per camera and per control step."""

from __future__ import annotations

import time

from edgevla.training.sim.env import TeaBagEnv
from edgevla.training.sim.kinematics import HOME_Q
from edgevla.training.sim.scene import SceneConfig


def measure_render(cfg: SceneConfig, frames: int = 30) -> dict[str, float]:
    """Mean ms per frame: each camera alone, all cameras together (wall and CPU time), and one
    control step of physics; the first render (GL context and buffers) is excluded."""
    env = TeaBagEnv(cfg)
    try:
        env.render()
        out: dict[str, float] = {}
        for cam in cfg.cameras:
            t0 = time.perf_counter()
            for _ in range(frames):
                env.render_camera(cam)
            out[f"{cam}_ms"] = (time.perf_counter() - t0) / frames * 1e3
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(frames):
            env.render()
        out["all_cameras_ms"] = (time.perf_counter() - t0) / frames * 1e3
        # CPU time of this process (all its threads, llvmpipe's included): less sensitive to
        # other processes on a shared machine than wall time
        out["all_cameras_cpu_ms"] = (time.process_time() - c0) / frames * 1e3
        t0 = time.perf_counter()
        for _ in range(frames):
            env.step(HOME_Q, render=False)
        out["physics_step_ms"] = (time.perf_counter() - t0) / frames * 1e3
        return out
    finally:
        env.close()
