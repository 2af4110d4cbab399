"""Fine-tune lerobot's ACT or SmolVLA on a local LeRobot dataset, on CPU, resumably.

Uses lerobot 0.4.4 as it is: `LeRobotDataset` (with `resolve_delta_timestamps` for the action
chunks), the policy classes built in `policies.py`, `make_pre_post_processors` with the dataset's
own statistics, the config's optimizer/scheduler presets, and lerobot's training-state
save/load (optimizer, scheduler, RNG). What edgevla adds is the CPU-sized defaults, the rich
progress bar, the loss history + PNG, and a checkpoint layout that reloads offline anywhere:

    OUT/
      train_config.json             # the TrainConfig that produced the run
      loss.json, loss.png           # per-step loss history and its plot
      checkpoints/000500/pretrained_model/   # config.json, model.safetensors, processors (+ vlm/)
      checkpoints/000500/training_state/     # lerobot's optimizer/scheduler/rng/step
      checkpoints/last -> 000500
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgevla.actors.console.figures import save_figure
from edgevla.deploy.bundle.cameras import CAMERAS, image_key
from edgevla.deploy.bundle.state_layout import LAYOUTS, N_JOINTS
from edgevla.training.dataset.image_stats import broken_image_stats
from edgevla.training.dataset.schema import open_dataset
from edgevla.training.learn import policies
from edgevla.training.torch_setup import ensure_torchvision

CAMERA_KEYS = tuple(image_key(c) for c in CAMERAS)
PRETRAINED_DIR = "pretrained_model"
TRAINING_STATE_DIR = "training_state"


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


# ------------------------------------------------------------------------------- dataset


def dataset_image_hw(meta) -> tuple[int, int]:
    """(height, width) shared by the three cameras, with a clear error if the dataset differs."""
    hw = set()
    for key in CAMERA_KEYS:
        feat = meta.features.get(key)
        if feat is None:
            raise ValueError(
                f"{meta.root}/meta/info.json: feature {key!r} missing; edgevla policies expect "
                f"{list(CAMERA_KEYS)} + observation.state + action, found {sorted(meta.features)}"
            )
        shape, names = feat["shape"], feat.get("names") or []
        if len(shape) != 3:
            raise ValueError(f"{meta.root}/meta/info.json: {key}.shape must be 3-D, got {shape}")
        # lerobot stores images as (height, width, channels); accept CHW too.
        if names and names[0] in ("channels", "channel"):
            hw.add((int(shape[1]), int(shape[2])))
        else:
            hw.add((int(shape[0]), int(shape[1])))
    for key, dims in (("observation.state", tuple(LAYOUTS)), ("action", (N_JOINTS,))):
        feat = meta.features.get(key)
        if feat is None or len(feat["shape"]) != 1 or int(feat["shape"][0]) not in dims:
            want = " or ".join(f"({d},)" for d in dims)
            raise ValueError(
                f"{meta.root}/meta/info.json: {key} must have shape {want}, got {feat and feat['shape']}"
            )
    if len(hw) != 1:
        raise ValueError(f"{meta.root}: cameras have different sizes {sorted(hw)}; expected one (H, W)")
    return hw.pop()


def train_episodes(meta, explicit: list[int] | None = None) -> list[int] | None:
    """Episode indices to train on: explicit list, else info.json's "train" split, else all."""
    if explicit is not None:
        return list(explicit)
    split = (meta.info.get("splits") or {}).get("train")
    if isinstance(split, str) and ":" in split:
        lo, hi = (int(x) for x in split.split(":"))
        if (lo, hi) != (0, meta.total_episodes):
            return list(range(lo, hi))
    if isinstance(split, list):
        return [int(x) for x in split]
    return None


# ------------------------------------------------------------------------------- building


def build_policy(cfg: TrainConfig, meta, out: Path):
    """(policy, preprocessor, postprocessor) with the dataset's stats baked into the processors."""

    hw = dataset_image_hw(meta)
    overrides = dict(cfg.policy_overrides)
    overrides.setdefault("state_dim", int(meta.features["observation.state"]["shape"][0]))
    if cfg.lr is not None:
        overrides["optimizer_lr"] = cfg.lr
        if cfg.policy == "act":
            overrides["optimizer_lr_backbone"] = cfg.lr
    if cfg.policy == "act":
        config = policies.make_act_config(image_hw=hw, **overrides)
        return policies.make_act(config=config, dataset_stats=meta.stats)
    config = policies.make_smolvla_config(out / "vlm", image_hw=hw, **overrides)
    return policies.make_smolvla(config=config, dataset_stats=meta.stats)


