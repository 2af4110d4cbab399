"""When the executor asks upstream for a new observation / inference, and why. Pure logic.

Three modes (``request_mode`` in the executor params):

* ``threshold`` (default) – like LeRobot's ``chunk_size_threshold``: request when the executable
  horizon left (end of coverage minus ``now + link_latency``) is at most ``request_threshold``
  times the newest chunk's horizon. Unlike LeRobot's client, which sends an observation on every
  tick below the threshold (and relies on a server-side filter), one request is outstanding at a
  time: it is re-sent only after a newer chunk arrives or after ``request_timeout_ms``.
* ``rate`` – request every ``1 / request_rate_hz`` seconds, whatever the horizon.
* ``latency`` – request when the horizon left is at most ``request_latency_margin`` times the
  inference latency measured so far (request -> chunk, the slowest of the last few), and never
  later than ``request_min_left_ms`` before the end. A fixed fraction replans too early when
  inference is fast (ACT replanning after half of each chunk: 0.13 success vs 0.20 replanning
  near its end, 70 episodes each, the shipped bundle) and too late when it is slow; this one
  executes most of every chunk and still has the next one in time. Until a latency has been
  measured it behaves like ``threshold``.

In every mode the executor requests at ``startup_period_ms`` until the first chunk arrives, and
once more as soon as it starts starving. Every decision carries its reason; counts per reason
go to stats.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

REASONS = ("startup", "horizon_below_threshold", "fixed_rate", "retry_timeout", "starving")
MODES = ("threshold", "rate", "latency")
_LATENCY_WINDOW = 5


@dataclass(frozen=True)
class RequestConfig:
    mode: str = "threshold"
    threshold: float = 0.5  # fraction of the newest chunk's horizon
    rate_hz: float = 0.0
    timeout_ms: float = 1000.0
    startup_period_ms: float = 200.0
    latency_margin: float = 1.5    # latency mode: request at this many latencies left ...
    min_left_ms: float = 200.0     # ... and at least this long before the end

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"executor params: request_mode must be one of {', '.join(MODES)}, "
                             f"got {self.mode!r}")
        if not (self.latency_margin >= 1.0 and math.isfinite(self.latency_margin)):
            raise ValueError(f"executor params: request_latency_margin must be >= 1, "
                             f"got {self.latency_margin}")
        if not (self.min_left_ms >= 0 and math.isfinite(self.min_left_ms)):
            raise ValueError(f"executor params: request_min_left_ms must be >= 0, "
                             f"got {self.min_left_ms}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"executor params: request_threshold must be in [0, 1], "
                             f"got {self.threshold}")
        if self.mode == "rate" and not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"executor params: request_rate_hz must be > 0 with "
                             f"request_mode 'rate', got {self.rate_hz}")
        if not self.timeout_ms > 0 or not self.startup_period_ms > 0:
            raise ValueError("executor params: request_timeout_ms and request_startup_period_ms "
                             "must be > 0")

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> RequestConfig:
        rate = float(p.get("request_rate_hz", 0.0) or 0.0)
        mode = str(p.get("request_mode", "rate" if rate > 0 else "threshold"))
        return cls(mode=mode, threshold=float(p.get("request_threshold", 0.5)), rate_hz=rate,
                   timeout_ms=float(p.get("request_timeout_ms", 1000.0)),
                   startup_period_ms=float(p.get("request_startup_period_ms", 200.0)),
                   latency_margin=float(p.get("request_latency_margin", 1.5)),
                   min_left_ms=float(p.get("request_min_left_ms", 200.0)))


@dataclass(frozen=True)
class RequestDecision:
    reason: str
    horizon_left_ns: int


class RequestPolicy:
    def __init__(self, cfg: RequestConfig) -> None:
        self.cfg = cfg
        self._last_request_ns: int | None = None
        self._outstanding = False
        self._was_starving = False
        self.counts: dict[str, int] = {r: 0 for r in REASONS}
        self.last: RequestDecision | None = None
        self._latencies_ns: list[int] = []  # request -> chunk, newest last

    def set_rate_hz(self, hz: float) -> None:
        """Governor / `edgevla scale` knob: switches to fixed-rate requests at ``hz``."""
        self.cfg = dataclasses.replace(self.cfg, mode="rate", rate_hz=float(hz))

    def set_threshold(self, threshold: float) -> None:
        self.cfg = dataclasses.replace(self.cfg, threshold=float(threshold))

    def on_chunk_received(self, now_ns: int | None = None, t_capture_ns: int = 0) -> None:
        """A chunk arrived (kept or dropped as stale): the outstanding request is answered,
        so a new one may go out at once instead of waiting for the retry timeout.

        With ``now_ns`` the latency is recorded (latency mode): from the chunk's capture
        (``t_capture_ns``) when known, which is what its timing loses, else from the last
        request. Measuring from the last request alone under-estimated it whenever several
        requests were out (startup requests every 200 ms, a starving request): a 1.5 s stage
        then read as 0.03 s, the next request went out with 0.2 s left and the arm starved.
        """
        if now_ns is not None and t_capture_ns > 0:
            self._latencies_ns.append(max(0, now_ns - t_capture_ns))
        elif now_ns is not None and self._outstanding and self._last_request_ns is not None:
            self._latencies_ns.append(max(0, now_ns - self._last_request_ns))
        del self._latencies_ns[:-_LATENCY_WINDOW]
        self._outstanding = False

    @property
    def latency_estimate_ns(self) -> int | None:
        """The slowest of the last few request -> chunk latencies (None before the first)."""
        return max(self._latencies_ns) if self._latencies_ns else None

    def _below_threshold(self, horizon_left_ns: int, chunk_horizon_ns: int) -> bool:
        cfg, est = self.cfg, self.latency_estimate_ns
        if cfg.mode == "latency" and est is not None:
            return horizon_left_ns <= max(cfg.latency_margin * est, cfg.min_left_ms * 1e6)
        return horizon_left_ns <= cfg.threshold * chunk_horizon_ns

    def decide(self, now_ns: int, *, horizon_left_ns: int, chunk_horizon_ns: int,
               have_chunk: bool, starving: bool) -> RequestDecision | None:
        since = None if self._last_request_ns is None else now_ns - self._last_request_ns
        cfg = self.cfg
        reason: str | None = None
        if not have_chunk:
            if since is None or since >= cfg.startup_period_ms * 1e6:
                reason = "startup"
        elif cfg.mode == "rate":
            if since is None or since >= 1e9 / cfg.rate_hz:
                reason = "fixed_rate"
        elif starving:
            # once when starvation starts (an earlier request may have been lost), then at the
            # retry timeout while it lasts
            if (not self._was_starving or not self._outstanding or since is None
                    or since >= cfg.timeout_ms * 1e6):
                reason = "starving"
        elif self._below_threshold(horizon_left_ns, chunk_horizon_ns):
            if not self._outstanding:
                reason = "horizon_below_threshold"
            elif since is None or since >= cfg.timeout_ms * 1e6:
                reason = "retry_timeout"
        self._was_starving = starving
        if reason is None:
            return None
        self._last_request_ns = now_ns
        self._outstanding = True
        self.counts[reason] += 1
        self.last = RequestDecision(reason, int(horizon_left_ns))
        return self.last

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.counts),
            "request_mode": self.cfg.mode,
            "latency_estimate_ms": (None if self.latency_estimate_ns is None
                                    else self.latency_estimate_ns / 1e6),
            "last_request_reason": self.last.reason if self.last else None,
            "last_request_horizon_left_ms": (self.last.horizon_left_ns / 1e6
                                             if self.last else None),
        }
