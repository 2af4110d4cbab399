"""Real-time chunking's guidance, in numpy for the denoise stage that runs on the board.

Black, Galliker, Levine 2025, "Real-Time Execution of Action Chunking Flow Policies": while one
chunk runs, the next is denoised as an inpainting problem, pulled towards the actions the robot
has already committed to. The arithmetic follows lerobot 0.4.4's ``RTCProcessor`` (parity tested
against it, `tests/deploy/test_rtc.py`), with lerobot's time convention: the flow runs from
``time`` 1 (noise) to 0 (actions), ``x1 = x_t - time * v_t`` is the step's estimate of the final
chunk, and

    err        = (committed - x1) * prefix_weights          (committed zero-padded to the chunk)
    correction = d x1 / d x_t ^T err = err - time * J_v^T err
    v_guided   = v_t - min(guidance(time), max_weight) * correction

``J_v^T err`` is the vector-Jacobian product of the model's velocity at ``x_t`` (``vjp``): a
PyTorch model gets it from autograd, an exported denoise stage from a graph that computes it.
lerobot 0.4.4 evaluates ``v_t`` before ``x_t`` requires grad, so its correction is ``err`` alone
(the velocity's Jacobian drops out); ``vjp=None`` is that, and matches lerobot to float precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SCHEDULES = ("zeros", "ones", "linear", "exp")
PARAMS = ("rtc", "rtc_schedule", "rtc_max_guidance", "rtc_horizon", "rtc_correction")
CORRECTIONS = ("lerobot", "full")


@dataclass(frozen=True)
class RtcSettings:
    """The denoise stage's guidance settings (graph params, each settable at run time).

    ``horizon``: RTC's execution horizon in policy steps, where the prefix weights reach 0;
    None: as far as the commitment reaches. ``correction``: ``lerobot`` (the error alone, as
    lerobot 0.4.4 computes it) or ``full`` (the paper's, through the velocity's vector-Jacobian
    product: needs the bundle's ``denoise_vjp`` graph). Defaults are lerobot's ``RTCConfig``
    (linear schedule, maximum guidance weight 10)."""

    enabled: bool = False
    schedule: str = "linear"
    max_guidance: float = 10.0
    horizon: int | None = None
    correction: str = "lerobot"

    @classmethod
    def from_params(cls, p: dict[str, Any], where: str) -> "RtcSettings":
        enabled = p.get("rtc", False)
        if type(enabled) is not bool:
            raise ValueError(f"{where}: params.rtc must be true or false, got {enabled!r}")
        schedule = p.get("rtc_schedule", "linear")
        if schedule not in SCHEDULES:
            raise ValueError(f"{where}: params.rtc_schedule must be one of {', '.join(SCHEDULES)}, "
                             f"got {schedule!r}")
        try:
            beta = float(p.get("rtc_max_guidance", 10.0))
        except (TypeError, ValueError):
            beta = -1.0
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"{where}: params.rtc_max_guidance must be a number >= 0, "
                             f"got {p.get('rtc_max_guidance')!r}")
        horizon = p.get("rtc_horizon")
        if horizon is not None and (type(horizon) is not int or horizon < 1):
            raise ValueError(f"{where}: params.rtc_horizon must be a whole number of steps >= 1 "
                             f"or null, got {horizon!r}")
        correction = p.get("rtc_correction", "lerobot")
        if correction not in CORRECTIONS:
            raise ValueError(f"{where}: params.rtc_correction must be one of {', '.join(CORRECTIONS)}, "
                             f"got {correction!r}")
        return cls(enabled, str(schedule), beta, horizon, str(correction))


def committed_at(actions: np.ndarray, t0_ns: int, dt_ns: int, times_ns: np.ndarray) -> np.ndarray:
    """The committed trajectory (``actions[i]`` at ``t0_ns + i * dt_ns``) linearly interpolated
    at ``times_ns``, as far as it reaches ([k, D], k <= len(times_ns)); a time before its start
    takes the first action."""
    a = np.asarray(actions, np.float64)
    x = (np.asarray(times_ns, np.int64) - int(t0_ns)) / float(dt_ns)
    x = np.maximum(x[x <= len(a) - 1 + 1e-9], 0.0)
    i = np.minimum(np.floor(x).astype(np.int64), len(a) - 1)
    j = np.minimum(i + 1, len(a) - 1)
    f = (x - i)[:, None]
    return (a[i] * (1.0 - f) + a[j] * f).astype(np.float32)


def prefix_weights(schedule: str, delay: int, horizon: int, total: int) -> np.ndarray:
    """Per-step weight of the committed actions: 1 for the ``delay`` steps that will run while
    the chunk is computed, decaying (``linear``/``exp``) or held (``ones``) up to ``horizon``,
    0 after; ``zeros`` weights only the delay."""
    if schedule not in SCHEDULES:
        raise ValueError(f"RTC schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    delay = min(int(delay), int(horizon))
    w = np.zeros(total, np.float32)
    if schedule == "zeros":
        w[:delay] = 1.0
        return w
    if schedule == "ones":
        w[:max(int(horizon), 0)] = 1.0
        return w
    w[:min(delay, total)] = 1.0
    steps = total - max(total - int(horizon), 0) - delay
    if int(horizon) > delay and steps > 0:
        ramp = np.linspace(1.0, 0.0, steps + 2, dtype=np.float32)[1:-1]
        if schedule == "exp":
            ramp = ramp * np.expm1(ramp) / np.float32(math.e - 1)
        w[delay:delay + steps] = ramp
    return w


def guidance_weight(time: float, max_weight: float) -> float:
    """The guidance scale at flow time ``time`` (1 = noise), clipped at ``max_weight``; RTC's
    (1 - tau) / tau * (tau^2 + (1 - tau)^2) / (1 - tau)^2 with tau = 1 - time."""
    tau = 1.0 - float(time)
    if tau <= 0.0:
        return float(max_weight)
    if tau >= 1.0:
        return 0.0
    w = (1.0 - tau) / tau * ((1.0 - tau) ** 2 + tau ** 2) / (1.0 - tau) ** 2
    return float(min(w, max_weight))


def guided_velocity(x_t: np.ndarray, v_t: np.ndarray, committed: np.ndarray | None, delay: int,
                    time: float, horizon: int, schedule: str = "linear", max_weight: float = 10.0,
                    vjp: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The velocity pulled towards ``committed`` ([T', A'] or [B, T', A'], policy space,
    normalised as the model's actions); ``v_t`` unchanged without a commitment. ``vjp``: the
    velocity's vector-Jacobian product at ``x_t`` (None: lerobot's correction, see above)."""
    if committed is None:
        return v_t
    x = np.asarray(x_t, np.float32)
    squeeze = x.ndim == 2
    x = x[None] if squeeze else x
    v = np.asarray(v_t, np.float32).reshape(x.shape)
    prev = np.asarray(committed, np.float32)
    prev = prev[None] if prev.ndim == 2 else prev
    horizon = min(int(horizon), prev.shape[1])
    padded = np.zeros_like(x)
    padded[:, :prev.shape[1], :prev.shape[2]] = prev[:, :x.shape[1], :x.shape[2]]
    weights = prefix_weights(schedule, delay, horizon, x.shape[1])[None, :, None]
    err = (padded - (x - np.float32(time) * v)) * weights
    correction = err
    if vjp is not None:
        correction = err - np.float32(time) * np.asarray(vjp(err), np.float32).reshape(x.shape)
    out = v - np.float32(guidance_weight(time, max_weight)) * correction
    return out[0] if squeeze else out
