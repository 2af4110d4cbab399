"""Fine-tune lerobot's ACT or SmolVLA on a local LeRobot dataset, on CPU, resumably.

Uses lerobot 0.4.4 as it is: `LeRobotDataset` (with `resolve_delta_timestamps` for the action
chunks), the policy classes built in `policies.py`, `make_pre_post_processors` with the dataset's
own statistics, the config's optimizer/scheduler presets, and lerobot's training-state
save/load (optimizer, scheduler, RNG). What edgevla adds is the CPU-sized defaults, the rich
progress bar, the loss history + PNG, and a checkpoint layout that reloads offline anywhere
(`checkpoints.py`):

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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevla.deploy.bundle.state_layout import N_JOINTS
from edgevla.training.dataset.image_stats import broken_image_stats
from edgevla.training.dataset.schema import open_dataset
from edgevla.training.learn import policies
from edgevla.training.learn.checkpoints import PRETRAINED_DIR, save_checkpoint, warm_start
from edgevla.training.learn.dataset_layout import dataset_image_hw, train_episodes
from edgevla.training.learn.in_memory_columns import serve_numeric_columns_from_memory
from edgevla.training.learn.loss_plot import plot_losses
from edgevla.training.learn.train_config import TrainConfig, TrainResult
from edgevla.training.torch_setup import ensure_torchvision


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


def _cycle(loader):
    while True:
        yield from loader


@dataclass
class _Run:
    """What the step loop works on: the model, its optimizer and the history so far."""

    cfg: TrainConfig
    out: Path
    policy: Any
    pre: Any
    post: Any
    optimizer: Any
    scheduler: Any
    info: dict[str, Any]
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    previous_s: float = 0.0  # training time of the earlier invocations of this run (resume)
    ckpt_path: Path | None = None


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) and return where the checkpoints and loss curve are."""

    ensure_torchvision()
    import torch

    cfg, out, last = _start_run(cfg, resume)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    meta = open_dataset(cfg.dataset)
    _warn_about_dataset(cfg, meta)
    policy, pre, post = build_policy(cfg, meta, out)
    optimizer, scheduler = _optimizer_and_scheduler(policy, cfg.steps)
    run = _Run(cfg, out, policy, pre, post, optimizer, scheduler, info=_run_info(cfg, meta))
    if resume:
        _restore(run, last.resolve())
    elif cfg.init_from:
        warm_start(policy, optimizer, cfg.init_from)

    batches = _cycle(_make_loader(cfg, meta, policy, run.step))
    policy.train()
    t0 = time.monotonic()
    run.ckpt_path = last.resolve() if resume else None
    _run_steps(run, batches, t0, progress)
    seconds = time.monotonic() - t0
    _write_loss_history(run, seconds)
    head = [v for _, v in run.losses[: max(1, min(10, len(run.losses) // 5))]]
    tail = [v for _, v in run.losses[-max(1, min(10, len(run.losses) // 5)) :]]
    return TrainResult(
        out=out,
        last_checkpoint=run.ckpt_path or last.resolve(),
        steps_done=run.step,
        first_loss=sum(head) / len(head) if head else math.nan,
        last_loss=sum(tail) / len(tail) if tail else math.nan,
        seconds=seconds,
        losses=run.losses,
    )


def _start_run(cfg: TrainConfig, resume: bool) -> tuple[TrainConfig, Path, Path]:
    """Check the run folder (new, or one to resume) and write the run's train_config.json."""
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
    return cfg, out, last


def _warn_about_dataset(cfg: TrainConfig, meta) -> None:
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


def _run_info(cfg: TrainConfig, meta) -> dict[str, Any]:
    """What each checkpoint's edgevla.json tells a runtime: control rate, task string, source."""
    tasks = list(getattr(meta, "tasks", None).index) if getattr(meta, "tasks", None) is not None else []
    info = {"policy": cfg.policy, "fps": int(meta.fps), "image_hw": list(dataset_image_hw(meta)),
            "task": tasks[0] if tasks else "put the tea bag in the mug", "dataset": str(cfg.dataset)}
    joints = (getattr(meta, "info", None) or {}).get("edgevla", {}).get("joints")
    if joints:  # the units the policy speaks: what export and eval convert through
        info["joints"] = {k: joints[k] for k in ("set", "names", "units") if k in joints}
    return info


def _restore(run: _Run, ckpt: Path) -> None:
    """Weights, optimizer, scheduler, step and loss history of the checkpoint `ckpt`."""
    from lerobot.utils.train_utils import load_training_state
    from safetensors.torch import load_file

    state = load_file(ckpt / PRETRAINED_DIR / "model.safetensors")
    missing, unexpected = run.policy.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"{ckpt}: checkpoint has unexpected weights {unexpected[:5]}")
    run.step, run.optimizer, run.scheduler = load_training_state(ckpt, run.optimizer, run.scheduler)
    loss_file = run.out / "loss.json"
    if loss_file.is_file():
        history = json.loads(loss_file.read_text())
        run.losses = [tuple(x) for x in history["losses"] if x[0] <= run.step]
        run.previous_s = float(history.get("seconds_total", 0.0))


def _make_loader(cfg: TrainConfig, meta, policy, step: int):
    """lerobot's dataset with the policy's action windows, shuffled from a seed that moves on
    with the step so that a resumed run does not replay the batches it already saw."""
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    delta = resolve_delta_timestamps(policy.config, meta)
    dataset = LeRobotDataset(
        repo_id=meta.repo_id,
        root=cfg.dataset,
        episodes=train_episodes(meta, cfg.episodes),
        delta_timestamps=delta,
    )
    serve_numeric_columns_from_memory(dataset)
    generator = torch.Generator().manual_seed(cfg.seed + step)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(dataset) > cfg.batch_size,
        num_workers=cfg.num_workers,
        generator=generator,
        persistent_workers=cfg.num_workers > 0,
    )


def _run_steps(run: _Run, batches, t0: float, progress: bool) -> None:
    """Optimise until `cfg.steps` or the time budget, checkpointing every `save_every` steps."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cfg = run.cfg
    params = [p for p in run.policy.parameters() if p.requires_grad]
    columns = [
        TextColumn(f"[bold]train {cfg.policy}[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=run.step, loss="-")
        while run.step < cfg.steps:
            loss = _optimizer_step(run, next(batches), params)
            run.step += 1
            run.losses.append((run.step, loss))
            step = run.step
            if step % cfg.log_every == 0 or step == cfg.steps:
                recent = [v for _, v in run.losses[-cfg.log_every :]]
                bar.update(task, completed=step, loss=f"{sum(recent) / len(recent):.4f}")
                if not progress and step % (5 * cfg.log_every) == 0:
                    # Without a bar (logs, nohup) a line now and then tells where the run is.
                    print(f"step {step}/{cfg.steps} loss {sum(recent) / len(recent):.4f} "
                          f"{time.monotonic() - t0:.0f} s", flush=True)
            else:
                bar.update(task, completed=step)
            out_of_time = cfg.time_budget_s is not None and time.monotonic() - t0 > cfg.time_budget_s
            if step % cfg.save_every == 0 or step == cfg.steps or out_of_time:
                run.ckpt_path = save_checkpoint(run.out, step, run.policy, run.pre, run.post, run.optimizer,
                                                run.scheduler, run.info)
                _write_loss_history(run, time.monotonic() - t0)
            if out_of_time:
                bar.console.print(f"time budget of {cfg.time_budget_s:.0f} s reached at step {step}; "
                                  f"continue later with --resume")
                break


def _optimizer_step(run: _Run, raw_batch, params) -> float:
    """One forward/backward/update on a batch; returns the loss."""
    import torch

    batch = run.pre(raw_batch)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.cfg.bf16_autocast):
        loss, _ = run.policy.forward(batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {run.step}: loss is {loss.item()} (lower TrainConfig.lr?)")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, run.cfg.grad_clip_norm)
    run.optimizer.step()
    if run.scheduler is not None:
        run.scheduler.step()
    return float(loss.item())


def _write_loss_history(run: _Run, seconds: float) -> None:
    """loss.json (with the run's total training time so far) and loss.png."""
    (run.out / "loss.json").write_text(json.dumps({"losses": run.losses,
                                                    "seconds_total": run.previous_s + seconds}))
    plot_losses(run.losses, run.out / "loss.png", f"{run.cfg.policy} on {Path(run.cfg.dataset).name}")
