"""`edgevla inspect FILE`: what happened in a recording, per topic and per pipeline stage.

Per topic: messages, producers, rate, inter-message gaps (median / p99 / max, and how many gaps
exceed 2.5x the median period), sequence gaps per producer (messages lost before the recorder),
bytes. Per stage, from the capture stamp every message carries: capture -> frame published,
-> features, -> prefix, -> chunk, -> executed (a joint command's ``t_target_ns``) p50/p99/max.
Chunks: lateness at arrival (arrival - ``t0``, how much of the chunk was already in the past).

Latencies from capture use when the recorder received a message (``log_time``), never its
``t_pub``: the recorder and the capture share a clock, while a message from another machine of
a graph (an inference server) carries that machine's ``t_pub``.
Commands: starvation ticks (fraction, longest run) and staleness (target time minus the capture
time of the observation behind the command).

``--plot out.png`` draws the timeline: messages per topic over time, chunk arrivals against the
executed commands, staleness and starvation, and the stage latencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.console.figures import save_figure
from edgevla.actors.console.tables import fitted_table
from edgevla.actors.recording.mcap_reader import RecordedMessage, read_recording, recording_files

STAGES = (  # (label, schema) in pipeline order
    ("capture->frame", "frame"),
    ("capture->observation", "observation"),
    ("capture->features", "features"),
    ("capture->prefix", "prefix"),
    ("capture->chunk", "action_chunk"),
    ("capture->executed", "joint_command"),
)


@dataclass
class TopicStats:
    topic: str
    schema: str
    count: int
    producers: list[str]
    duration_s: float
    rate_hz: float
    gap_median_ms: float
    gap_p99_ms: float
    gap_max_ms: float
    long_gaps: int  # gaps > 2.5x the median period
    seq_missing: int  # sum over producers of holes in seq
    mbytes: float


@dataclass
class Inspection:
    files: list[str]
    messages: int
    t_start_ns: int
    t_end_ns: int
    topics: list[TopicStats]
    stages: dict[str, dict[str, float]]
    chunks: dict[str, float] = field(default_factory=dict)
    commands: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def load_messages(path: str | Path) -> tuple[list[Path], list[RecordedMessage]]:
    files = recording_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no such recording")
    msgs: list[RecordedMessage] = []
    for f in files:
        msgs.extend(read_recording(f))
    msgs.sort(key=lambda m: (m.publish_time_ns, m.log_time_ns))
    return files, msgs


def _topic_stats(topic: str, ms: list[RecordedMessage]) -> TopicStats:
    t = np.array([m.publish_time_ns for m in ms], dtype=np.int64)
    gaps = np.diff(t) / 1e6 if t.size > 1 else np.zeros(0)
    span = (t[-1] - t[0]) / 1e9 if t.size > 1 else 0.0
    med = _pct(gaps, 50) if gaps.size else float("nan")
    missing = 0
    by_prod: dict[str, list[int]] = {}
    for m in ms:
        by_prod.setdefault(m.producer, []).append(m.seq)
    for seqs in by_prod.values():
        s = np.unique(np.array(seqs, dtype=np.int64))
        if s.size > 1:
            missing += int((s[-1] - s[0] + 1) - s.size)
    return TopicStats(
        topic=topic, schema=ms[0].schema, count=len(ms), producers=sorted(by_prod),
        duration_s=round(span, 3), rate_hz=round((len(ms) - 1) / span, 3) if span > 0 else 0.0,
        gap_median_ms=round(med, 3), gap_p99_ms=round(_pct(gaps, 99), 3),
        gap_max_ms=round(float(gaps.max()), 3) if gaps.size else float("nan"),
        long_gaps=int((gaps > 2.5 * med).sum()) if gaps.size and med > 0 else 0,
        seq_missing=missing, mbytes=round(sum(m.nbytes for m in ms) / 1e6, 3))


def inspect_messages(msgs: list[RecordedMessage], files: list[str] | None = None) -> Inspection:
    by_topic: dict[str, list[RecordedMessage]] = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)
    topics = [_topic_stats(t, ms) for t, ms in sorted(by_topic.items())]
    stages: dict[str, dict[str, float]] = {}
    decoded = {"action_chunk": [], "joint_command": []}  # type: dict[str, list[Any]]
    for m in msgs:
        if m.schema in decoded:
            decoded[m.schema].append(m.decode())
    for label, schema in STAGES:
        if schema == "joint_command":
            lat = [(c.t_target_ns - c.t_capture_ns) / 1e6 for c in decoded["joint_command"]
                   if c.t_capture_ns > 0]
        else:
            lat = [(m.log_time_ns - m.t_capture_ns) / 1e6 for m in msgs
                   if m.schema == schema and m.t_capture_ns > 0]
        if lat:
            a = np.array(lat)
            stages[label] = {"n": int(a.size), "p50_ms": round(_pct(a, 50), 3),
                             "p99_ms": round(_pct(a, 99), 3), "max_ms": round(float(a.max()), 3)}
    chunks: dict[str, float] = {}
    if decoded["action_chunk"]:
        arr = np.array([m.log_time_ns for m in msgs if m.schema == "action_chunk"], dtype=np.int64)
        late = np.array([(t - c.t0_ns) / 1e6 for t, c in zip(arr, decoded["action_chunk"])])
        horizon = np.array([c.actions.shape[0] * c.dt_ns / 1e6 for c in decoded["action_chunk"]])
        chunks = {"count": int(late.size), "late_at_arrival_p50_ms": round(_pct(late, 50), 3),
                  "late_at_arrival_p99_ms": round(_pct(late, 99), 3),
                  "horizon_ms": round(float(np.median(horizon)), 3),
                  "interarrival_p50_ms": round(_pct(np.diff(arr) / 1e6, 50), 3)
                  if arr.size > 1 else float("nan")}
    commands: dict[str, float] = {}
    if decoded["joint_command"]:
        cmds = decoded["joint_command"]
        starved = np.array([bool(c.starved) for c in cmds])
        longest = run = 0
        for s in starved:
            run = run + 1 if s else 0
            longest = max(longest, run)
        stale = np.array([(c.t_target_ns - c.t_capture_ns) / 1e6 for c in cmds
                          if c.t_capture_ns > 0])
        commands = {"count": len(cmds), "starved_ticks": int(starved.sum()),
                    "starved_fraction": round(float(starved.mean()), 4),
                    "longest_starvation_ticks": int(longest),
                    "staleness_p50_ms": round(_pct(stale, 50), 3),
                    "staleness_p99_ms": round(_pct(stale, 99), 3)}
    return Inspection(files=[str(f) for f in files or []], messages=len(msgs),
                      t_start_ns=msgs[0].publish_time_ns if msgs else 0,
                      t_end_ns=msgs[-1].publish_time_ns if msgs else 0, topics=topics,
                      stages=stages, chunks=chunks, commands=commands)


def inspect_file(path: str | Path) -> tuple[Inspection, list[RecordedMessage]]:
    files, msgs = load_messages(path)
    return inspect_messages(msgs, [str(f) for f in files]), msgs


def print_inspection(ins: Inspection) -> None:
    from rich.console import Console

    con = Console()
    span = (ins.t_end_ns - ins.t_start_ns) / 1e9
    con.print(f"[bold]{', '.join(ins.files)}[/]: {ins.messages} messages over {span:.3f} s")
    rows = [(s.topic, s.schema, str(s.count), f"{s.rate_hz:.2f}", f"{s.gap_median_ms:.2f}",
             f"{s.gap_p99_ms:.2f}", f"{s.gap_max_ms:.2f}", str(s.long_gaps), str(s.seq_missing),
             f"{s.mbytes:.2f}", ",".join(s.producers)) for s in ins.topics]
    con.print(fitted_table(
        "topics", ("topic", "schema", "count", "rate Hz", "gap p50 ms", "gap p99 ms",
                   "gap max ms", "long gaps", "seq missing", "MB", "producers"), rows,
        con.width, compact=("topic", "count", "rate Hz", "gap max ms", "seq missing", "MB")))
    if ins.stages:
        rows = [(label, str(v["n"]), f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}",
                 f"{v['max_ms']:.2f}") for label, v in ins.stages.items()]
        con.print(fitted_table("per-stage latency from capture",
                               ("stage", "n", "p50 ms", "p99 ms", "max ms"), rows, con.width))
    for title, d in (("chunks", ins.chunks), ("commands", ins.commands)):
        if d:
            con.print(f"[bold]{title}[/]: " + ", ".join(f"{k}={v}" for k, v in d.items()))


def plot_timeline(msgs: list[RecordedMessage], out: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = msgs[0].publish_time_ns if msgs else 0
    by_topic: dict[str, list[RecordedMessage]] = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)
    chunks = [m.decode() for m in msgs if m.schema == "action_chunk"]
    cmds = [m.decode() for m in msgs if m.schema == "joint_command"]
    fig, ax = plt.subplots(4, 1, figsize=(12, 12), sharex=True,
                           gridspec_kw={"height_ratios": [1.2, 1.6, 1, 1]})
    # 1: messages per topic over time
    names = sorted(by_topic)
    ax[0].eventplot([[(m.publish_time_ns - t0) / 1e9 for m in by_topic[n]] for n in names],
                    lineoffsets=range(len(names)), linelengths=0.8, linewidths=0.6)
    ax[0].set_yticks(range(len(names)), names)
    ax[0].set_title("messages per topic (t_pub)")
    # 2: chunk arrivals vs execution (joint 0)
    for i, c in enumerate(chunks):
        ts = (c.t0_ns + c.dt_ns * np.arange(c.actions.shape[0]) - t0) / 1e9
        ax[1].plot(ts, c.actions[:, 0], color="tab:blue", alpha=0.35, lw=0.8,
                   label="chunk actions (joint 0)" if i == 0 else None)
        ax[1].axvline((c.t_pub_ns - t0) / 1e9, color="tab:gray", alpha=0.3, lw=0.6,
                      label="chunk arrival" if i == 0 else None)
    if cmds:
        tt = np.array([(c.t_target_ns - t0) / 1e9 for c in cmds])
        pos = np.array([c.positions[0] for c in cmds])
        starved = np.array([bool(c.starved) for c in cmds])
        ax[1].plot(tt, pos, color="black", lw=1.2, label="executed command (joint 0)")
        if starved.any():
            ax[1].scatter(tt[starved], pos[starved], color="red", s=8, zorder=3,
                          label="starved tick")
    ax[1].set_ylabel("rad")
    ax[1].set_title("chunk arrivals vs execution")
    ax[1].legend(loc="upper right", fontsize=8)
    # 3: staleness and starvation
    if cmds:
        tt = np.array([(c.t_target_ns - t0) / 1e9 for c in cmds])
        stale = np.array([(c.t_target_ns - c.t_capture_ns) / 1e6 if c.t_capture_ns else np.nan
                          for c in cmds])
        ax[2].plot(tt, stale, lw=1, label="command staleness (target - capture)")
        starved = np.array([bool(c.starved) for c in cmds])
        if starved.any():
            ax[2].fill_between(tt, 0, np.nanmax(stale) if np.isfinite(stale).any() else 1,
                               where=starved, color="red", alpha=0.2, step="mid",
                               label="starvation")
    if chunks:
        arrived = [m.log_time_ns for m in msgs if m.schema == "action_chunk"]
        ax[2].scatter([(t - t0) / 1e9 for t in arrived],
                      [(t - c.t0_ns) / 1e6 for t, c in zip(arrived, chunks)], s=10,
                      color="tab:orange", label="chunk late at arrival (arrival - t0)")
    ax[2].set_ylabel("ms")
    ax[2].set_title("staleness and starvation")
    ax[2].legend(loc="upper right", fontsize=8)
    # 4: per-stage latency from capture over time
    for label, schema in STAGES:
        pts = [((m.log_time_ns - t0) / 1e9, (m.log_time_ns - m.t_capture_ns) / 1e6)
               for m in msgs if m.schema == schema and m.t_capture_ns > 0]
        if pts and schema != "joint_command":
            x, y = zip(*pts)
            ax[3].plot(x, y, ".", ms=3, label=label)
    ax[3].set_ylabel("ms")
    ax[3].set_xlabel("time since start of recording (s)")
    ax[3].set_title("latency from capture per stage")
    if ax[3].get_legend_handles_labels()[0]:
        ax[3].legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
