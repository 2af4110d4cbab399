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
ONNX Runtime). Latency in the table is the median wall time of one chunk prediction here.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgevla.actors.console.figures import save_figure
from edgevla.actors.executor.blending import BlendConfig
from edgevla.actors.executor.core import ExecutorConfig, ExecutorCore, SafetyLimits
from edgevla.actors.executor.request_policy import RequestConfig, RequestPolicy
from edgevla.deploy.bundle.cameras import image_key
from edgevla.deploy.bundle.model_path import is_bundle
from edgevla.deploy.bundle.state_layout import policy_state
from edgevla.deploy.inference.pipeline import StageModel
from edgevla.training.learn.train import load_policy, resolve_pretrained_dir
from edgevla.training.sim.env import JOINT_LIMITS, SceneConfig, TeaBagEnv
from edgevla.training.sim.start_positions import ProtocolConfig, make_protocol

SPLITS = ("test", "val", "global")


# ------------------------------------------------------------------------------ policies


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

    def predict(self, images: dict[str, np.ndarray], joints: np.ndarray,
                goal: np.ndarray | None = None) -> np.ndarray:
        torch = self._torch
        state = policy_state(joints, goal, self.state_dim)
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
        return chunk[0].numpy().astype(np.float32)


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

    def predict(self, images: dict[str, np.ndarray], joints: np.ndarray,
                goal: np.ndarray | None = None) -> np.ndarray:
        state = policy_state(joints, goal, self.state_dim)
        return np.asarray(self.model.predict(images, state, rng=self._rng), np.float32)


def open_policy(path: str | Path) -> ChunkPolicy:
    """A bundle folder (manifest.json) or a lerobot checkpoint / training run folder."""
    path = Path(path)
    if is_bundle(path):
        return BundlePolicy(path)
    return TorchPolicy(path)


# ------------------------------------------------------------------------------ positions


@dataclass
class EvalConfig:
    episodes: int = 20  # per split: `episodes` test starts over the training clusters + as many val
    val_episodes: int | None = None  # None: same as `episodes`
    mode: str = "sync"
    protocol_seed: int = 1000  # differs from the recording seed (0): new positions, same clusters
    max_seconds: float = 15.0  # episode time limit (sim time)
    latency_ms: float | None = None  # simulated inference latency (both modes); None = measured median
    # async: when to ask for the next chunk (actors/executor/request_policy.py): "latency" = at 1.5x the
    # measured inference latency left (at least 200 ms); "threshold" = at this fraction left
    request_mode: str = "latency"
    request_threshold: float = 0.5
    request_latency_margin: float = 1.5
    strategy: str = "crossfade"  # async: executor blending strategy
    crossfade_ms: float = 200.0
    seed: int = 0
    frames_every: int = 0  # keep every n-th frame for videos / contact sheets (0: none)
    # execute only the first N actions of each chunk (None: the policy's n_action_steps): how
    # often the policy re-plans, without retraining it
    actions_per_chunk: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("sync", "async"):
            raise ValueError(f"EvalConfig.mode must be 'sync' or 'async', got {self.mode!r}")
        if self.episodes < 1:
            raise ValueError(f"EvalConfig.episodes must be >= 1, got {self.episodes}")
        if self.val_episodes is not None and self.val_episodes < 0:
            raise ValueError(f"EvalConfig.val_episodes must be >= 0, got {self.val_episodes}")
        if self.max_seconds <= 0:
            raise ValueError(f"EvalConfig.max_seconds must be > 0, got {self.max_seconds}")
        if self.actions_per_chunk is not None and self.actions_per_chunk < 1:
            raise ValueError(f"EvalConfig.actions_per_chunk must be >= 1, got {self.actions_per_chunk}")
        if not 0.0 <= self.request_threshold <= 1.0:
            raise ValueError(f"EvalConfig.request_threshold must be in [0, 1], got {self.request_threshold}")


