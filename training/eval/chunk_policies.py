"""The policies an evaluation runs, behind one interface (`ChunkPolicy`): a lerobot checkpoint
(PyTorch eager) or an exported bundle (numpy + ONNX Runtime)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgevla.deploy.bundle.cameras import image_key
from edgevla.deploy.bundle.model_path import is_bundle
from edgevla.deploy.bundle.state_layout import policy_state
from edgevla.deploy.inference.pipeline import StageModel
from edgevla.firmware_bridge.servos.joint_units import JointUnits, joint_map
from edgevla.training.learn.checkpoints import load_policy, resolve_pretrained_dir
from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE


class ChunkPolicy(Protocol):
    name: str
    format: str
    chunk_size: int
    n_action_steps: int
    image_hw: tuple[int, int]
    fps: int

    state_dim: int

    def predict(self, images: dict[str, np.ndarray], joints: np.ndarray,
                goal: np.ndarray | None = None) -> np.ndarray:
        """HxWx3 uint8 frames by camera name + (6,) measured joints + (6,) servo goal ->
        (chunk_size, 6) joint targets. A positions-only model ignores the goal."""


class _SimUnits:
    """A policy in LeRobot's SO-101 units run on the sim: its state in and its chunk out go
    through the sim arm's calibration file, as a real arm's would through its own."""

    def __init__(self, names: list[str], units: list[str]) -> None:
        identity = all(u == "radians" for u in units)
        self.map: JointUnits | None = None if identity else joint_map(
            units, names, SIM_CALIBRATION_FILE, where="eval")

    def state(self, joints: np.ndarray, goal: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if self.map is None:
            return joints, goal
        return (self.map.from_servo_radians(joints),
                None if goal is None else self.map.from_servo_radians(goal))

    def chunk(self, actions: np.ndarray) -> np.ndarray:
        if self.map is None:
            return actions
        return np.stack([self.map.to_servo_radians(a) for a in actions]).astype(np.float32)


class TorchPolicy:
    """A lerobot checkpoint written by `edgevla train`, run eagerly with its own processors."""

    def __init__(self, path: str | Path) -> None:
        import torch

        self._torch = torch
        self.dir = resolve_pretrained_dir(path)
        self.policy, self.pre, self.post = load_policy(self.dir)
        cfg = self.policy.config
        self.name = f"{cfg.type.upper() if cfg.type == 'act' else 'SmolVLA'}"
        self.format = "PyTorch eager"
        self.chunk_size = int(cfg.chunk_size)
        self.n_action_steps = int(cfg.n_action_steps)
        shape = next(f.shape for k, f in cfg.input_features.items() if k.startswith("observation.images."))
        self.image_hw = (int(shape[1]), int(shape[2]))
        meta = self.dir / "edgevla.json"
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        self.fps = int(info.get("fps", 30))
        self.task = str(info.get("task", "put the tea bag in the mug"))
        self.state_dim = int(cfg.robot_state_feature.shape[0])
        joints = info.get("joints") or {}
        self.units = _SimUnits(joints.get("names", []), joints.get("units", []))

    def predict(self, images: dict[str, np.ndarray], joints: np.ndarray,
                goal: np.ndarray | None = None) -> np.ndarray:
        torch = self._torch
        state = policy_state(*self.units.state(joints, goal), self.state_dim)
        batch: dict[str, Any] = {
            image_key(cam): torch.from_numpy(np.ascontiguousarray(img))
            .permute(2, 0, 1)
            .float()
            .div_(255.0)
            .unsqueeze(0)
            for cam, img in images.items()
        }
        batch["observation.state"] = torch.from_numpy(np.asarray(state, np.float32)).unsqueeze(0)
        batch["task"] = [self.task]
        with torch.inference_mode():
            chunk = self.post(self.policy.predict_action_chunk(self.pre(batch)))
        return self.units.chunk(chunk[0].numpy().astype(np.float32))


class BundlePolicy:
    """An exported model bundle (`edgevla export`), run stage by stage without torch."""

    def __init__(self, path: str | Path, rng_seed: int = 0) -> None:
        self.model = StageModel(path)
        m = self.model.manifest
        self.name = "ACT" if m.policy == "act" else "SmolVLA"
        precisions = {s: m.stages[s].pick(None, None).precision for s in self.model.files}
        if set(precisions.values()) == {"fp32"}:
            self.format = "ONNX FP32"
        else:
            self.format = "ONNX " + ", ".join(f"{s} {p}" for s, p in precisions.items())
        self.chunk_size = int(m.chunk_size)
        self.n_action_steps = int(m.extra.get("n_action_steps", m.chunk_size))
        self.image_hw = (int(m.image_hw[0]), int(m.image_hw[1]))
        self.fps = int(round(m.fps))
        self.state_dim = int(m.state_dim)
        self._rng = np.random.default_rng(rng_seed)
        self.units = _SimUnits(m.joint_names, m.joint_units)

    def predict(self, images: dict[str, np.ndarray], joints: np.ndarray,
                goal: np.ndarray | None = None) -> np.ndarray:
        state = policy_state(*self.units.state(joints, goal), self.state_dim)
        return self.units.chunk(np.asarray(self.model.predict(images, state, rng=self._rng), np.float32))


def open_policy(path: str | Path) -> ChunkPolicy:
    """A bundle folder (manifest.json) or a lerobot checkpoint / training run folder."""
    path = Path(path)
    if is_bundle(path):
        return BundlePolicy(path)
    return TorchPolicy(path)
