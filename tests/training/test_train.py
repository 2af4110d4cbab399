"""Train lerobot ACT and SmolVLA a handful of steps on a tiny LeRobot dataset (CPU).

The dataset is written here with lerobot's own API (LeRobotDataset.create / add_frame /
save_episode / finalize) in the project's feature layout, with a learnable signal: the action is
a fixed linear function of the state, so a few optimizer steps must lower the loss.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.train

H, W = 32, 48  # tiny frames: the resnet18 backbone dominates the test time
FPS = 10
CAMERAS = ("top", "gripper", "left")


def write_tiny_dataset(root: Path, episodes: int = 3, frames: int = 30, seed: int = 0) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        f"observation.images.{c}": {"dtype": "image", "shape": (H, W, 3), "names": ["height", "width", "channels"]}
        for c in CAMERAS
    }
    features["observation.state"] = {"dtype": "float32", "shape": (6,), "names": [f"j{i}" for i in range(6)]}
    features["action"] = {"dtype": "float32", "shape": (6,), "names": [f"j{i}" for i in range(6)]}
    ds = LeRobotDataset.create("local/tiny", fps=FPS, features=features, root=root, use_videos=False)
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        start = rng.uniform(-0.5, 0.5, 6).astype(np.float32)
        goal = rng.uniform(-0.5, 0.5, 6).astype(np.float32)
        for t in range(frames):
            a = t / (frames - 1)
            state = (1 - a) * start + a * goal
            frame = {
                f"observation.images.{c}": rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for c in CAMERAS
            }
            frame["observation.state"] = state.astype(np.float32)
            frame["action"] = (state + 0.1 * (goal - start)).astype(np.float32)
            frame["task"] = "put the tea bag in the mug"
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("ds") / "tiny")


def _obs(batch: int = 1):
    import torch

    g = torch.Generator().manual_seed(1)
    obs = {f"observation.images.{c}": torch.rand(batch, 3, H, W, generator=g) for c in CAMERAS}
    obs["observation.state"] = torch.zeros(batch, 6)
    obs["task"] = ["put the tea bag in the mug"] * batch
    return obs


def _train_and_check(tmp_path: Path, dataset: Path, policy: str, overrides: dict, steps: int, lr: float):
    import torch

    from edgevla.training.learn.checkpoints import load_policy
    from edgevla.training.learn.train import train
    from edgevla.training.learn.train_config import TrainConfig

    out = tmp_path / policy
    cfg = TrainConfig(
        policy=policy,
        dataset=str(dataset),
        out=str(out),
        steps=steps,
        batch_size=8,
        save_every=steps // 2,
        log_every=5,
        num_workers=0,
        lr=lr,
        policy_overrides=overrides,
    )
    result = train(cfg, progress=False)
    assert result.steps_done == steps
    assert len(result.losses) == steps
    assert all(np.isfinite(v) for _, v in result.losses)
    # The mean of the last fifth must be clearly below the first fifth (learnable data).
    assert result.last_loss < 0.7 * result.first_loss, (result.first_loss, result.last_loss)
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / "checkpoints" / f"{steps // 2:06d}" / "training_state").is_dir()

    policy_obj, pre, post = load_policy(out)
    with torch.no_grad():
        chunk = post(policy_obj.predict_action_chunk(pre(_obs())))
    chunk_size = overrides.get("chunk_size", 100 if policy == "act" else 50)
    assert tuple(chunk.shape) == (1, chunk_size, 6)
    assert torch.isfinite(chunk).all()
    # Unnormalized actions live in the dataset's range (radians around +-0.6), not N(0,1) units.
    assert chunk.abs().max() < 3.0
    return cfg, result


def test_train_act_loss_falls_checkpoint_reloads_and_resumes(tmp_path, tiny_dataset):
    from edgevla.training.learn.train import train
    from edgevla.training.learn.train_config import TrainConfig

    overrides = {"chunk_size": 10, "n_action_steps": 10, "dim_model": 64, "dim_feedforward": 128,
                 "n_encoder_layers": 1, "n_vae_encoder_layers": 1}
    cfg, first = _train_and_check(tmp_path, tiny_dataset, "act", overrides, steps=40, lr=1e-3)

    # Resume: extends the same run from its last checkpoint, keeps the earlier loss history.
    cfg2 = TrainConfig(**{**cfg.__dict__, "steps": 45})
    resumed = train(cfg2, resume=True, progress=False)
    assert resumed.steps_done == 45
    assert [s for s, _ in resumed.losses] == list(range(1, 46))
    assert resumed.losses[:40] == first.losses
    saved = json.loads((Path(cfg.out) / "train_config.json").read_text())
    assert saved["steps"] == 45 and saved["policy_overrides"]["dim_model"] == 64

    with pytest.raises(FileExistsError):
        train(cfg, progress=False)  # refusing to overwrite a run without --resume

    # Warm start: a new run begins from the source's weights exactly (lr 0 keeps them unchanged).
    from safetensors.torch import load_file

    src = load_file(Path(cfg.out) / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    warm = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "warm"), "steps": 2, "save_every": 2,
                          "lr": 0.0, "init_from": cfg.out})
    train(warm, progress=False)
    got = load_file(tmp_path / "warm" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    assert sorted(got) == sorted(src)
    assert all(np.array_equal(got[k].numpy(), src[k].numpy()) for k in src)
    # Another architecture is refused with the reason, before any step runs.
    other = TrainConfig(**{**warm.__dict__, "out": str(tmp_path / "other"),
                           "policy_overrides": {**overrides, "dim_model": 32}})
    with pytest.raises(ValueError, match="not the same architecture"):
        train(other, progress=False)


def test_train_smolvla_loss_falls_and_checkpoint_reloads(tmp_path, tiny_dataset):
    # SmolVLA's flow-matching loss also covers the 26 padded action dims (max_action_dim 32, as
    # lerobot computes it), so it falls slower than ACT's L1: more steps, a higher rate.
    overrides = {"chunk_size": 10, "n_action_steps": 10}
    _train_and_check(tmp_path, tiny_dataset, "smolvla", overrides, steps=60, lr=3e-3)
    # The checkpoint carries its own tiny SmolVLM (config + tokenizer), so it reloads anywhere.
    vlm = next((tmp_path / "smolvla" / "checkpoints").glob("*/pretrained_model/vlm"))
    assert (vlm / "config.json").is_file() and (vlm / "tokenizer.json").is_file()


def test_train_config_rejects_bad_values(tmp_path):
    from edgevla.training.learn.train_config import TrainConfig

    with pytest.raises(ValueError, match="policy"):
        TrainConfig(policy="pi0")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    bad = tmp_path / "c.yaml"
    bad.write_text("stepz: 3\n")
    with pytest.raises(ValueError, match="stepz"):
        TrainConfig.from_file(bad)


def test_train_rejects_dataset_without_expected_cameras(tmp_path):
    from edgevla.training.dataset.schema import open_dataset

    with pytest.raises(FileNotFoundError, match="meta/info.json"):
        open_dataset(tmp_path)


def test_in_memory_action_windows_match_lerobots_own_query(tiny_dataset):
    """The training data path serves action windows from memory; items must be identical."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from edgevla.training.learn.in_memory_columns import serve_numeric_columns_from_memory

    delta = {"action": [i / FPS for i in range(12)]}  # windows cross episode ends -> padding
    plain = LeRobotDataset("local/tiny", root=tiny_dataset, delta_timestamps=delta)
    fast = LeRobotDataset("local/tiny", root=tiny_dataset, delta_timestamps=delta)
    assert serve_numeric_columns_from_memory(fast) == ["action"]
    assert serve_numeric_columns_from_memory(fast) == ["action"]  # idempotent
    for i in (0, 7, 25, 29, 30, 59, 89):
        a, b = plain[i], fast[i]
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], torch.Tensor):
                assert torch.equal(a[k], b[k]), (i, k)
            else:
                assert a[k] == b[k], (i, k)
    assert bool(fast[29]["action_is_pad"][1:].all())  # last frame of an episode: padded window
