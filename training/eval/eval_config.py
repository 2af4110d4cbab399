"""`EvalConfig`: how an evaluation runs (episodes, sync or async, latency, blending)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    episodes: int = 20  # per split: `episodes` test starts over the training clusters + as many val
    val_episodes: int | None = None  # None: same as `episodes`
    mode: str = "sync"
    protocol_seed: int = 1000  # differs from the recording seed (0): new positions, same clusters
    max_seconds: float = 15.0  # episode time limit (sim time)
    latency_ms: float | None = None  # simulated inference latency (both modes); None = measured median
    # async: when to ask for the next chunk (actors/executor/request_policy.py): "latency" = at 1.5x the
    # measured inference latency left (at least 200 ms); "threshold" = at this fraction left
    request_mode: str = "latency"
    request_threshold: float = 0.5
    request_latency_margin: float = 1.5
    strategy: str = "crossfade"  # async: executor blending strategy
    crossfade_ms: float = 200.0
    seed: int = 0
    frames_every: int = 0  # keep every n-th frame for videos / contact sheets (0: none)
    # execute only the first N actions of each chunk (None: the policy's n_action_steps): how
    # often the policy re-plans, without retraining it
    actions_per_chunk: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("sync", "async"):
            raise ValueError(f"EvalConfig.mode must be 'sync' or 'async', got {self.mode!r}")
        if self.episodes < 1:
            raise ValueError(f"EvalConfig.episodes must be >= 1, got {self.episodes}")
        if self.val_episodes is not None and self.val_episodes < 0:
            raise ValueError(f"EvalConfig.val_episodes must be >= 0, got {self.val_episodes}")
        if self.max_seconds <= 0:
            raise ValueError(f"EvalConfig.max_seconds must be > 0, got {self.max_seconds}")
        if self.actions_per_chunk is not None and self.actions_per_chunk < 1:
            raise ValueError(f"EvalConfig.actions_per_chunk must be >= 1, got {self.actions_per_chunk}")
        if not 0.0 <= self.request_threshold <= 1.0:
            raise ValueError(f"EvalConfig.request_threshold must be in [0, 1], got {self.request_threshold}")
