"""The loss curve of a training run as a PNG (per-step loss and a running mean, log scale)."""

from __future__ import annotations

from pathlib import Path

from edgevla.actors.console.figures import save_figure


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
