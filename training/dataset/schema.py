"""What a recorded dataset holds and how one is opened: its repo id, robot type, LeRobot
features (three cameras, the 12-value state, 6 joint targets, per-episode protocol columns) and
the code tables of those columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevla.deploy.bundle.cameras import image_key
from edgevla.deploy.bundle.state_layout import DEFAULT_DIM as STATE_DIM
from edgevla.deploy.bundle.state_layout import state_names
from edgevla.training.sim.kinematics import JOINT_NAMES
from edgevla.training.sim.scene import SceneConfig
from edgevla.training.torch_setup import ensure_torchvision

REPO_ID = "edgevla/sim_teabag"
ROBOT_TYPE = "so101_sim"
RECOVERY_KIND_CODES = {"": 0, "bag_dropped": 1, "missed_grasp": 2, "mug_displaced": 3}
SPLIT_CODES = {"train": 0, "val": 1}
META_KEYS = ("episode.cluster", "episode.position_index", "episode.recovery",
             "episode.recovery_kind", "episode.split")


def dataset_features(scene: SceneConfig, use_videos: bool = False) -> dict[str, dict[str, Any]]:
    """The LeRobot feature spec of a recording at ``scene``'s resolution."""
    img_dtype = "video" if use_videos else "image"
    feats: dict[str, dict[str, Any]] = {}
    for cam in scene.cameras:
        feats[image_key(cam)] = {
            "dtype": img_dtype, "shape": (scene.height, scene.width, 3),
            "names": ["height", "width", "channels"],
        }
    feats["observation.state"] = {"dtype": "float32", "shape": (STATE_DIM,),
                                  "names": state_names(JOINT_NAMES, STATE_DIM)}
    feats["action"] = {"dtype": "float32", "shape": (6,), "names": list(JOINT_NAMES)}
    for key in META_KEYS:
        feats[key] = {"dtype": "int64", "shape": (1,), "names": None}
    return feats


def open_dataset(root: str | Path):
    """LeRobotDatasetMetadata for a local dataset folder, with a readable error if it is not one."""
    ensure_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata  # torch: after the fix above

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(
            f"{root}: not a LeRobot dataset (no meta/info.json); record one with `edgevla dataset record`"
        )
    return LeRobotDatasetMetadata(repo_id=f"local/{root.name}", root=root)
