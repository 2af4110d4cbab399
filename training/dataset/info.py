"""Summarise a recorded dataset: episodes, frames, clusters, recovery share, split.

Reads through lerobot's `LeRobotDataset` only (the per-episode protocol metadata are ordinary
per-frame columns, see `dataset_record`), so it also describes datasets recorded elsewhere
as long as they carry those columns; without them only the LeRobot totals are shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.console.figures import save_figure
from edgevla.deploy.bundle.state_layout import N_JOINTS, layout_name
from edgevla.training.dataset.schema import META_KEYS, RECOVERY_KIND_CODES, REPO_ID, SPLIT_CODES
from edgevla.training.torch_setup import ensure_torchvision


@dataclass
class ClusterSummary:
    cluster: int
    split: str
    episodes: int = 0
    recovery: int = 0
    frames: int = 0


@dataclass
class DatasetSummary:
    root: str
    fps: int
    episodes: int
    frames: int
    features: dict[str, tuple[int, ...]]
    splits: dict[str, str]
    clusters: list[ClusterSummary] = field(default_factory=list)
    recovery_episodes: int = 0
    recovery_kinds: dict[str, int] = field(default_factory=dict)
    split_episodes: dict[str, int] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)

    @property
    def recovery_share(self) -> float:
        return self.recovery_episodes / self.episodes if self.episodes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root, "fps": self.fps, "episodes": self.episodes, "frames": self.frames,
            "features": {k: list(v) for k, v in self.features.items()}, "splits": self.splits,
            "recovery_episodes": self.recovery_episodes, "recovery_share": self.recovery_share,
            "recovery_kinds": self.recovery_kinds, "split_episodes": self.split_episodes,
            "tasks": self.tasks,
            "clusters": [vars(c) for c in self.clusters],
        }


def summarize(root: str | os.PathLike[str], repo_id: str = REPO_ID) -> DatasetSummary:
    ensure_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    ds = LeRobotDataset(repo_id, root=root)
    feats = {k: tuple(v["shape"]) for k, v in ds.meta.features.items()}
    tasks = [str(t) for t in ds.meta.tasks.index] if ds.meta.tasks is not None else []
    out = DatasetSummary(root=str(root), fps=int(ds.fps), episodes=int(ds.num_episodes),
                         frames=int(ds.num_frames), features=feats,
                         splits=dict(ds.meta.info.get("splits", {})), tasks=tasks)
    if not all(k in ds.meta.features for k in META_KEYS):
        return out
    cols = ["episode_index", *META_KEYS]
    table = ds.hf_dataset.select_columns(cols).with_format("numpy")[:]
    ep = np.asarray(table["episode_index"]).reshape(-1)
    first = np.unique(ep, return_index=True)[1]
    per_ep = {k: np.asarray(table[k]).reshape(-1)[first] for k in META_KEYS}
    frames_per_ep = np.bincount(ep)[np.unique(ep)]
    kind_names = {v: k for k, v in RECOVERY_KIND_CODES.items()}
    split_names = {v: k for k, v in SPLIT_CODES.items()}
    clusters: dict[int, ClusterSummary] = {}
    for i in range(len(first)):
        c = int(per_ep["episode.cluster"][i])
        split = split_names.get(int(per_ep["episode.split"][i]), "?")
        s = clusters.setdefault(c, ClusterSummary(cluster=c, split=split))
        s.episodes += 1
        s.frames += int(frames_per_ep[i])
        out.split_episodes[split] = out.split_episodes.get(split, 0) + 1
        if per_ep["episode.recovery"][i]:
            s.recovery += 1
            out.recovery_episodes += 1
            kind = kind_names.get(int(per_ep["episode.recovery_kind"][i]), "?")
            out.recovery_kinds[kind] = out.recovery_kinds.get(kind, 0) + 1
    out.clusters = [clusters[c] for c in sorted(clusters)]
    return out


def format_summary(s: DatasetSummary) -> str:
    """Human-readable text (rich-free so it can go to logs too)."""
    lines = [
        f"dataset {s.root}",
        f"  {s.episodes} episodes, {s.frames} frames at {s.fps} fps "
        f"({s.frames / max(1, s.episodes) / s.fps:.1f} s per episode on average)",
        f"  tasks: {', '.join(repr(t) for t in s.tasks)}",
        f"  splits: {s.splits}   episodes per split: {s.split_episodes}",
        f"  recovery episodes: {s.recovery_episodes} ({100 * s.recovery_share:.1f}%) "
        f"{s.recovery_kinds}",
        "  features: " + ", ".join(f"{k} {list(v)}" for k, v in s.features.items()
                                   if not k.startswith("episode.") and k not in
                                   ("timestamp", "frame_index", "episode_index", "index",
                                    "task_index")),
    ]
    state = s.features.get("observation.state")
    if state:
        lines.append(f"  observation.state layout: {layout_name(state[0])}"
                     + (" (no servo goal: recorded before 2026-12-06)" if state[0] == N_JOINTS else ""))
    if s.clusters:
        lines.append("  cluster  split  episodes  recovery  frames")
        for c in s.clusters:
            lines.append(f"  {c.cluster:7d}  {c.split:5s}  {c.episodes:8d}  {c.recovery:8d}  "
                         f"{c.frames:6d}")
    return "\n".join(lines)


def contact_sheet(root: str | os.PathLike[str], path: str, max_episodes: int = 6,
                  moments: int = 4, repo_id: str = REPO_ID) -> str:
    """PNG grid read back from the dataset: rows = sample episodes (spread over clusters,
    recovery ones included), columns = moments from first to last frame, each cell the cameras
    side by side. Reading through LeRobotDataset also proves the frames decode."""

    ensure_torchvision()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id, root=Path(root))
    cams = [k for k in ds.meta.camera_keys]
    ep = np.asarray(ds.hf_dataset.select_columns(["episode_index"]).with_format("numpy")[:]
                    ["episode_index"]).reshape(-1)
    starts = {int(e): int(i) for e, i in zip(*np.unique(ep, return_index=True))}
    counts = np.bincount(ep)
    has_meta = all(k in ds.meta.features for k in META_KEYS)
    labels: dict[int, str] = {}
    if has_meta:
        cols = ds.hf_dataset.select_columns(list(META_KEYS)).with_format("numpy")[:]
        kind_names = {v: k for k, v in RECOVERY_KIND_CODES.items()}
        for e, i in starts.items():
            kind = kind_names.get(int(np.asarray(cols["episode.recovery_kind"][i]).reshape(-1)[0]),
                                  "")
            labels[e] = (f"ep {e}: cluster {int(np.asarray(cols['episode.cluster'][i]).ravel()[0])}"
                         + (f", {kind}" if kind else ""))
    normal = [e for e in starts if "," not in labels.get(e, "")]
    recov = [e for e in starts if "," in labels.get(e, "")]
    n_rec = min(len(recov), max_episodes // 3)
    pick_n = [normal[int(i)] for i in np.linspace(0, len(normal) - 1,
                                                   min(len(normal), max_episodes - n_rec))]
    pick_r = [recov[int(i)] for i in np.linspace(0, len(recov) - 1, n_rec)] if n_rec else []
    chosen = sorted(set(pick_n + pick_r))
    fig, axes = plt.subplots(len(chosen), moments, figsize=(moments * 3.6, len(chosen) * 1.3),
                             dpi=110, squeeze=False)
    for row, e in enumerate(chosen):
        for col in range(moments):
            k = int(round(col * (counts[e] - 1) / max(1, moments - 1)))
            item = ds[starts[e] + k]
            tiles = [(item[c].numpy().transpose(1, 2, 0) * 255).clip(0, 255).astype(np.uint8)
                     for c in cams]
            ax = axes[row][col]
            ax.imshow(np.concatenate(tiles, axis=1))
            ax.axis("off")
            ax.set_title(f"{labels.get(e, f'ep {e}')}  t={k / ds.fps:.1f}s", fontsize=6)
    fig.suptitle(f"{ds.meta.tasks.index[0] if ds.meta.tasks is not None else ''} — cameras: "
                 + " | ".join(c.split('.')[-1] for c in cams), fontsize=8)
    fig.tight_layout()
    return str(save_figure(fig, path))
