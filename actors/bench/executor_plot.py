"""The executor benchmark's figure: every strategy and LeRobot around LeRobot's worst seam."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.bench.executor_world import FPS, N_JOINTS, H, reference
from edgevla.actors.console.figures import save_figure


def plot_seam(runs: dict[str, dict[str, Any]], t_seam: float, latency_ms: float,
              path: Path, horizon: int = H) -> Path | None:
    try:  # matplotlib comes with the training stack only: without it there is no plot
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    lo, hi = t_seam - 0.4, t_seam + 0.6
    j = int(np.argmax([np.max(np.abs(np.diff(runs["lerobot"]["y"][:, q]))) for q in
                       range(N_JOINTS)]))  # the joint where LeRobot jumps most
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    tt = np.linspace(lo, hi, 400)
    ax1.plot(tt, reference(tt)[:, j], color="0.6", lw=4, alpha=0.5, label="reference")
    for name, run in runs.items():
        m = (run["t"] >= lo) & (run["t"] <= hi)
        style = dict(drawstyle="steps-post", color="k", lw=2) if name == "lerobot" else {}
        label = "lerobot weighted_average" if name == "lerobot" else f"edgevla {name}"
        ax1.plot(run["t"][m], run["y"][m, j], label=label, **style)
        ax2.plot(run["t"][m], run["y"][m, j] - reference(run["t"][m])[:, j], label=label,
                 **style)
    ax1.set_ylabel(f"joint {j} command (rad)")
    ax2.set_ylabel("command - reference (rad)")
    ax2.set_xlabel("time (s)")
    ax1.set_title(f"Strategies at a seam (policy latency {latency_ms:.0f} ms, "
                  f"chunk {horizon} x {1e3 / FPS:.1f} ms)")
    ax1.legend(fontsize=8, ncol=2)
    ax2.axhline(0, color="0.7", lw=0.8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
