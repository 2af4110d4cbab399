"""`EvalReport`: the outcome of one evaluation run and its row in the results table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgevla.training.eval.significance import wilson_interval


@dataclass
class EvalReport:
    policy: str
    format: str
    mode: str
    latency_ms: float
    test: float
    val: float
    global_: float
    n_test: int
    n_val: int
    source: str
    episodes: list[dict[str, Any]]
    seconds: float
    config: dict[str, Any]
    task_time_s: float | None = None  # mean sim time of the successful episodes
    idle_fraction: float = 0.0  # ticks the arm waited for a chunk / all ticks
    # the same after the first chunk: the pauses between chunks, which async exists to remove
    running_idle_fraction: float = 0.0

    def row(self) -> dict[str, Any]:
        return {"policy": self.policy, "format": self.format, "mode": self.mode,
                "latency_ms": round(self.latency_ms, 2), "test": round(self.test, 3),
                "val": round(self.val, 3), "global": round(self.global_, 3),
                "n_test": self.n_test, "n_val": self.n_val,
                "simulated_latency_ms": self.config.get("simulated_latency_ms"),
                "actions_per_chunk": self.config.get("actions_per_chunk"),
                "task_time_s": None if self.task_time_s is None else round(self.task_time_s, 2),
                "idle_fraction": round(self.idle_fraction, 4),
                "running_idle_fraction": round(self.running_idle_fraction, 4),
                "global_ci95": [round(x, 3) for x in wilson_interval(
                    sum(bool(e["success"]) for e in self.episodes), len(self.episodes))]}
