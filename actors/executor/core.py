"""The executor's pure core: chunk store, staleness, blending, interpolation, safety, hold.

No I/O and no clock reads: every call gets ``now_ns`` from the caller, so the same inputs give
bit-identical outputs on a virtual clock (replay, tests) and the same code runs on wall time.

Timing model (docs/ARCHITECTURE.md, "Timing model"):

* action ``i`` of a chunk is meant for host time ``t0_ns + i * dt_ns``; the chunk covers
  ``[t0_ns, t0_ns + H * dt_ns)`` (the last action is held for one ``dt``) and is linearly
  interpolated between waypoints, so the control clock is independent of the chunk ``dt``;
* on every tick the executor computes the command for ``t_target = now + link_latency``: what
  lies before that time is never executed (staleness by time, not by integer step);
* a chunk whose horizon left at arrival is below ``min_horizon`` is dropped and counted; a chunk
  from an older observation than one already accepted is dropped (it never overrides newer
  information); when a newer chunk is accepted, older chunks are cut at its end so stale
  predictions never extend past fresher ones;
* the blended target goes through the safety layer: joint limits, a braking envelope,
  acceleration and velocity limits. The output step between two ticks is never larger than
  ``max_velocity * (t_target - previous t_target)``;
* when no chunk covers the target time the executor holds: every joint decelerates at
  ``hold_decel`` to a stop (bounded travel ``v^2 / (2 * hold_decel)``, no jump) and the tick is
  counted as a starvation tick; when a chunk covers again the same limiter slews back smoothly;
* a chunk whose observation was captured while the arm was already holding (before the first
  chunk, or starving) is rebased to start at its arrival (``rebase_when_idle``): the arm did not
  move between capture and arrival, so none of its actions is stale, and skipping them by time
  would start the motion in the middle (a lurch the limiter then has to absorb).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevla.actors.executor.blending import BlendConfig, Contribution, blend, crossfade_weight

DROP_REASONS = ("malformed", "wrong_dof", "older_observation", "duplicate", "expired",
                "short_horizon")


def _flag(p: dict[str, Any], name: str, default: bool) -> bool:
    value = p.get(name, default)
    if type(value) is not bool:  # "false" as a string would read as True
        raise ValueError(f"executor params: {name} must be true or false, got {value!r}")
    return value


def _vector(name: str, value: Any, n: int | None) -> np.ndarray | None:
    """A scalar or a per-joint list from the graph params -> float64 vector (or None)."""
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"executor params: {name} must be a finite number or a list of numbers, "
                         f"got {value!r}")
    if n is not None and arr.size not in (1, n):
        raise ValueError(f"executor params: {name} has {arr.size} entries, expected 1 or {n}")
    return arr


@dataclass(frozen=True)
class SafetyLimits:
    """Limits applied after blending. Scalars apply to every joint; lists are per joint."""

    joint_min: np.ndarray | None = None  # rad
    joint_max: np.ndarray | None = None  # rad
    max_velocity_rad_s: np.ndarray = field(default_factory=lambda: np.array([3.0]))
    max_accel_rad_s2: np.ndarray = field(default_factory=lambda: np.array([40.0]))
    hold_decel_rad_s2: np.ndarray = field(default_factory=lambda: np.array([40.0]))

    @classmethod
    def from_params(cls, p: dict[str, Any], n_joints: int | None = None) -> SafetyLimits:
        vmax = _vector("max_velocity_rad_s", p.get("max_velocity_rad_s", 3.0), n_joints)
        amax = _vector("max_accel_rad_s2", p.get("max_accel_rad_s2", 40.0), n_joints)
        hold = _vector("hold_decel_rad_s2", p.get("hold_decel_rad_s2", amax), n_joints)
        lo = _vector("joint_min", p.get("joint_min"), n_joints)
        hi = _vector("joint_max", p.get("joint_max"), n_joints)
        for name, v in (("max_velocity_rad_s", vmax), ("max_accel_rad_s2", amax),
                        ("hold_decel_rad_s2", hold)):
            assert v is not None
            if np.any(v <= 0):
                raise ValueError(f"executor params: {name} must be > 0, got {v.tolist()}")
        if lo is not None and hi is not None and np.any(lo > hi):
            raise ValueError(f"executor params: joint_min {lo.tolist()} must be <= "
                             f"joint_max {hi.tolist()}")
        return cls(joint_min=lo, joint_max=hi, max_velocity_rad_s=vmax,  # type: ignore[arg-type]
                   max_accel_rad_s2=amax, hold_decel_rad_s2=hold)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ExecutorConfig:
    rate_hz: float = 100.0
    link_latency_ms: float = 0.0
    min_horizon_ms: float = 20.0
    max_chunks: int = 8
    blend: BlendConfig = field(default_factory=BlendConfig)
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    rebase_when_idle: bool = True
    rtc: bool = False  # requests carry the commitment (the actor's concern; validated here)

    def __post_init__(self) -> None:
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"executor: rate_hz must be > 0, got {self.rate_hz}")
        if not (self.link_latency_ms >= 0 and math.isfinite(self.link_latency_ms)):
            raise ValueError(f"executor params: link_latency_ms must be >= 0, "
                             f"got {self.link_latency_ms}")
        if not (self.min_horizon_ms >= 0 and math.isfinite(self.min_horizon_ms)):
            raise ValueError(f"executor params: min_horizon_ms must be >= 0, "
                             f"got {self.min_horizon_ms}")
        if self.max_chunks < 1:
            raise ValueError(f"executor params: max_chunks must be >= 1, got {self.max_chunks}")

    @property
    def tick_ns(self) -> int:
        return int(round(1e9 / self.rate_hz))

    @property
    def link_latency_ns(self) -> int:
        return int(round(self.link_latency_ms * 1e6))

    @property
    def min_horizon_ns(self) -> int:
        return int(round(self.min_horizon_ms * 1e6))

    @classmethod
    def from_params(cls, p: dict[str, Any], rate_hz: float = 100.0) -> ExecutorConfig:
        blend_cfg = BlendConfig(
            strategy=str(p.get("strategy", "crossfade")),
            crossfade_ms=float(p.get("crossfade_ms", 200.0)),
            crossfade_shape=str(p.get("crossfade_shape", "minjerk")),
            ensemble_m=float(p.get("ensemble_m", 0.01)),
        )
        return cls(rate_hz=float(p.get("rate_hz", rate_hz)),
                   link_latency_ms=float(p.get("link_latency_ms", 0.0)),
                   min_horizon_ms=float(p.get("min_horizon_ms", 20.0)),
                   max_chunks=int(p.get("max_chunks", 8)),
                   rebase_when_idle=_flag(p, "rebase_when_idle", True),
                   rtc=_flag(p, "rtc", False),
                   blend=blend_cfg,
                   limits=SafetyLimits.from_params(p))


@dataclass
class StoredChunk:
    key: tuple[int, int]  # (obs_seq, seq): the order of freshness
    seq: int
    obs_seq: int
    t0_ns: int
    dt_ns: int
    actions: np.ndarray  # H x D float64
    end_ns: int  # exclusive; cut down when a newer chunk ends earlier
    fade_start_ns: int  # first target time this chunk could be executed
    fade_end_ns: int  # end of the older coverage it fades over
    received_ns: int
    t_capture_ns: int
    used: bool = False

    def value_at(self, t_ns: int) -> np.ndarray:
        """Linear interpolation between waypoints; the last action is held for one dt."""
        x = (t_ns - self.t0_ns) / self.dt_ns
        h = self.actions.shape[0]
        i = int(math.floor(x))
        if i >= h - 1:
            return self.actions[h - 1]
        if i < 0:
            return self.actions[0]
        f = x - i
        return self.actions[i] + f * (self.actions[i + 1] - self.actions[i])


@dataclass(frozen=True)
class Accepted:
    """What `ExecutorCore.add_chunk` decided."""

    accepted: bool
    reason: str  # "accepted" or a drop reason from DROP_REASONS
    skipped_stale: int = 0
    horizon_left_ns: int = 0


@dataclass(frozen=True)
class TickOutput:
    t_target_ns: int
    positions: np.ndarray  # D float32, after the safety layer
    starved: bool
    chunk_seq: int  # newest chunk that contributed, -1 while holding
    desired: np.ndarray | None  # blended target before the safety layer (None while holding)
    t_capture_ns: int = 0  # capture time of the observation behind chunk_seq


class ExecutorCore:
    """Chunk store + blending + safety + hold, driven by ``tick(now_ns)``."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg
        self.chunks: list[StoredChunk] = []  # oldest observation first
        self.n_joints: int | None = None
        self._newest_key: tuple[int, int] | None = None
        self._measured: np.ndarray | None = None
        self._y: np.ndarray | None = None  # last commanded position
        self._v: np.ndarray | None = None  # last commanded velocity (rad/s)
        self._last_desired: np.ndarray | None = None
        self._last_t_target: int | None = None
        self._seam_until_ns = -1
        # counters (stats)
        self.ticks = 0
        self.waiting_ticks = 0  # before the first chunk: nothing to execute, not starvation
        self.starvation_ticks = 0
        self.starvation_episodes = 0
        self.accepted_chunks = 0
        self.dropped: dict[str, int] = {r: 0 for r in DROP_REASONS}
        self.evicted_chunks = 0
        self.skipped_stale_actions = 0
        self.max_step_rad = 0.0
        self.max_seam_jump_rad = 0.0
        self.limited_ticks = 0
        self.rebased_chunks = 0
        self._starving = False
        # target time since which the arm has been holding (None while a chunk drives it);
        # before the first chunk it has held "forever"
        self._idle_since_ns: int | None = -(1 << 62)

    # ---------------------------------------------------------------- inputs
    def set_measured(self, joints: np.ndarray) -> None:
        """Latest measured joint positions; the first command slews from here."""
        self._measured = np.asarray(joints, dtype=np.float64).copy()

    @property
    def started(self) -> bool:
        return self._y is not None or bool(self.chunks)

    @property
    def velocity(self) -> np.ndarray | None:
        return None if self._v is None else self._v.copy()

    def coverage_end_ns(self) -> int | None:
        return max((c.end_ns for c in self.chunks), default=None)

    def newest_chunk(self) -> StoredChunk | None:
        return self.chunks[-1] if self.chunks else None

    def add_chunk(self, *, now_ns: int, t0_ns: int, dt_ns: int, actions: np.ndarray,
                  obs_seq: int, seq: int, t_capture_ns: int = 0) -> Accepted:
        a = np.asarray(actions)
        if (a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1 or int(dt_ns) <= 0
                or a.dtype.kind not in "fiu" or not np.all(np.isfinite(a))):
            return self._drop("malformed")
        if self.n_joints is None:
            self.n_joints = a.shape[1]
        elif a.shape[1] != self.n_joints:
            return self._drop("wrong_dof")
        key = (int(obs_seq), int(seq))
        if self._newest_key is not None:
            if key[0] < self._newest_key[0]:
                return self._drop("older_observation")
            if key <= self._newest_key:
                return self._drop("duplicate")
        t_target = now_ns + self.cfg.link_latency_ns
        t_obs = int(t_capture_ns) or int(t0_ns)
        if (self.cfg.rebase_when_idle and self._idle_since_ns is not None
                and self._idle_since_ns <= t_obs < t_target and int(t0_ns) < t_target
                and not self._covering(t_target)):
            t0_ns = t_target  # held still since before the capture: nothing here is stale
            self.rebased_chunks += 1
        h = a.shape[0]
        end = int(t0_ns) + h * int(dt_ns)
        left = end - t_target
        if left <= 0:
            return self._drop("expired", left)
        if left < self.cfg.min_horizon_ns:
            return self._drop("short_horizon", left)
        # actions meant for times already past are never executed: count them, by time
        skipped = min(h, max(0, -(-(t_target - int(t0_ns)) // int(dt_ns))))
        fade_start = max(int(t0_ns), t_target)
        older_end = self.coverage_end_ns()
        fade_end = fade_start if older_end is None else max(fade_start, min(older_end, end))
        for c in self.chunks:  # stale predictions never reach past a fresher chunk's end
            c.end_ns = min(c.end_ns, end)
        self.chunks.append(StoredChunk(
            key=key, seq=int(seq), obs_seq=int(obs_seq), t0_ns=int(t0_ns), dt_ns=int(dt_ns),
            actions=a.astype(np.float64), end_ns=end, fade_start_ns=fade_start,
            fade_end_ns=fade_end, received_ns=int(now_ns), t_capture_ns=int(t_capture_ns)))
        self._newest_key = key
        self.accepted_chunks += 1
        self.skipped_stale_actions += skipped
        self._evict(t_target)
        if len(self.chunks) > self.cfg.max_chunks:
            excess = len(self.chunks) - self.cfg.max_chunks
            del self.chunks[:excess]
            self.evicted_chunks += excess
        return Accepted(True, "accepted", skipped, left)

    def planned(self, t0_ns: int, dt_ns: int, max_n: int) -> np.ndarray | None:
        """The blended targets this store gives at ``t0_ns + i * dt_ns`` (before the safety
        layer): what the executor will command if no newer chunk arrives. From ``t0_ns`` to the
        end of coverage, at most ``max_n`` of them; a time no chunk covers any more (already
        evicted) takes the first covered target. None when nothing covers ``t0_ns`` or later."""
        end = self.coverage_end_ns()
        if end is None or int(dt_ns) <= 0:
            return None
        n = min(int(max_n), max(0, -(-(end - int(t0_ns)) // int(dt_ns))))
        out: list[np.ndarray] = []
        missing = 0
        for i in range(n):
            t = int(t0_ns) + i * int(dt_ns)
            covering = self._covering(t)
            if covering:
                out.append(self._blend(covering, t))
            elif out:
                break  # a gap: nothing after it is committed
            else:
                missing += 1
        if not out:
            return None
        return np.stack([out[0]] * missing + out).astype(np.float32)

    def _drop(self, reason: str, left: int = 0) -> Accepted:
        self.dropped[reason] += 1
        return Accepted(False, reason, 0, left)

    def _covering(self, t_target: int) -> list[StoredChunk]:
        """The stored chunks that have an action for ``t_target`` (oldest observation first)."""
        return [c for c in self.chunks if c.t0_ns <= t_target < c.end_ns]

    def _evict(self, t_target: int) -> None:
        if any(c.end_ns <= t_target for c in self.chunks):
            self.chunks = [c for c in self.chunks if c.end_ns > t_target]

    # ---------------------------------------------------------------- the tick
    def tick(self, now_ns: int) -> TickOutput | None:
        """One control tick at host time ``now_ns``; None until there is anything to execute."""
        cfg = self.cfg
        t_target = int(now_ns) + cfg.link_latency_ns
        if self._last_t_target is not None and t_target <= self._last_t_target:
            # a clock that did not move gives no new command (never re-send a past target)
            return None
        self.ticks += 1
        self._evict(t_target)
        covering = self._covering(t_target)
        if covering:
            self._idle_since_ns = None
        elif self._idle_since_ns is None:
            self._idle_since_ns = t_target
        if self._y is None:
            if not covering:
                self.waiting_ticks += 1
                return None
            desired = self._blend(covering, t_target)
            start = self._measured if self._measured is not None else desired
            self._y = self._clamp_joints(np.array(start, dtype=np.float64))
            self._v = np.zeros_like(self._y)
            self._last_desired = None
            dt_s = cfg.tick_ns / 1e9
        else:
            dt_s = (t_target - self._last_t_target) / 1e9  # type: ignore[operator]
            desired = self._blend(covering, t_target) if covering else None
        y_prev = self._y.copy()  # type: ignore[union-attr]
        if desired is None:
            y = self._hold(dt_s)
            starved = True
            chunk_seq = -1
            t_capture = 0
            self.starvation_ticks += 1
            if not self._starving:
                self.starvation_episodes += 1
            self._last_desired = None
        else:
            y = self._follow(desired, dt_s)
            starved = False
            newest = covering[-1]
            chunk_seq = newest.seq
            t_capture = newest.t_capture_ns
            if not newest.used:
                newest.used = True
                window = max(int(cfg.blend.crossfade_ms * 1e6), 2 * cfg.tick_ns)
                self._seam_until_ns = t_target + window
            self._last_desired = desired
        self._starving = starved
        step = float(np.max(np.abs(y - y_prev)))
        self.max_step_rad = max(self.max_step_rad, step)
        if t_target <= self._seam_until_ns:
            self.max_seam_jump_rad = max(self.max_seam_jump_rad, step)
        self._last_t_target = t_target
        return TickOutput(t_target, y.astype(np.float32), starved, chunk_seq,
                          None if desired is None else desired.astype(np.float32), t_capture)

    def _blend(self, covering: list[StoredChunk], t_target: int) -> np.ndarray:
        cfg = self.cfg.blend
        # chunks that cannot change the result are not evaluated (same numbers, less work):
        # `latest` needs the newest only; under `crossfade` nothing older than a chunk that has
        # fully faded in has any weight left
        if cfg.strategy == "latest":
            covering = covering[-1:]
        elif cfg.strategy == "crossfade":
            for i in range(len(covering) - 1, 0, -1):
                c = covering[i]
                if crossfade_weight(cfg, c.fade_start_ns, c.fade_end_ns, t_target) >= 1.0:
                    covering = covering[i:]
                    break
        contributions = [Contribution(c.value_at(t_target), c.fade_start_ns, c.fade_end_ns)
                         for c in covering]
        return blend(cfg, contributions, t_target)

    def _clamp_joints(self, y: np.ndarray) -> np.ndarray:
        lim = self.cfg.limits
        if lim.joint_min is not None:
            y = np.maximum(y, lim.joint_min)
        if lim.joint_max is not None:
            y = np.minimum(y, lim.joint_max)
        return y

    def _follow(self, desired: np.ndarray, dt_s: float) -> np.ndarray:
        """Move toward ``desired`` within acceleration and velocity limits, braking in time."""
        lim = self.cfg.limits
        y, v = self._y, self._v
        assert y is not None and v is not None
        target = self._clamp_joints(desired)
        if self._last_desired is not None:
            v_target = (target - self._clamp_joints(self._last_desired)) / dt_s
        else:
            v_target = np.zeros_like(target)
        err = target - y
        v_des = err / dt_s
        # braking envelope: close a gap no faster than we can stop within it
        brake = np.sqrt(2.0 * lim.max_accel_rad_s2 * np.abs(err)) + np.abs(v_target)
        # np.minimum/np.maximum: np.clip's dispatch costs more than the arithmetic here
        v_des = np.minimum(np.maximum(v_des, -brake), brake)
        vmax = lim.max_velocity_rad_s
        dv = lim.max_accel_rad_s2 * dt_s
        v_cmd = np.minimum(np.maximum(np.minimum(np.maximum(v_des, v - dv), v + dv), -vmax),
                           vmax)
        if np.any(v_cmd != v_des):
            self.limited_ticks += 1
        return self._integrate(v_cmd, dt_s)

    def _hold(self, dt_s: float) -> np.ndarray:
        """Starved: decelerate every joint to a stop, never jump."""
        v = self._v
        assert v is not None
        dv = self.cfg.limits.hold_decel_rad_s2 * dt_s
        v_cmd = np.sign(v) * np.maximum(np.abs(v) - dv, 0.0)
        return self._integrate(v_cmd, dt_s)

    def _integrate(self, v_cmd: np.ndarray, dt_s: float) -> np.ndarray:
        y_prev = self._y
        assert y_prev is not None
        y = self._clamp_joints(y_prev + v_cmd * dt_s)
        self._v = (y - y_prev) / dt_s
        self._y = y
        return y

    def stats(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "waiting_ticks": self.waiting_ticks,
            "starvation_ticks": self.starvation_ticks,
            "starvation_episodes": self.starvation_episodes,
            "accepted_chunks": self.accepted_chunks,
            "dropped_chunks": dict(self.dropped),
            "evicted_chunks": self.evicted_chunks,
            "skipped_stale_actions": self.skipped_stale_actions,
            "max_step_rad": self.max_step_rad,
            "max_seam_jump_rad": self.max_seam_jump_rad,
            "limited_ticks": self.limited_ticks,
            "rebased_chunks": self.rebased_chunks,
            "stored_chunks": len(self.chunks),
        }
