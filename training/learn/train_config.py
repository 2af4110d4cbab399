"""`TrainConfig`, the settings of one training run (from flags or a YAML/JSON file), and its result."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    """One training run. Defaults mirror the reference's recipe (batch 8, periodic checkpoints,
    ACT chunk 100 / SmolVLA chunk 50) with step counts that fit a 2-core CPU."""

    policy: str = "act"
    dataset: str = ""
    out: str = ""
    steps: int = 2000
    batch_size: int = 8
    save_every: int = 500
    log_every: int = 10
    num_workers: int = 1
    seed: int = 0
    lr: float | None = None  # None: the policy config's own optimizer_lr
    grad_clip_norm: float = 10.0
    time_budget_s: float | None = None  # stop (and checkpoint) early once this much time has passed
    episodes: list[int] | None = None  # None: the dataset's "train" split (all if it has none)
    # Extra keyword arguments for the lerobot policy config (e.g. dim_model, chunk_size).
    policy_overrides: dict[str, Any] = field(default_factory=dict)
    # Warm start: a run / checkpoint of the same architecture whose weights (and Adam moments, when
    # saved) start this run. The normaliser comes from *this* run's dataset, so a model can move on
    # to a bigger recording without re-learning from random init. Both datasets must have been
    # normalised alike: a model trained on lerobot 0.4.4's broken image stats (image_stats.py)
    # would see ~70x smaller inputs on a repaired dataset.
    init_from: str | None = None
    # Forward pass under bfloat16 autocast (weights, gradients and Adam stay float32). Pays
    # where the CPU has AMX or AVX512-BF16 (`edgevla bench train-step` measures it); slower
    # elsewhere.
    bf16_autocast: bool = False

    def __post_init__(self) -> None:
        if self.policy not in ("act", "smolvla"):
            raise ValueError(f"TrainConfig.policy must be 'act' or 'smolvla', got {self.policy!r}")
        for name in ("steps", "batch_size", "save_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers}")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Load a JSON or YAML file of TrainConfig fields; `overrides` (not None) win."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, ValueError) as exc:
            raise ValueError(f"{path}: not valid JSON/YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of TrainConfig fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


@dataclass
class TrainResult:
    out: Path
    last_checkpoint: Path
    steps_done: int
    first_loss: float
    last_loss: float
    seconds: float
    losses: list[tuple[int, float]]
