"""The RTC benchmark's figure: one seam with guidance and one without, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.bench.rtc_runs import NS, RunRecord
from edgevla.actors.console.figures import save_figure
from edgevla.deploy.inference.rtc import committed_at


def _worst_seam(rec: RunRecord) -> dict[str, Any] | None:
    if not rec.disagreement:
        return None
    return rec.seams[int(np.argmax(rec.disagreement))]


def plot_seams(runs: dict[str, RunRecord], delay_s: float, path: Path) -> Path | None:
    """``runs``: method name -> its run at one delay; each panel shows that run's worst seam
    (largest disagreement with the commitment)."""
    try:  # matplotlib comes with the training stack only: without it there is no plot
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5), sharey=False)
    for ax, (name, rec) in zip(np.atleast_1d(axes), runs.items()):
        seam = _worst_seam(rec)
        if seam is None:
            continue
        chunk, c = seam["chunk"], seam["commitment"]
        t_cap = chunk.t0_ns / NS
        t_new = t_cap + np.arange(len(chunk.actions)) * chunk.dt_ns / NS
        t_com = (c.t0_ns + np.arange(len(c.actions)) * c.dt_ns) / NS
        d = int(np.ceil(delay_s * NS / chunk.dt_ns))
        times = chunk.t0_ns + np.arange(min(len(chunk.actions), max(d, 1))) * chunk.dt_ns
        ref = committed_at(c.actions, c.t0_ns, c.dt_ns, times)
        # the joint where the new chunk leaves the commitment most during the delay
        j = int(np.argmax(np.abs(chunk.actions[:len(ref)] - ref).mean(axis=0))) if len(ref) else 0
        lo, hi = t_cap - 0.3, seam["t_s"] + 0.8
        m = (rec.t_s >= lo) & (rec.t_s <= hi)
        ax.plot(rec.t_s[m], rec.y[m, j], color="k", lw=2.5, label="executed command")
        mc = (t_com >= lo) & (t_com <= hi)
        ax.plot(t_com[mc], c.actions[mc, j], "--", color="tab:blue", lw=1.5,
                label="committed (executor's plan at the request)")
        mn = t_new <= hi
        ax.plot(t_new[mn], chunk.actions[mn, j], color="tab:orange", lw=1.5, label="new chunk")
        ax.axvline(t_cap, color="0.6", lw=0.8)
        ax.axvline(seam["t_s"], color="tab:red", lw=0.8)
        ax.axvspan(t_cap, t_cap + delay_s, color="tab:red", alpha=0.07, label="inference delay")
        ax.set_title(f"{name}: joint {j}, seam at {seam['t_s']:.2f} s")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("rad")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Worst seam of each run, inference delay {delay_s * 1e3:.0f} ms")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
