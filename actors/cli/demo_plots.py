"""One demo episode as a picture: where a failed episode stalled, and under which chunk.

Every joint's executed command against its measured position, each chunk's planned actions
from its arrival on, the chunk arrivals numbered, and the task phase the sim reported (reaching,
grasped, carrying, in the mug) as coloured bands, all on the recording's host time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.console.figures import save_figure

PHASE_COLOURS = {"reaching": "#dbe9f6", "grasped": "#fde9c8", "carrying": "#d9f0d3",
                 "in_mug": "#c7e9c0"}
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def _phase_spans(phases: list[tuple[int, str]], end_ns: int) -> list[tuple[int, int, str]]:
    spans = []
    for i, (t, name) in enumerate(phases):
        t_end = phases[i + 1][0] if i + 1 < len(phases) else end_ns
        spans.append((t, t_end, name))
    return spans


def plot_episode(msgs: list[Any], episode: Any, out: str | Path, title: str = "") -> Path:
    """``msgs``: the run's recording (`inspect_mcap.inspect_file`); ``episode``: an
    `demo_sim.EpisodeLog` with its host-time window and phase samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0, t1 = episode.start_ns, episode.end_ns
    inside = [m for m in msgs if t0 <= m.publish_time_ns <= t1]
    cmds = [m.decode() for m in inside if m.schema == "joint_command"]
    states = [m.decode() for m in inside if m.schema == "robot_state"]
    # arrival = when the chunk was published (the recording's time, set by the bus)
    chunks = [(m.publish_time_ns, m.decode()) for m in inside if m.schema == "action_chunk"]
    fig, axes = plt.subplots(len(JOINTS), 1, figsize=(12, 11), sharex=True)
    spans = _phase_spans(episode.phases, t1)

    def sec(t_ns: np.ndarray | int) -> np.ndarray | float:
        return (np.asarray(t_ns, dtype=np.float64) - t0) / 1e9

    for j, ax in enumerate(axes):
        labelled: set[str] = set()
        for a, b, name in spans:
            ax.axvspan(sec(a), sec(b), color=PHASE_COLOURS.get(name, "#eeeeee"), lw=0,
                       label=name if j == 0 and name not in labelled else None)
            labelled.add(name)
        for k, (arrival, c) in enumerate(chunks):
            ts = sec(c.t0_ns + c.dt_ns * np.arange(c.actions.shape[0]))
            keep = ts >= sec(arrival)  # what was still ahead when it arrived
            ax.plot(ts[keep], c.actions[keep, j], color="tab:blue", alpha=0.3, lw=0.8,
                    label="chunk plan (from arrival)" if j == 0 and k == 0 else None)
            ax.axvline(sec(arrival), color="tab:gray", alpha=0.5, lw=0.6)
            if j == 0:
                ax.annotate(str(c.seq), (sec(arrival), 1.0), xycoords=("data", "axes fraction"),
                            fontsize=7, ha="center", va="bottom", color="tab:gray")
        if cmds:
            ax.plot(sec([c.t_target_ns for c in cmds]), [c.positions[j] for c in cmds],
                    color="black", lw=1.1, label="executed command" if j == 0 else None)
        if states:
            ax.plot(sec([s.t_capture_ns for s in states]), [s.joints[j] for s in states],
                    color="tab:orange", lw=0.9, ls="--", label="measured" if j == 0 else None)
        ax.set_ylabel(f"{JOINTS[j]}\n(rad)", fontsize=8)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axes[0].set_title("chunk arrivals numbered at the top; background: task phase", fontsize=9)
    axes[-1].set_xlabel("time since the episode started (s)")
    axes[-1].set_xlim(0.0, sec(t1))
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)
