"""`edgevla bench train-step`: what one ACT optimizer step costs on this CPU, by setting.

The model's own cost (forward, backward, clip, Adam step) on random inputs of the dataset's
layout, per image size, batch size and thread count, against the shipped recipe (96x96, batch 8,
all cores) measured in the same run. The settings take turns, step by step, so a load change
on the machine hits every setting alike. Data loading is not in it: `edgevla train` overlaps it
with the step in a worker process.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from edgevla.actors.console.bench_report import BenchResult
from edgevla.training.learn.policies import make_act_config
from edgevla.training.torch_setup import ensure_torchvision


@dataclass(frozen=True)
class StepSetting:
    image: int
    batch: int
    threads: int
    bf16: bool = False  # autocast to bfloat16 (fast where the CPU has AMX / AVX512-BF16)

    @property
    def label(self) -> str:
        amp = ", bf16 autocast" if self.bf16 else ""
        return f"{self.image}x{self.image}, batch {self.batch}, {self.threads} thread(s){amp}"


def _make_step(setting: StepSetting):
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy

    cfg = make_act_config(image_hw=(setting.image, setting.image))
    policy = ACTPolicy(cfg)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    b = setting.batch
    batch = {k: torch.randn(b, *f.shape, generator=g) for k, f in cfg.input_features.items()}
    batch["action"] = torch.randn(b, cfg.chunk_size, 6, generator=g)
    batch["action_is_pad"] = torch.zeros(b, cfg.chunk_size, dtype=torch.bool)

    def step() -> float:
        torch.set_num_threads(setting.threads)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting.bf16):
            loss, _ = policy.forward(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        opt.step()
        return time.perf_counter() - t0

    return step


def run(quick: bool = False) -> BenchResult:
    import os

    ensure_torchvision()
    cores = os.cpu_count() or 1
    base = StepSetting(96, 8, cores)
    settings = [base, StepSetting(64, 8, cores), StepSetting(128, 8, cores),
                StepSetting(96, 4, cores), StepSetting(96, 16, cores),
                StepSetting(96, 8, cores, bf16=True)]
    if cores > 1:
        settings.append(StepSetting(96, 8, 1))
    steps = {s: _make_step(s) for s in settings}
    for fn in steps.values():  # warm-up: allocator, oneDNN kernels
        fn()
    rounds = 4 if quick else 20
    times: dict[StepSetting, list[float]] = {s: [] for s in settings}
    for _ in range(rounds):
        for s, fn in steps.items():
            times[s].append(fn())
    base_ms = 1e3 * statistics.median(times[base])
    rows = []
    for s in settings:
        ms = 1e3 * statistics.median(times[s])
        rows.append({"setting": s.label, "step ms (p50)": round(ms, 1),
                     "ms per sample": round(ms / s.batch, 1),
                     "step vs recipe": round(ms / base_ms, 2),
                     "sample vs recipe": round((ms / s.batch) / (base_ms / base.batch), 2)})
    by = {s: 1e3 * statistics.median(times[s]) for s in settings}
    summary = {"recipe_step_ms": round(base_ms, 1),
               "image64_step_ratio": round(by[settings[1]] / base_ms, 2),
               "image128_step_ratio": round(by[settings[2]] / base_ms, 2),
               "batch16_sample_ratio": round(by[settings[4]] / 16 / (base_ms / 8), 2),
               "bf16_step_ratio": round(by[settings[5]] / base_ms, 2)}
    if cores > 1:
        summary["one_thread_step_ratio"] = round(by[settings[-1]] / base_ms, 2)
    return BenchResult(title=f"ACT training step (model only, {rounds} steps per setting, "
                             "interleaved)", rows=rows, summary=summary,
                       notes=["random inputs in the dataset's layout; data loading excluded"])
