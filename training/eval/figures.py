"""Pictures of an evaluation: the latency sweep plot, the contact sheet of the rollouts and the
per-episode videos (matplotlib and imageio load only when drawing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.console.figures import save_figure
from edgevla.training.eval.rollouts import EpisodeResult


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
