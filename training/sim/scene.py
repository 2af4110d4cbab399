"""What the tea-bag scene holds (task, objects and their sizes) and how it is rendered and timed."""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.deploy.bundle.cameras import CAMERAS

TASK = "put the tea bag in the mug"
# The task's phases in order (`TeaBagEnv.task_phase`): a failed episode says where it stalled.
TASK_PHASES: tuple[str, ...] = ("reaching", "grasped", "carrying", "in_mug")
BAG_LIFTED_Z_M = 0.03

BAG_HALF_SIZE_M = (0.018, 0.013, 0.007)
MUG_HOME_XY = (0.015, -0.170)
MUG_INNER_RADIUS_M = 0.033
MUG_HEIGHT_M = 0.070
ASSET = "so101_teabag.xml"


@dataclass
class SceneConfig:
    """Rendering and timing of the scene. Defaults are the training resolution (low, fast)."""

    width: int = 96
    height: int = 96
    fps: int = 30
    seed: int = 0
    cameras: tuple[str, ...] = CAMERAS
    max_physics_dt_s: float = 0.002  # physics step is 1/(fps*k) <= this
    shadows: bool = False  # shadows are most of the software-rendering cost (SETUP-NOTES)
    episode_s: float = 10.0  # default episode length used by recorders / evaluators

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 16 <= v <= 1280:
                raise ValueError(f"SceneConfig.{name} must be an int in [16, 1280], got {v!r}")
        if not isinstance(self.fps, int) or not 1 <= self.fps <= 500:
            raise ValueError(f"SceneConfig.fps must be an int in [1, 500], got {self.fps!r}")
        self.cameras = tuple(self.cameras)
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or not self.cameras:
            raise ValueError(f"SceneConfig.cameras must be a non-empty subset of {CAMERAS}, "
                             f"got {self.cameras!r}")
        if not 1e-4 <= self.max_physics_dt_s <= 0.01:
            raise ValueError("SceneConfig.max_physics_dt_s must be in [1e-4, 0.01] s, "
                             f"got {self.max_physics_dt_s}")
        if self.episode_s <= 0:
            raise ValueError(f"SceneConfig.episode_s must be > 0, got {self.episode_s}")

    @property
    def frames_per_episode(self) -> int:
        return int(round(self.episode_s * self.fps))