def _optimizer_and_scheduler(policy, total_steps: int):
    preset = policy.config.get_optimizer_preset()
    optimizer = preset.build(policy.get_optim_params())
    sched_preset = policy.config.get_scheduler_preset()
    scheduler = sched_preset.build(optimizer, total_steps) if sched_preset is not None else None
    return optimizer, scheduler


# ------------------------------------------------------------------------------- checkpoints


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


# ------------------------------------------------------------------------------- plotting


def plot_losses(losses: list[tuple[int, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not losses:
        return
    steps = np.array([s for s, _ in losses])
    vals = np.array([v for _, v in losses])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, vals, lw=0.6, alpha=0.4, label="per step")
    win = max(1, len(vals) // 50)
    if win > 1:
        smooth = np.convolve(vals, np.ones(win) / win, mode="valid")
        ax.plot(steps[win - 1 :], smooth, lw=1.6, label=f"mean of {win}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# ------------------------------------------------------------------------------- training


def _cycle(loader):
    while True:
        yield from loader


class _InMemoryColumns:
    """Stands in for ``LeRobotDataset.hf_dataset``: numeric columns from memory, the rest as is.

    lerobot 0.4.4 reads an action window as ``hf_dataset[key][indices]``. With datasets 4.x
    that formats whole rows, so a 100-step ACT window decodes 100 rows x 3 camera PNGs only to
    keep 600 floats: measured 78 ms per item here, the data worker's whole CPU share. Serving the
    small numeric columns from one tensor makes the same query ~0.1 ms; images, single rows and
    everything else still go through the real dataset. Same values (tests/test_train.py).
    """

    def __init__(self, hf_dataset, keys: list[str]) -> None:
        import torch

        self._hf = hf_dataset
        self._cols = {k: torch.stack(list(hf_dataset.select_columns([k]).with_format("torch")[k]))
                      for k in keys}

    def __getitem__(self, key):
        if isinstance(key, str) and key in self._cols:
            return _ColumnRows(self._cols[key])
        return self._hf[key]

    def __len__(self) -> int:
        return len(self._hf)

    def __getattr__(self, name: str):
        return getattr(self._hf, name)


class _ColumnRows:
    def __init__(self, values) -> None:
        self._values = values

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return list(self._values[idx])  # lerobot torch.stack()s a sequence of row tensors
        return self._values[idx]


def serve_numeric_columns_from_memory(dataset) -> list[str]:
    """Install `_InMemoryColumns` for the columns the dataset queries as windows; returns them."""
    keys = sorted(k for k in (dataset.delta_indices or {}) if k not in dataset.meta.video_keys
                  and k not in dataset.meta.camera_keys)
    if keys and not isinstance(dataset.hf_dataset, _InMemoryColumns):
        dataset.hf_dataset = _InMemoryColumns(dataset.hf_dataset, keys)
    return keys


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) and return where the checkpoints and loss curve are."""

    ensure_torchvision()
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.train_utils import load_training_state
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not cfg.dataset or not cfg.out:
        raise ValueError("TrainConfig.dataset and TrainConfig.out are required")
    out = Path(cfg.out)
    last = out / "checkpoints" / "last"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: {last} does not exist (nothing to resume in {out})")
        saved = json.loads((out / "train_config.json").read_text())
        # The saved run defines the model; the caller may only extend steps / change cadence.
        for name in ("steps", "save_every", "log_every", "num_workers", "time_budget_s"):
            saved[name] = getattr(cfg, name)
        cfg = TrainConfig(**saved)
    elif last.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    meta = open_dataset(cfg.dataset)

    broken = broken_image_stats(meta.stats)
    if broken:
        # Not an error: runs already trained on these stats (and resumed) must stay consistent.
        print(f"warning: {cfg.dataset}: image std below 0.01 for {', '.join(broken)} (lerobot "
              f"0.4.4 stats bug): pixels are normalised ~40-85x too strongly. For a new run, "
              f"repair them first: edgevla dataset fix-stats {cfg.dataset}", flush=True)
    state_dim = int(meta.features["observation.state"]["shape"][0])
    if state_dim == N_JOINTS:
        print(f"note: {cfg.dataset}: observation.state holds joint positions only (datasets "
              f"recorded before 2026-12-06), not the servo goal: the policy will not know how "
              f"the arm is moving. `edgevla dataset record` writes both.", flush=True)
    policy, pre, post = build_policy(cfg, meta, out)
    optimizer, scheduler = _optimizer_and_scheduler(policy, cfg.steps)

    step = 0
    previous_s = 0.0  # training time of the earlier invocations of this run (resume)
    losses: list[tuple[int, float]] = []
    if resume:
        ckpt = last.resolve()
        from safetensors.torch import load_file

        state = load_file(ckpt / PRETRAINED_DIR / "model.safetensors")
        missing, unexpected = policy.load_state_dict(state, strict=False)
        if unexpected:
            raise RuntimeError(f"{ckpt}: checkpoint has unexpected weights {unexpected[:5]}")
        step, optimizer, scheduler = load_training_state(ckpt, optimizer, scheduler)
        loss_file = out / "loss.json"
        if loss_file.is_file():
            history = json.loads(loss_file.read_text())
            losses = [tuple(x) for x in history["losses"] if x[0] <= step]
            previous_s = float(history.get("seconds_total", 0.0))
    elif cfg.init_from:
        warm_start(policy, optimizer, cfg.init_from)

    tasks = list(getattr(meta, "tasks", None).index) if getattr(meta, "tasks", None) is not None else []
    info = {"policy": cfg.policy, "fps": int(meta.fps), "image_hw": list(dataset_image_hw(meta)),
            "task": tasks[0] if tasks else "put the tea bag in the mug", "dataset": str(cfg.dataset)}
    delta = resolve_delta_timestamps(policy.config, meta)
    dataset = LeRobotDataset(
        repo_id=meta.repo_id,
        root=cfg.dataset,
        episodes=train_episodes(meta, cfg.episodes),
        delta_timestamps=delta,
    )
    serve_numeric_columns_from_memory(dataset)
    generator = torch.Generator().manual_seed(cfg.seed + step)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(dataset) > cfg.batch_size,
        num_workers=cfg.num_workers,
        generator=generator,
        persistent_workers=cfg.num_workers > 0,
    )
    batches = _cycle(loader)
    params = [p for p in policy.parameters() if p.requires_grad]
    policy.train()
    t0 = time.monotonic()
    ckpt_path = last.resolve() if resume else None
    columns = [
        TextColumn(f"[bold]train {cfg.policy}[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, loss="-")
        while step < cfg.steps:
            batch = pre(next(batches))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
                loss, _ = policy.forward(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {step}: loss is {loss.item()} (lower TrainConfig.lr?)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            losses.append((step, float(loss.item())))
            if step % cfg.log_every == 0 or step == cfg.steps:
                recent = [v for _, v in losses[-cfg.log_every :]]
                bar.update(task, completed=step, loss=f"{sum(recent) / len(recent):.4f}")
                if not progress and step % (5 * cfg.log_every) == 0:
                    # Without a bar (logs, nohup) a line now and then tells where the run is.
                    print(f"step {step}/{cfg.steps} loss {sum(recent) / len(recent):.4f} "
                          f"{time.monotonic() - t0:.0f} s", flush=True)
            else:
                bar.update(task, completed=step)
            out_of_time = cfg.time_budget_s is not None and time.monotonic() - t0 > cfg.time_budget_s
            if step % cfg.save_every == 0 or step == cfg.steps or out_of_time:
                ckpt_path = save_checkpoint(out, step, policy, pre, post, optimizer, scheduler, info)
                (out / "loss.json").write_text(json.dumps(
                    {"losses": losses, "seconds_total": previous_s + time.monotonic() - t0}))
                plot_losses(losses, out / "loss.png", f"{cfg.policy} on {Path(cfg.dataset).name}")
            if out_of_time:
                bar.console.print(f"time budget of {cfg.time_budget_s:.0f} s reached at step {step}; "
                                  f"continue later with --resume")
                break
    seconds = time.monotonic() - t0
    (out / "loss.json").write_text(json.dumps({"losses": losses, "seconds_total": previous_s + seconds}))
    plot_losses(losses, out / "loss.png", f"{cfg.policy} on {Path(cfg.dataset).name}")
    head = [v for _, v in losses[: max(1, min(10, len(losses) // 5))]]
    tail = [v for _, v in losses[-max(1, min(10, len(losses) // 5)) :]]
    return TrainResult(
        out=out,
        last_checkpoint=ckpt_path or last.resolve(),
        steps_done=step,
        first_loss=sum(head) / len(head) if head else math.nan,
        last_loss=sum(tail) / len(tail) if tail else math.nan,
        seconds=seconds,
        losses=losses,
    )
