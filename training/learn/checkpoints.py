"""Checkpoints of a training run: writing them, finding them, reloading a policy offline and
warm-starting a new run from one.

    OUT/checkpoints/000500/pretrained_model/   # config.json, model.safetensors, processors (+ vlm/)
    OUT/checkpoints/000500/training_state/     # lerobot's optimizer/scheduler/rng/step
    OUT/checkpoints/last -> 000500
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgevla.training.torch_setup import ensure_torchvision

PRETRAINED_DIR = "pretrained_model"
TRAINING_STATE_DIR = "training_state"


def save_checkpoint(out: Path, step: int, policy, pre, post, optimizer, scheduler,
                    info: dict[str, Any] | None = None) -> Path:
    from lerobot.utils.train_utils import save_training_state

    ckpt = out / "checkpoints" / f"{step:06d}"
    pretrained = ckpt / PRETRAINED_DIR
    policy.save_pretrained(pretrained)
    pre.save_pretrained(pretrained)
    post.save_pretrained(pretrained)
    vlm = getattr(policy.config, "vlm_model_name", None)
    if vlm and Path(vlm).is_dir():
        # Keep the tiny SmolVLM config/tokenizer next to the weights so the folder is self-contained.
        shutil.copytree(vlm, pretrained / "vlm", dirs_exist_ok=True)
    # What lerobot's config does not hold but a runtime needs: control rate, task string, source.
    (pretrained / "edgevla.json").write_text(json.dumps({**(info or {}), "step": step}, indent=1))
    save_training_state(ckpt, step, optimizer, scheduler)
    last = out / "checkpoints" / "last"
    if last.is_symlink() or last.exists():
        last.unlink()
    last.symlink_to(ckpt.name)
    return ckpt


def warm_start(policy, optimizer, source: str | Path) -> Path:
    """Load another run's weights (strictly: same architecture) and, when its checkpoint kept
    them, its optimizer moments, so the first steps on new data do not jolt the weights."""
    from safetensors.torch import load_file

    pretrained = resolve_pretrained_dir(source)
    state = load_file(pretrained / "model.safetensors")
    own = policy.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        raise ValueError(
            f"init_from {pretrained}: not the same architecture as this config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, other shape {reshaped[:3]}); "
            f"use the source run's policy_overrides"
        )
    policy.load_state_dict(state, strict=True)
    moments = pretrained.parent / TRAINING_STATE_DIR
    if (moments / "optimizer_state.safetensors").is_file():
        from lerobot.optim.optimizers import load_optimizer_state

        lrs = [g["lr"] for g in optimizer.param_groups]  # this run's learning rates win
        try:
            load_optimizer_state(optimizer, moments)
        except (ValueError, KeyError, RuntimeError) as exc:  # other param groups: fresh moments
            print(f"init_from {pretrained}: optimizer moments not reused ({exc})")
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
    return pretrained


def resolve_pretrained_dir(path: str | Path) -> Path:
    """Accept a run folder, a checkpoint folder or a pretrained_model folder."""
    path = Path(path)
    for cand in (path, path / PRETRAINED_DIR, path / "checkpoints" / "last" / PRETRAINED_DIR):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise FileNotFoundError(
        f"{path}: no policy checkpoint found (expected config.json + model.safetensors in it, in "
        f"{PRETRAINED_DIR}/ or in checkpoints/last/{PRETRAINED_DIR}/)"
    )


def load_policy(path: str | Path, device: str = "cpu"):
    """Reload `(policy, pre, post)` from a checkpoint made by `train`, fully offline."""

    ensure_torchvision()
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    pretrained = resolve_pretrained_dir(path)
    config = PreTrainedConfig.from_pretrained(pretrained)
    config.device = device
    overrides: dict[str, Any] = {"device_processor": {"device": device}}
    if config.type == "smolvla":
        # The saved config names the VLM folder of the machine that trained it; use our copy.
        config.vlm_model_name = str((pretrained / "vlm").resolve())
        config.load_vlm_weights = False
        overrides["tokenizer_processor"] = {"tokenizer_name": config.vlm_model_name}
    policy = get_policy_class(config.type).from_pretrained(pretrained, config=config)
    policy.eval()
    pre, post = make_pre_post_processors(
        config, pretrained_path=str(pretrained), preprocessor_overrides=overrides,
        postprocessor_overrides={"device_processor": {"device": "cpu"}},
    )
    return policy, pre, post
