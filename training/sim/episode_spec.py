"""`EpisodeSpec`: everything that defines an episode's start; a protocol is a list of them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgevla.training.sim.scene import BAG_HALF_SIZE_M, MUG_HOME_XY

RECOVERY_KINDS = ("bag_dropped", "missed_grasp", "mug_displaced")


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything that defines an episode's start; a protocol is a list of these.

    ``bag_z`` above the resting height makes the bag fall at the start (the "dropped bag"
    recovery); ``arm_q`` (6 joints, rad) overrides the home pose (e.g. the "missed grasp"
    recovery starts next to the bag with the gripper closed).
    """

    index: int = 0
    cluster: int = -1
    position_index: int = -1
    recovery: bool = False
    recovery_kind: str = ""
    split: str = "train"
    bag_xy: tuple[float, float] = (0.16, 0.04)
    bag_yaw: float = 0.0
    bag_z: float = BAG_HALF_SIZE_M[2]
    mug_xy: tuple[float, float] = MUG_HOME_XY
    arm_q: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in ("train", "val"):
            raise ValueError(f"EpisodeSpec.split must be 'train' or 'val', got {self.split!r}")
        if self.recovery_kind and self.recovery_kind not in RECOVERY_KINDS:
            raise ValueError(f"EpisodeSpec.recovery_kind must be one of {RECOVERY_KINDS} or '', "
                             f"got {self.recovery_kind!r}")
        if self.recovery != bool(self.recovery_kind):
            raise ValueError("EpisodeSpec.recovery must be True exactly when recovery_kind is set")
        if self.arm_q is not None and len(self.arm_q) != 6:
            raise ValueError(f"EpisodeSpec.arm_q must have 6 joints, got {len(self.arm_q)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bag_xy"] = list(self.bag_xy)
        d["mug_xy"] = list(self.mug_xy)
        d["arm_q"] = None if self.arm_q is None else list(self.arm_q)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"EpisodeSpec: unknown fields {sorted(unknown)}")
        kw = dict(d)
        for k in ("bag_xy", "mug_xy"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        if kw.get("arm_q") is not None:
            kw["arm_q"] = tuple(float(v) for v in kw["arm_q"])
        return cls(**kw)
