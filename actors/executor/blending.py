"""Blending strategies: how overlapping action chunks become one joint target.

Pure functions, no I/O, no clock. The executor hands a strategy the chunks that cover one
target time, oldest observation first, each as a `Contribution` (its interpolated value at the
target time and a few timing facts), and gets one position vector back.

Strategies (``strategy:`` in the graph's executor params):

* ``latest``           – the newest observation's chunk wins outright.
* ``weighted_average`` – LeRobot's async client: each newer chunk is merged into what is queued
  as ``0.3 * old + 0.7 * new`` (lerobot 0.4.4 ``AGGREGATE_FUNCTIONS["weighted_average"]``).
  Folding oldest -> newest reproduces its queue merge for any number of overlapping chunks.
* ``average``          – LeRobot's ``average``: ``0.5 * old + 0.5 * new``, folded the same way.
* ``crossfade``        – the new chunk's weight rises smoothly from 0 to 1 over a window that
  starts when the chunk first becomes executable (its ``t0`` or its arrival + link latency,
  whichever is later), so the seam has no step; shapes ``linear``, ``cosine``, ``minjerk``.
* ``ensemble``         – ACT temporal ensembling: weight ``exp(-m * k)`` for the k-th covering
  chunk counted from the oldest (ACT's ``temporal_ensemble_coeff``, 0.01 in the ACT paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np

STRATEGIES = ("latest", "weighted_average", "average", "crossfade", "ensemble")
CROSSFADE_SHAPES = ("linear", "cosine", "minjerk")

# lerobot 0.4.4 async_inference/configs.py AGGREGATE_FUNCTIONS, as (old, new) weights. The board
# runtime must not import lerobot, so the numbers live here; a test checks them against lerobot.
LEROBOT_WEIGHTS = {"weighted_average": (0.3, 0.7), "average": (0.5, 0.5)}


@dataclass(frozen=True)
class Contribution:
    """One chunk's say at one target time."""

    value: np.ndarray  # D, float64: the chunk interpolated at the target time
    fade_start_ns: int  # first target time at which this chunk could be executed
    fade_end_ns: int  # where a crossfade into this chunk must be complete (<= older chunk's end)


@dataclass(frozen=True)
class BlendConfig:
    strategy: str = "crossfade"
    crossfade_ms: float = 200.0
    crossfade_shape: str = "minjerk"
    ensemble_m: float = 0.01

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"executor params: strategy must be one of {', '.join(STRATEGIES)}, "
                             f"got {self.strategy!r}")
        if self.crossfade_shape not in CROSSFADE_SHAPES:
            raise ValueError(f"executor params: crossfade_shape must be one of "
                             f"{', '.join(CROSSFADE_SHAPES)}, got {self.crossfade_shape!r}")
        if not (self.crossfade_ms >= 0 and math.isfinite(self.crossfade_ms)):
            raise ValueError(f"executor params: crossfade_ms must be >= 0, got {self.crossfade_ms}")
        if not math.isfinite(self.ensemble_m):
            raise ValueError(f"executor params: ensemble_m must be finite, got {self.ensemble_m}")


def shape_weight(shape: str, x: float) -> float:
    """Monotone ramp 0 -> 1 on x in [0, 1]; clamped outside."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if shape == "linear":
        return x
    if shape == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * x)
    # minimum-jerk (quintic smoothstep): zero velocity and acceleration at both ends
    return x * x * x * (10.0 + x * (-15.0 + 6.0 * x))


def crossfade_weight(cfg: BlendConfig, fade_start_ns: int, fade_end_ns: int, t_ns: int) -> float:
    """Weight of a chunk against everything older at target time ``t_ns``."""
    window_ns = min(int(cfg.crossfade_ms * 1e6), fade_end_ns - fade_start_ns)
    if window_ns <= 0:
        return 1.0 if t_ns >= fade_start_ns else 0.0
    return shape_weight(cfg.crossfade_shape, (t_ns - fade_start_ns) / window_ns)


def blend(cfg: BlendConfig, contributions: list[Contribution], t_ns: int) -> np.ndarray:
    """Blend the chunks covering ``t_ns`` (oldest observation first, at least one)."""
    strategy = cfg.strategy
    if len(contributions) == 1 or strategy == "latest":
        return contributions[-1].value
    if strategy in LEROBOT_WEIGHTS:
        w_old, w_new = LEROBOT_WEIGHTS[strategy]
        v = contributions[0].value
        for c in contributions[1:]:
            v = w_old * v + w_new * c.value
        return v
    if strategy == "crossfade":
        v = contributions[0].value
        for c in contributions[1:]:
            w = crossfade_weight(cfg, c.fade_start_ns, c.fade_end_ns, t_ns)
            v = (1.0 - w) * v + w * c.value
        return v
    # ensemble: ACT's exp(-m * i), i = 0 for the oldest prediction
    total = np.zeros_like(contributions[0].value)
    wsum = 0.0
    for k, c in enumerate(contributions):
        w = math.exp(-cfg.ensemble_m * k)
        total = total + w * c.value
        wsum += w
    return total / wsum

