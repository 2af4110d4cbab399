"""Real-time chunking in a generated graph: the executor's requests carry its commitment and
the denoise stage reads them (`actors/kinds/stage_guidance.py`, docs/ARCHITECTURE.md §5)."""

from __future__ import annotations

from typing import Any

# With RTC the new chunk already agrees with the old one over the inference delay: a short
# crossfade hides what is left (`edgevla bench rtc`).
RTC_CROSSFADE_MS = 100


def with_rtc(actors: dict[str, Any]) -> dict[str, Any]:
    """``actors`` (a generated graph's, edited in place and returned) with real-time chunking on,
    when it has a denoise stage; other graphs are returned as they are."""
    denoise, executor = actors.get("denoise"), actors.get("executor")
    if denoise is None or executor is None:
        return actors
    denoise["inputs"]["request"] = executor["outputs"]["requests"]
    denoise["params"]["rtc"] = True
    executor["params"].update(rtc=True, crossfade_ms=RTC_CROSSFADE_MS)
    return actors