def eval_specs(n_test: int, n_val: int, seed: int, protocol=None) -> list:
    """`n_test` starts spread round-robin over the training clusters, `n_val` in the held-out one."""
    import dataclasses

    base = protocol or ProtocolConfig()
    n_train_clusters = base.clusters - (1 if base.val_cluster is not None else 0)
    per_cluster = max(math.ceil(n_test / max(1, n_train_clusters)), n_val, 1)
    cfg = dataclasses.replace(base, seed=seed, positions_per_cluster=per_cluster, recovery_per_cluster=0)
    specs = make_protocol(cfg)
    by_cluster: dict[int, list] = {}
    for s in specs:
        if s.split == "train":
            by_cluster.setdefault(s.cluster, []).append(s)
    test: list = []
    k = 0
    while len(test) < n_test:
        for c in sorted(by_cluster):
            if len(test) < n_test and k < len(by_cluster[c]):
                test.append(by_cluster[c][k])
        k += 1
    val = [s for s in specs if s.split == "val"][:n_val]
    return test + val


# ------------------------------------------------------------------------------ rollouts


@dataclass
class EpisodeResult:
    index: int
    split: str
    cluster: int
    success: bool
    steps: int
    sim_seconds: float
    inferences: int
    starvation_ticks: int = 0
    dropped_chunks: int = 0
    idle_steps: int = 0  # ticks the arm held still waiting for a chunk (sync: latency; async: starving)
    startup_steps: int = 0  # of those, the wait for the first chunk (the same in both modes)
    frames: list[np.ndarray] = field(default_factory=list, repr=False)


