"""Closed-loop evaluation of a policy in the simulated tea-bag scene, as the reference reports it.

Positions come from the recording protocol (`protocol.make_protocol`) drawn with a different seed
than the training set: ``test`` = new start positions inside the training clusters, ``val`` = the
held-out cluster, ``global`` = both pooled. Normal (non-recovery) starts only.

Two execution modes:

* ``sync``: capture -> infer -> execute the whole chunk (``n_action_steps``), repeat. While the
  inference runs the arm holds its last goal for the simulated latency (physics keeps running), as
  a real synchronous robot does: that idle time is part of the task time.
* ``async``: the executor's pure core (``actors/executor_core.ExecutorCore`` + ``RequestPolicy``)
  runs the control clock on a virtual clock; an inference started at capture time ``t`` delivers
  its chunk at ``t + latency`` (the latency is simulated, by default the measured median), while
  the arm keeps executing and the executor blends the new chunk over the old one.

The policy is a lerobot checkpoint (PyTorch eager) or an exported bundle (`deploy/`, numpy +
ONNX Runtime), `chunk_policies.py`. Latency in the table is the median wall time of one chunk
prediction here. The episodes are in `rollouts.py`, the report in `report.py`, the files it
leaves in `results_files.py`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict
from pathlib import Path

from edgevla.training.eval.chunk_policies import ChunkPolicy, open_policy
from edgevla.training.eval.eval_config import EvalConfig
from edgevla.training.eval.eval_starts import eval_specs
from edgevla.training.eval.report import EvalReport
from edgevla.training.eval.rollouts import EpisodeResult, run_async, run_sync
from edgevla.training.sim.env import TeaBagEnv
from edgevla.training.sim.scene import SceneConfig


def evaluate(policy_path: str | Path, cfg: EvalConfig, progress: bool = True,
             policy: ChunkPolicy | None = None) -> tuple[EvalReport, list[EpisodeResult]]:
    """Run the protocol's test + val starts closed loop; return the report and the episodes."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    policy = policy or open_policy(policy_path)
    n_val = cfg.episodes if cfg.val_episodes is None else cfg.val_episodes
    specs = eval_specs(cfg.episodes, n_val, cfg.protocol_seed)
    h, w = policy.image_hw
    scene = SceneConfig(width=w, height=h, fps=policy.fps, seed=cfg.seed)
    latencies: list[float] = []
    results: list[EpisodeResult] = []
    latency_ns = None if cfg.latency_ms is None else int(cfg.latency_ms * 1e6)
    t0 = time.monotonic()
    with TeaBagEnv(scene) as env, Progress(
        TextColumn(f"[bold]eval {policy.name} {cfg.mode}[/]"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"), TextColumn("success {task.fields[rate]}"),
        TimeElapsedColumn(), disable=not progress,
    ) as bar:
        task = bar.add_task("eval", total=len(specs), rate="-")
        if latency_ns is None:
            latency_ns = _measure_latency_ns(env, policy, specs[0])
        for spec in specs:
            if cfg.mode == "sync":
                r = run_sync(env, policy, spec, cfg, latencies, latency_ns)
            else:
                r = run_async(env, policy, spec, cfg, latency_ns, latencies)
            results.append(r)
            bar.update(task, advance=1, rate=f"{_rate(results):.2f}")
    test = [r for r in results if r.split == "train"]
    val = [r for r in results if r.split == "val"]
    for r in test:
        r.split = "test"
    report = EvalReport(
        policy=policy.name, format=policy.format, mode=cfg.mode,
        latency_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
        test=_rate(test), val=_rate(val), global_=_rate(results), n_test=len(test), n_val=len(val),
        source=str(policy_path),
        episodes=[{k: v for k, v in asdict(r).items() if k != "frames"} for r in results],
        seconds=time.monotonic() - t0,
        config={**asdict(cfg), "simulated_latency_ms": None if latency_ns is None else latency_ns / 1e6},
        task_time_s=(statistics.fmean(r.sim_seconds for r in results if r.success)
                     if any(r.success for r in results) else None),
        idle_fraction=sum(r.idle_steps for r in results) / max(1, sum(r.steps for r in results)),
        running_idle_fraction=sum(r.idle_steps - r.startup_steps for r in results)
        / max(1, sum(r.steps - r.startup_steps for r in results)),
    )
    return report, results


def _measure_latency_ns(env: TeaBagEnv, policy: ChunkPolicy, spec) -> int:
    """This machine's median chunk time, the simulated latency when none is given."""
    obs = env.reset(spec)
    probe = []
    for _ in range(3):
        t = time.perf_counter()
        policy.predict(obs["images"], obs["state"], obs["goal"])
        probe.append(time.perf_counter() - t)
    return int(statistics.median(probe) * 1e9)


def _rate(results: list[EpisodeResult]) -> float:
    return sum(r.success for r in results) / len(results) if results else float("nan")
