"""The executor benchmark's simulated world: a reference trajectory, a noisy policy that takes
time to answer, and the executor settings the bench runs with.

Noise and latency are a deterministic function of the capture time, so every executor sees the
same policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NS = 1_000_000_000
MS = 1_000_000
FPS = 30.0  # policy / LeRobot client rate (lerobot's DEFAULT_FPS)
H = 50  # actions per chunk (lerobot's example: actions_per_chunk=50)
STARVE_H, STARVE_LATENCY_MS = 18, 500.0  # a 600 ms horizon against 400-600 ms of inference
CONTROL_HZ = 100.0
N_JOINTS = 6
CAMERA_HZ = 30.0

# the executor as the bench configures it (a graph would put this under params:)
EXECUTOR_PARAMS: dict[str, Any] = {
    "crossfade_ms": 500.0, "crossfade_shape": "minjerk", "link_latency_ms": 5.0,
    # 1.0: ask again as soon as the last answer arrived (inference back to back), which is
    # what LeRobot's client amounts to: below its threshold it sends an observation every tick
    "min_horizon_ms": 50.0, "request_threshold": 1.0, "request_timeout_ms": 1500.0,
    "max_velocity_rad_s": 3.0, "max_accel_rad_s2": 30.0, "hold_decel_rad_s2": 30.0,
    "joint_min": -3.0, "joint_max": 3.0,
}


def reference(t_s: np.ndarray | float) -> np.ndarray:
    """Smooth 6-joint trajectory (rad): a few slow sinusoids per joint, peak ~1.2 rad/s."""
    t = np.asarray(t_s, dtype=np.float64)[..., None]
    j = np.arange(N_JOINTS)
    return (0.45 * np.sin(2 * np.pi * (0.17 + 0.03 * j) * t + j)
            + 0.15 * np.sin(2 * np.pi * (0.41 + 0.05 * j) * t + 2 * j))


@dataclass(frozen=True)
class NoisyPolicy:
    """A policy that knows the reference, imperfectly, and takes time to answer."""

    latency_ms: float
    seed: int = 0
    bias_rad: float = 0.03
    drift_rad_s: float = 0.05
    noise_rad: float = 0.002
    jitter: float = 0.2
    horizon: int = H

    def _rng(self, t_capture_s: float) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(round(t_capture_s * 1e4)) & 0x7FFFFFFF])

    def __call__(self, t_capture_s: float) -> tuple[np.ndarray, float]:
        rng = self._rng(t_capture_s)
        ti = np.arange(self.horizon) / FPS
        bias = rng.normal(0, self.bias_rad, N_JOINTS)
        drift = rng.normal(0, self.drift_rad_s, N_JOINTS)
        actions = (reference(t_capture_s + ti) + bias + drift * ti[:, None]
                   + rng.normal(0, self.noise_rad, (self.horizon, N_JOINTS)))
        latency_s = self.latency_ms / 1e3 * (1 + self.jitter * rng.uniform(-1, 1))
        return actions.astype(np.float32), latency_s