def _frame_strip(images: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([images[c] for c in sorted(images)], axis=1)


def executed_per_chunk(policy: ChunkPolicy, cfg: EvalConfig) -> int:
    return cfg.actions_per_chunk or policy.n_action_steps


def run_sync(env, policy: ChunkPolicy, spec, cfg: EvalConfig, latencies: list[float],
             latency_ns: int = 0) -> EpisodeResult:
    obs = env.reset(spec)
    max_steps = int(cfg.max_seconds * env.cfg.fps)
    idle_ticks = int(round(latency_ns * env.cfg.fps / 1e9))
    steps = inferences = idle = 0
    success = False
    frames: list[np.ndarray] = []
    goal = np.asarray(obs["state"], np.float32)  # servos keep their last goal while waiting
    while steps < max_steps and not success:
        if cfg.frames_every:
            frames.append(_frame_strip(obs["images"]))
        t = time.perf_counter()
        chunk = policy.predict(obs["images"], obs["state"], obs["goal"])
        latencies.append(time.perf_counter() - t)
        inferences += 1
        for _ in range(min(idle_ticks, max_steps - steps)):
            env.step(goal, render=False)
            steps += 1
            idle += 1
            if env.is_success():
                success = True
                break
        if success or steps >= max_steps:
            break
        n_exec = min(executed_per_chunk(policy, cfg), len(chunk))
        for i in range(n_exec):
            keep = cfg.frames_every and (steps + 1) % cfg.frames_every == 0
            last = i == n_exec - 1
            obs = env.step(chunk[i], render=bool(keep))
            goal = np.asarray(chunk[i], np.float32)
            if keep and not last:
                frames.append(_frame_strip(obs["images"]))
            steps += 1
            if env.is_success():
                success = True
                break
            if steps >= max_steps:
                break
        if not success and steps < max_steps:
            obs = env.observe(render=True)
    return EpisodeResult(spec.index, spec.split, spec.cluster, success, steps, steps / env.cfg.fps, inferences,
                         idle_steps=idle, startup_steps=min(idle, idle_ticks), frames=frames)


def run_async(env, policy: ChunkPolicy, spec, cfg: EvalConfig, latency_ns: int,
              latencies: list[float]) -> EpisodeResult:
    """Executor core + request policy on a virtual clock; inference results arrive after latency_ns."""

    fps = env.cfg.fps
    dt_ns = int(round(1e9 / fps))
    limits = SafetyLimits(
        joint_min=JOINT_LIMITS[:, 0].astype(np.float64),
        joint_max=JOINT_LIMITS[:, 1].astype(np.float64),
        # The demonstrations stay far below these; they only stop a wild chunk.
        max_velocity_rad_s=np.array([6.0]),
        max_accel_rad_s2=np.array([200.0]),
        hold_decel_rad_s2=np.array([50.0]),
    )
    executor = ExecutorCore(ExecutorConfig(
        rate_hz=float(fps), min_horizon_ms=1000.0 / fps, blend=BlendConfig(strategy=cfg.strategy, crossfade_ms=cfg.crossfade_ms),
        limits=limits,
    ))
    requests = RequestPolicy(RequestConfig(mode=cfg.request_mode, threshold=cfg.request_threshold,
                                           latency_margin=cfg.request_latency_margin,
                                           timeout_ms=max(1000.0, 3 * latency_ns / 1e6),
                                           startup_period_ms=max(50.0, latency_ns / 1e6)))
    obs = env.reset(spec)
    max_steps = int(cfg.max_seconds * fps)
    hold = np.asarray(obs["state"], np.float64)
    pending: list[tuple[int, int, np.ndarray]] = []  # (ready_ns, t_capture_ns, chunk)
    seq = 0
    steps = inferences = 0
    success = False
    frames: list[np.ndarray] = []
    chunk_horizon_ns = policy.chunk_size * dt_ns
    waiting = 0
    for steps in range(1, max_steps + 1):
        now = (steps - 1) * dt_ns
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            executor.add_chunk(now_ns=now, t0_ns=item[1], dt_ns=dt_ns, actions=item[2][: executed_per_chunk(policy, cfg)],
                               obs_seq=item[1] // dt_ns, seq=item[1] // dt_ns)
            # Any arrival, kept or dropped as stale, answers the outstanding request.
            requests.on_chunk_received(now, item[1])
        end = executor.coverage_end_ns()
        decision = requests.decide(
            now, horizon_left_ns=0 if end is None else max(0, end - now),
            chunk_horizon_ns=chunk_horizon_ns, have_chunk=end is not None,
            starving=executor.started and (end is None or end <= now),
        )
        if decision is not None:
            if not obs["images"]:
                obs = env.observe(render=True)
            t = time.perf_counter()
            chunk = policy.predict(obs["images"], obs["state"], obs["goal"])
            latencies.append(time.perf_counter() - t)
            inferences += 1
            seq += 1
            pending.append((now + latency_ns, now, chunk))
        executor.set_measured(obs["state"])
        out = executor.tick(now)
        waiting += out is None  # before the first chunk: holding, like sync's first wait
        target = hold if out is None else out.positions
        keep = bool(cfg.frames_every) and steps % cfg.frames_every == 0
        if keep:
            if not obs["images"]:
                obs = env.observe(render=True)
            frames.append(_frame_strip(obs["images"]))
        # Render only when the next tick may need a capture: cheap ticks stay cheap.
        obs = env.step(target, render=False)
        if env.is_success():
            success = True
            break
    return EpisodeResult(spec.index, spec.split, spec.cluster, success, steps, steps / fps, inferences,
                         starvation_ticks=executor.starvation_ticks,
                         dropped_chunks=sum(executor.dropped.values()),
                         idle_steps=waiting + executor.starvation_ticks, startup_steps=waiting,
                         frames=frames)


# ------------------------------------------------------------------------------ the table


@dataclass
class EvalReport:
    policy: str
    format: str
    mode: str
    latency_ms: float
    test: float
    val: float
    global_: float
    n_test: int
    n_val: int
    source: str
    episodes: list[dict[str, Any]]
    seconds: float
    config: dict[str, Any]
    task_time_s: float | None = None  # mean sim time of the successful episodes
    idle_fraction: float = 0.0  # ticks the arm waited for a chunk / all ticks
    # the same after the first chunk: the pauses between chunks, which async exists to remove
    running_idle_fraction: float = 0.0

    def row(self) -> dict[str, Any]:
        return {"policy": self.policy, "format": self.format, "mode": self.mode,
                "latency_ms": round(self.latency_ms, 2), "test": round(self.test, 3),
                "val": round(self.val, 3), "global": round(self.global_, 3),
                "n_test": self.n_test, "n_val": self.n_val,
                "simulated_latency_ms": self.config.get("simulated_latency_ms"),
                "actions_per_chunk": self.config.get("actions_per_chunk"),
                "task_time_s": None if self.task_time_s is None else round(self.task_time_s, 2),
                "idle_fraction": round(self.idle_fraction, 4),
                "running_idle_fraction": round(self.running_idle_fraction, 4),
                "global_ci95": [round(x, 3) for x in wilson_interval(
                    sum(bool(e["success"]) for e in self.episodes), len(self.episodes))]}


def _rate(results: list[EpisodeResult]) -> float:
    return sum(r.success for r in results) / len(results) if results else float("nan")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate: 70 episodes still leave about +-0.11."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs (binomial, p = 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


@dataclass
class PairedComparison:
    """Async against sync on the same start positions (same protocol seed and latency)."""

    simulated_latency_ms: float | None
    pairs: int
    both: int
    only_sync: int
    only_async: int
    neither: int
    p_value: float  # exact McNemar: could the difference in success be chance?

    def verdict(self) -> str:
        if self.only_async == self.only_sync:
            return "equal"
        better = "async" if self.only_async > self.only_sync else "sync"
        return f"{better} better ({'p < 0.05' if self.p_value < 0.05 else 'not significant'})"


def paired_comparisons(reports: list[EvalReport]) -> list[PairedComparison]:
    """Pair every async run with the sync run at the same simulated latency, episode by episode.

    Both modes roll out the same starts, so the discordant episodes (solved by one mode only)
    say more than the two rates side by side."""
    out = []
    for a in reports:
        if a.mode != "async":
            continue
        lat = a.config.get("simulated_latency_ms")
        for s in reports:
            if s.mode != "sync" or s.config.get("simulated_latency_ms") != lat \
                    or s.config.get("actions_per_chunk") != a.config.get("actions_per_chunk") \
                    or s.config.get("protocol_seed") != a.config.get("protocol_seed"):
                continue
            sync_ok = {(e["split"], e["index"]): bool(e["success"]) for e in s.episodes}
            keys = [(e["split"], e["index"]) for e in a.episodes if (e["split"], e["index"]) in sync_ok]
            async_ok = {(e["split"], e["index"]): bool(e["success"]) for e in a.episodes}
            both = sum(sync_ok[k] and async_ok[k] for k in keys)
            only_s = sum(sync_ok[k] and not async_ok[k] for k in keys)
            only_a = sum(async_ok[k] and not sync_ok[k] for k in keys)
            out.append(PairedComparison(lat, len(keys), both, only_s, only_a,
                                        len(keys) - both - only_s - only_a, mcnemar_exact_p(only_s, only_a)))
            break
    return out


def paired_markdown(pairs: list[PairedComparison]) -> str:
    lines = ["", "Async vs sync on the same starts (exact McNemar test on the episodes only one mode solved):", "",
             "| simulated latency (ms) | pairs | both solved | only sync | only async | neither | p | verdict |",
             "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in pairs:
        lat = "-" if c.simulated_latency_ms is None else f"{c.simulated_latency_ms:.0f}"
        lines.append(f"| {lat} | {c.pairs} | {c.both} | {c.only_sync} | {c.only_async} | {c.neither} | "
                     f"{c.p_value:.2f} | {c.verdict()} |")
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| policy | format | mode | latency (ms, this CPU) | success test | val | global [95% CI] "
             "| episodes (test/val) "
             "| simulated latency (ms) | actions executed per chunk | task time (s, successes) "
             "| idle fraction | idle after the first chunk |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        sim = r.get("simulated_latency_ms")
        tt = r.get("task_time_s")
        ci = r.get("global_ci95")
        ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and not math.isnan(ci[0]) else ""
        lines.append(f"| {r['policy']} | {r['format']} | {r['mode']} | {r['latency_ms']:.1f} | {r['test']:.2f} | "
                     f"{r['val']:.2f} | {r['global']:.2f}{ci_text} | {r['n_test']}/{r['n_val']} | "
                     f"{'-' if sim is None else f'{sim:.0f}'} | {r.get('actions_per_chunk') or 'all'} | "
                     f"{'-' if tt is None else f'{tt:.2f}'} | "
                     f"{r.get('idle_fraction', 0.0):.3f} | {r.get('running_idle_fraction', 0.0):.3f} |")
    return "\n".join(lines) + "\n"


def write_outputs(reports: list[EvalReport], out: Path, contact: list[EpisodeResult] | None = None,
                  videos: bool = False, fps: int = 30) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in reports]
    pairs = paired_comparisons(reports)
    paths = {"markdown": out / "results.md", "json": out / "results.json"}
    paths["markdown"].write_text(markdown_table(rows) + (paired_markdown(pairs) if pairs else ""))
    paths["json"].write_text(json.dumps({"rows": rows, "paired": [asdict(c) for c in pairs],
                                         "runs": [asdict(r) for r in reports]}, indent=1))
    if contact:
        paths["contact_sheet"] = contact_sheet(contact, out / "contact_sheet.png")
        if videos:
            paths["videos"] = write_videos(contact, out / "videos", fps)
    return paths


def latency_sweep_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Idle fraction, task time and success against the simulated latency, sync vs async."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for mode, style in (("sync", "o-"), ("async", "s-")):
        rs = sorted((r for r in rows if r["mode"] == mode and r.get("simulated_latency_ms") is not None),
                    key=lambda r: r["simulated_latency_ms"])
        if not rs:
            continue
        x = [r["simulated_latency_ms"] for r in rs]
        axes[0].plot(x, [r["idle_fraction"] for r in rs], style, label=mode)
        axes[1].plot(x, [np.nan if r["task_time_s"] is None else r["task_time_s"] for r in rs], style, label=mode)
        axes[2].plot(x, [r["global"] for r in rs], style, label=mode)
    for ax, title in zip(axes, ("robot idle fraction", "task time of successes (s)", "global success")):
        ax.set_title(title)
        ax.set_xlabel("inference latency (ms, simulated)")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].set_ylim(-0.05, 1.05)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def contact_sheet(results: list[EpisodeResult], path: Path, columns: int = 8) -> Path:
    """One row per episode: `columns` frames across the rollout, border green/red for success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if r.frames]
    if not rows:
        return path
    fig, axes = plt.subplots(len(rows), columns, figsize=(columns * 2.2, len(rows) * 0.9 + 0.4), squeeze=False)
    for i, r in enumerate(rows):
        idx = np.linspace(0, len(r.frames) - 1, columns).round().astype(int)
        for j, k in enumerate(idx):
            ax = axes[i][j]
            ax.imshow(r.frames[k])
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_color("tab:green" if r.success else "tab:red")
                s.set_linewidth(2)
        axes[i][0].set_ylabel(f"{r.split} c{r.cluster}\n{'ok' if r.success else 'fail'}", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def write_videos(results: list[EpisodeResult], folder: Path, fps: int) -> Path:
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.frames:
            name = f"ep{r.index:03d}_{r.split}_c{r.cluster}_{'ok' if r.success else 'fail'}.mp4"
            iio.imwrite(folder / name, np.stack(r.frames), fps=fps, codec="libx264")
    return folder


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
            # Measure first: the simulated latency is this machine's median chunk time.
            obs = env.reset(specs[0])
            probe = []
            for _ in range(3):
                t = time.perf_counter()
                policy.predict(obs["images"], obs["state"], obs["goal"])
                probe.append(time.perf_counter() - t)
            latency_ns = int(statistics.median(probe) * 1e9)
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
