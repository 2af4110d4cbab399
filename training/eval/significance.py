"""How sure the success rates are: Wilson intervals, and exact McNemar tests of async against
sync on the same starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgevla.training.eval.report import EvalReport


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate: 70 episodes still leave about +-0.11."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs (binomial, p = 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


@dataclass
class PairedComparison:
    """Async against sync on the same start positions (same protocol seed and latency)."""

    simulated_latency_ms: float | None
    pairs: int
    both: int
    only_sync: int
    only_async: int
    neither: int
    p_value: float  # exact McNemar: could the difference in success be chance?

    def verdict(self) -> str:
        if self.only_async == self.only_sync:
            return "equal"
        better = "async" if self.only_async > self.only_sync else "sync"
        return f"{better} better ({'p < 0.05' if self.p_value < 0.05 else 'not significant'})"


def paired_comparisons(reports: list[EvalReport]) -> list[PairedComparison]:
    """Pair every async run with the sync run at the same simulated latency, episode by episode.

    Both modes roll out the same starts, so the discordant episodes (solved by one mode only)
    say more than the two rates side by side."""
    out = []
    for a in reports:
        if a.mode != "async":
            continue
        lat = a.config.get("simulated_latency_ms")
        for s in reports:
            if s.mode != "sync" or s.config.get("simulated_latency_ms") != lat \
                    or s.config.get("actions_per_chunk") != a.config.get("actions_per_chunk") \
                    or s.config.get("protocol_seed") != a.config.get("protocol_seed"):
                continue
            sync_ok = {(e["split"], e["index"]): bool(e["success"]) for e in s.episodes}
            keys = [(e["split"], e["index"]) for e in a.episodes if (e["split"], e["index"]) in sync_ok]
            async_ok = {(e["split"], e["index"]): bool(e["success"]) for e in a.episodes}
            both = sum(sync_ok[k] and async_ok[k] for k in keys)
            only_s = sum(sync_ok[k] and not async_ok[k] for k in keys)
            only_a = sum(async_ok[k] and not sync_ok[k] for k in keys)
            out.append(PairedComparison(lat, len(keys), both, only_s, only_a,
                                        len(keys) - both - only_s - only_a, mcnemar_exact_p(only_s, only_a)))
            break
    return out
