"""The governor: keep inference latency below the execution horizon by scaling other actors.

Pure decision logic, no I/O. The executor feeds it one sample per accepted chunk: the measured
inference latency (the chunk's arrival minus its ``t_capture_ns``, one clock) and the time
budget that latency must fit in (the horizon that was left when the observation was
requested). It keeps an exponential average of ``latency / budget``:

* above ``high`` (latency approaches the horizon) it lowers the first knob that can still go
  down, in the order the graph lists them (e.g. denoising steps, then camera rate, then
  request rate);
* below ``low`` (there is slack) for ``raise_after`` samples in a row it raises the knob it
  lowered last, back toward its maximum;
* at most one change per ``cooldown_ms``, so each change is measured before the next.

Knobs are ``{"actor": ..., "rate_hz": true, ...}`` (becomes ``set_rate``) or
``{"actor": ..., "param": name, ...}`` (becomes ``set_param``), each with ``min``, ``max``,
an optional ``value`` (start; default ``max``) and either ``step`` (additive) or ``factor``
(multiplicative, < 1). The actor publishes decisions on its control port; the supervisor
applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


MAX_RATIO = 10.0  # the latency/budget ratio given to a sample whose budget was already gone


@dataclass
class Knob:
    actor: str
    kind: str  # "rate" or "param"
    name: str  # parameter name ("rate_hz" for rate knobs)
    min: float
    max: float
    value: float
    step: float = 0.0
    factor: float = 0.0
    integer: bool = False

    @classmethod
    def from_params(cls, i: int, p: dict[str, Any]) -> Knob:
        where = f"executor params: governor.knobs[{i}]"
        if not isinstance(p, dict) or "actor" not in p:
            raise ValueError(f"{where} must be a map with 'actor', got {p!r}")
        if p.get("rate_hz"):
            kind, name = "rate", "rate_hz"
        elif "param" in p:
            kind, name = "param", str(p["param"])
        else:
            raise ValueError(f"{where} needs 'rate_hz: true' or 'param: NAME'")
        lo, hi = float(p.get("min", 0)), float(p.get("max", 0))
        if not (0 <= lo < hi):
            raise ValueError(f"{where}: need 0 <= min < max, got min={lo} max={hi}")
        step, factor = float(p.get("step", 0.0)), float(p.get("factor", 0.0))
        if (step > 0) == (0 < factor < 1):
            raise ValueError(f"{where}: give exactly one of step > 0 or 0 < factor < 1")
        value = float(p.get("value", hi))
        if not lo <= value <= hi:
            raise ValueError(f"{where}: value {value} outside [{lo}, {hi}]")
        integer = bool(p.get("integer", kind == "param" and float(step).is_integer() and step > 0))
        return cls(str(p["actor"]), kind, name, lo, hi, value, step, factor, integer)

    def lowered(self) -> float:
        v = self.value - self.step if self.step else self.value * self.factor
        v = max(self.min, v)
        return float(math.floor(v)) if self.integer and v > self.min else v

    def raised(self) -> float:
        v = self.value + self.step if self.step else self.value / self.factor
        v = min(self.max, v)
        return float(math.ceil(v)) if self.integer and v < self.max else v


@dataclass(frozen=True)
class GovernorConfig:
    enabled: bool = False
    high: float = 0.8
    low: float = 0.5
    ema_alpha: float = 0.3
    cooldown_ms: float = 1000.0
    raise_after: int = 3
    knobs: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"executor params: governor needs 0 < low < high, got "
                             f"low={self.low} high={self.high}")
        if not 0 < self.ema_alpha <= 1:
            raise ValueError(f"executor params: governor.ema_alpha must be in (0, 1], "
                             f"got {self.ema_alpha}")

    @classmethod
    def from_params(cls, p: dict[str, Any] | None) -> GovernorConfig:
        p = dict(p or {})
        return cls(enabled=bool(p.get("enabled", bool(p.get("knobs")))),
                   high=float(p.get("high", 0.8)), low=float(p.get("low", 0.5)),
                   ema_alpha=float(p.get("ema_alpha", 0.3)),
                   cooldown_ms=float(p.get("cooldown_ms", 1000.0)),
                   raise_after=int(p.get("raise_after", 3)),
                   knobs=tuple(p.get("knobs", ()) or ()))


@dataclass(frozen=True)
class GovernorDecision:
    actor: str
    kind: str  # "rate" -> set_rate, "param" -> set_param
    name: str
    value: float
    direction: str  # "lower" / "raise"
    reason: str
    t_ns: int


@dataclass
class Governor:
    cfg: GovernorConfig
    knobs: list[Knob] = field(default_factory=list)
    ratio_ema: float | None = None
    last_latency_ns: int = 0
    samples: int = 0
    _calm: int = 0
    _last_change_ns: int | None = None
    _lowered: list[int] = field(default_factory=list)  # knob indices, most recent last
    decisions: list[GovernorDecision] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.knobs:
            self.knobs = [Knob.from_params(i, k) for i, k in enumerate(self.cfg.knobs)]

    def observe(self, now_ns: int, latency_ns: int, budget_ns: int) -> GovernorDecision | None:
        """One latency sample against its horizon budget; maybe one knob change."""
        if latency_ns < 0:
            return None
        # No horizon left at all when the observation was taken: any latency was too much.
        # Skipping such samples would leave a governor blind exactly when it is needed most.
        ratio = latency_ns / budget_ns if budget_ns > 0 else MAX_RATIO
        a = self.cfg.ema_alpha
        self.ratio_ema = ratio if self.ratio_ema is None else a * ratio + (1 - a) * self.ratio_ema
        self.last_latency_ns = int(latency_ns)
        self.samples += 1
        self._calm = self._calm + 1 if self.ratio_ema < self.cfg.low else 0
        if not self.cfg.enabled or not self.knobs:
            return None
        if (self._last_change_ns is not None
                and now_ns - self._last_change_ns < self.cfg.cooldown_ms * 1e6):
            return None
        if self.ratio_ema > self.cfg.high:
            for i, k in enumerate(self.knobs):
                if k.value > k.min:
                    reason = (f"latency {latency_ns / 1e6:.0f} ms is {self.ratio_ema:.2f} of the "
                              f"{budget_ns / 1e6:.0f} ms horizon budget (> {self.cfg.high})")
                    return self._change(now_ns, i, k.lowered(), "lower", reason)
        elif self._calm >= self.cfg.raise_after:
            order = list(reversed(self._lowered)) + [i for i in range(len(self.knobs))
                                                     if i not in self._lowered]
            for i in order:
                k = self.knobs[i]
                if k.value < k.max:
                    reason = (f"latency {latency_ns / 1e6:.0f} ms is {self.ratio_ema:.2f} of the "
                              f"{budget_ns / 1e6:.0f} ms horizon budget (< {self.cfg.low})")
                    return self._change(now_ns, i, k.raised(), "raise", reason)
        return None

    def _change(self, now_ns: int, i: int, value: float, direction: str,
                reason: str) -> GovernorDecision:
        k = self.knobs[i]
        k.value = value
        if direction == "lower":
            if i in self._lowered:
                self._lowered.remove(i)
            self._lowered.append(i)
        elif k.value >= k.max and i in self._lowered:
            self._lowered.remove(i)
        self._last_change_ns = now_ns
        self._calm = 0
        d = GovernorDecision(k.actor, k.kind, k.name, value, direction, reason, now_ns)
        self.decisions.append(d)
        del self.decisions[:-32]  # keep the recent history bounded
        return d

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": self.cfg.enabled,
            "latency_ratio_ema": self.ratio_ema,
            "last_latency_ms": self.last_latency_ns / 1e6,
            "samples": self.samples,
            "knobs": {f"{k.actor}.{k.name}": k.value for k in self.knobs},
            "decisions": [{"actor": d.actor, "name": d.name, "value": d.value,
                           "direction": d.direction, "reason": d.reason} for d in self.decisions],
        }
