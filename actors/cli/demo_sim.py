"""The sim profile end to end: what `make demo` runs.

Starts graphs/sim.yaml (M7 host firmware, simulated 3-camera arm, vision + decoder on the
shipped default model, executor) under the supervisor with a recorder, runs seeded episodes of
"put the tea bag in the mug" back to back for a bounded time (an episode ends on success or
after ``episode_timeout_s``; the sim actor is then reset through the control channel), and
leaves behind in ``out_dir``: summary.json, summary.md, timeline.png and the MCAP recording.

Modes: ``async`` (the executor requests the next chunk while the current one still runs) and
``sync`` (capture -> infer -> execute the whole chunk: the executor asks only when the chunk is
used up and each chunk is timed from its arrival, so the arm waits during inference).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgevla.actors.cli.demo_plots import plot_episode
from edgevla.actors.console.dashboard import status_table
from edgevla.actors.console.output_files import write_json_whole
from edgevla.actors.recording.inspect import inspect_file, plot_timeline
from edgevla.actors.recording.tap import add_recorder
from edgevla.actors.runtime.graph import GraphConfig, expand_placeholders, load_graph
from edgevla.actors.runtime.supervisor import Supervisor
from edgevla.deploy.bundle.model_path import is_bundle
from edgevla.firmware_bridge.firmware.build import ensure_built
from edgevla.training.sim.start_positions import ProtocolConfig, make_protocol

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
REPO = Path(__file__).resolve().parents[2]
CAMERA_TOPICS = ("cam/top", "cam/gripper", "cam/left")


@dataclass
class SimDemoConfig:
    duration_s: float = 150.0
    episode_timeout_s: float = 20.0  # sim seconds; the eval gives an episode 15
    mode: str = "async"
    qemu: bool = False
    record_frames: bool = True  # camera frames too, so `replay --replace vision` has its inputs
    model: str | None = None  # default: models/default
    episodes: int = 0  # stop after this many episodes (0: only the duration bounds the run)
    seed: int = 0
    # board-class inference latency, simulated: the decoder publishes each chunk no earlier than
    # capture + this (0: as fast as this machine infers)
    latency_ms: float = 0.0


@dataclass
class EpisodeLog:
    index: int
    cluster: int
    split: str
    success: bool
    task_time_s: float
    start_ns: int = 0  # host monotonic time (the recording's time base)
    end_ns: int = 0
    phases: list[tuple[int, str]] = field(default_factory=list)  # (host ns, task phase) samples

    @property
    def last_phase(self) -> str:
        return self.phases[-1][1] if self.phases else "?"


@dataclass
class EpisodeManager:
    """Resets the sim between episodes and keeps score (runs in the supervisor's loop)."""

    specs: list[dict[str, Any]]
    timeout_s: float
    results: list[EpisodeLog] = field(default_factory=list)
    current: int = 0
    started_sim_s: float | None = None
    last_episodes_seen: int = 0
    pending_reset_at: float = 0.0
    started_ns: int = 0
    phases: list[tuple[int, str]] = field(default_factory=list)

    def on_tick(self, sup: Supervisor) -> None:
        reps = sup.replicas.get("sim", [])
        if not reps or not reps[0].last_stats:
            return
        st = reps[0].last_stats.get("actor_stats", {})
        sim_t = float(st.get("sim_time_s", 0.0))
        episodes = int(st.get("episodes", 0))
        now_ns = time.monotonic_ns()
        if episodes != self.last_episodes_seen:  # a reset (ours, or a restarted sim) took effect
            self.last_episodes_seen = episodes
            self.started_sim_s = sim_t
            self.started_ns, self.phases = now_ns, []
            return
        if self.started_sim_s is None:
            self.started_sim_s = sim_t
            self.started_ns = now_ns
        if time.monotonic() < self.pending_reset_at:
            return
        phase = st.get("task_phase")
        if phase and (not self.phases or self.phases[-1][1] != phase):
            self.phases.append((now_ns, str(phase)))
        elapsed = sim_t - self.started_sim_s
        success = bool(st.get("success"))
        if success or elapsed > self.timeout_s:
            spec = self.specs[self.current % len(self.specs)]
            self.results.append(EpisodeLog(index=self.current, cluster=int(spec.get("cluster", -1)),
                                           split=str(spec.get("split", "train")), success=success,
                                           task_time_s=round(elapsed, 2), start_ns=self.started_ns,
                                           end_ns=now_ns, phases=list(self.phases)))
            self.current += 1
            nxt = self.specs[self.current % len(self.specs)]
            sup.set_param("sim", "reset", nxt)
            self.pending_reset_at = time.monotonic() + 1.0  # wait for the reset to show up


def demo_episodes(n: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """Start positions from the recording protocol: held-out cluster and training clusters."""

    specs = [s for s in make_protocol(ProtocolConfig()) if not s.recovery]
    rng = np.random.default_rng(seed)
    val = [s for s in specs if s.split == "val"]
    train = [s for s in specs if s.split == "train"]
    picked = list(rng.choice(len(train), size=min(n - n // 4, len(train)), replace=False))
    chosen = [train[i] for i in picked] + val[: max(1, n // 4)]
    order = rng.permutation(len(chosen))
    return [chosen[i].to_dict() for i in order]


def build_graph(cfg: SimDemoConfig, out_dir: Path) -> GraphConfig:
    graph = with_demo_settings(load_graph(GRAPHS / "sim.yaml"), cfg)
    exclude = [] if cfg.record_frames else list(CAMERA_TOPICS)
    return add_recorder(graph, str(out_dir / f"run-{cfg.mode}.mcap"), params={"exclude": exclude})


def with_demo_settings(graph: GraphConfig, cfg: SimDemoConfig) -> GraphConfig:
    """The sim profile's graph (one machine or across two) as ``cfg`` asks: model, firmware
    build, simulated latency, async or sync."""
    actors = dict(graph.actors)
    if cfg.model:
        for name in ("vision", "decoder"):
            actors[name] = replace(actors[name], params={**actors[name].params,
                                                         "model": str(Path(cfg.model).resolve())})
    if cfg.qemu:
        # The emulated M7 has no servo bus to the sim: it simulates its servos internally, and
        # the simulated arm follows the executor's commands directly.
        actors["mcu"] = replace(actors["mcu"], params={**actors["mcu"].params, "qemu": True,
                                                       "servo_path": None})
        sim_params = {k: v for k, v in actors["sim"].params.items() if k != "servo_port"}
        actors["sim"] = replace(actors["sim"], params=sim_params,
                                inputs={"commands": "exec/commands"})
    if cfg.latency_ms:
        dec = actors["decoder"]
        actors["decoder"] = replace(dec, params={**dec.params, "simulated_latency_ms": cfg.latency_ms},
                                    heartbeat_timeout_s=max(dec.heartbeat_timeout_s or 0.0,
                                                            10.0 + 2 * cfg.latency_ms / 1e3))
    if cfg.mode == "sync":
        ex = actors["executor"]
        actors["executor"] = replace(ex, params={**ex.params, "request_mode": "threshold",
                                                 "request_threshold": 0.0,
                                                 "chunk_timing": "arrival"})
    return replace(graph, actors=actors)


def _model_dir(graph: GraphConfig) -> Path:
    model = graph.actors["vision"].params["model"]
    return Path(expand_placeholders(model, graph.path, None))


def summarize(sup: Supervisor, episodes: list[EpisodeLog], recording: Path, out_dir: Path,
              cfg: SimDemoConfig, model_dir: Path) -> dict[str, Any]:
    final = sup.final_status
    by_actor = {a["actor"]: a for a in final["actors"]}
    wall = max(final.get("uptime_s", 1.0), 1e-6)
    ins, msgs = inspect_file(recording)
    obs_to_motion = _obs_to_motion_ms(msgs)
    ex = by_actor.get("executor", {}).get("actor_stats", {})
    ticks = max(int(ex.get("ticks", 0)), 1)
    idle_ticks = int(ex.get("starvation_ticks", 0)) + int(ex.get("waiting_ticks", 0))
    done = [e for e in episodes]
    succ = [e for e in done if e.success]

    def rate(split: str | None) -> float | None:
        sel = [e for e in done if split is None or e.split == split]
        return round(sum(e.success for e in sel) / len(sel), 3) if sel else None

    stage_lat = {}
    for actor, key in (("vision", "vision_ms"), ("decoder", "decoder_ms")):
        a = by_actor.get(actor, {})
        stage_lat[actor] = {"loop_p50_ms": a.get("loop_p50_ms"), "loop_p99_ms": a.get("loop_p99_ms")}
    summary = {
        "mode": cfg.mode,
        "simulated_latency_ms": cfg.latency_ms,
        "firmware": "qemu-m7" if cfg.qemu else "host",
        "duration_s": round(wall, 1),
        "episodes": len(done),
        "successes": len(succ),
        "success_rate": rate(None),
        "success_train_clusters": rate("train"),
        "success_val_cluster": rate("val"),
        "task_time_s_mean_success": round(float(np.mean([e.task_time_s for e in succ])), 2)
        if succ else None,
        "robot_idle_fraction": round(idle_ticks / ticks, 4),
        "starvation_ticks": int(ex.get("starvation_ticks", 0)),
        "max_seam_jump_rad": _round_or_none(ex.get("max_seam_jump_rad"), 4),
        "max_step_rad": _round_or_none(ex.get("max_step_rad"), 4),
        "chunks_accepted": ex.get("accepted_chunks"),
        "chunks_dropped": ex.get("dropped_chunks"),
        "stage_latency_ms": {**stage_lat, **ins.stages},
        "obs_to_motion_ms": obs_to_motion,
        "waypoints_forwarded": (ex.get("mcu") or {}).get("forwarded"),
        "restarts": {a["actor"]: a["restarts"] for a in final["actors"]},
        "footprint": {a["actor"]: {"rss_mb": a.get("rss_mb"),
                                   "cpu_share_of_2_cores": round((a.get("cpu_s") or 0) / wall / 2, 3)}
                      for a in final["actors"]},
        "model": {"dir": str(model_dir),
                  "files_mb": {p.name: round(p.stat().st_size / 1e6, 2)
                               for p in sorted(model_dir.glob("*")) if p.suffix in (".onnx", ".tflite")}},
        "torch_loaded_in_any_actor": any(a.get("actor_stats") is not None and
                                         (sup.replicas[a["actor"]][0].last_stats or {})
                                         .get("torch_loaded") for a in final["actors"]),
        "episodes_log": [e.__dict__ for e in done],
        "recording": str(recording),
    }
    plot_timeline(msgs, out_dir / f"timeline-{cfg.mode}.png",
                  title=f"edgevla sim demo ({cfg.mode}): {len(succ)}/{len(done)} episodes")
    failed = [e for e in done if not e.success]
    for old in out_dir.glob(f"episode-{cfg.mode}-*.png"):
        old.unlink()
    if failed:
        e = failed[0]
        summary["failed_episode_plot"] = str(plot_episode(
            msgs, e, out_dir / f"episode-{cfg.mode}-{e.index}.png",
            title=f"{cfg.mode}: episode {e.index} (cluster {e.cluster}, {e.split}) failed "
                  f"after {e.task_time_s:.1f} s in phase '{e.last_phase}'"))
    return summary


def _round_or_none(v: Any, digits: int) -> float | None:
    return None if v is None else round(float(v), digits)


def _obs_to_motion_ms(msgs) -> dict[str, float]:
    """Observation capture -> first control tick that executes its chunk."""
    first: dict[int, float] = {}
    for m in msgs:
        if m.schema != "joint_command":
            continue
        c = m.decode()
        if c.chunk_seq >= 0 and c.t_capture_ns > 0 and not c.starved and c.chunk_seq not in first:
            first[c.chunk_seq] = (c.t_pub_ns - c.t_capture_ns) / 1e6
    if not first:
        return {}
    a = np.array(list(first.values()))
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2)}


def print_summary(console: Console, s: dict[str, Any]) -> None:
    t = Table(title=f"edgevla sim demo · {s['mode']} · {s['firmware']} firmware", show_header=False,
              title_justify="left")
    rows = [
        ("episodes (success)", f"{s['episodes']} ({s['successes']}), rate {s['success_rate']}"),
        ("success train / held-out cluster", f"{s['success_train_clusters']} / {s['success_val_cluster']}"),
        ("task time, successful episodes", f"{s['task_time_s_mean_success']} s"),
        ("robot idle fraction", f"{s['robot_idle_fraction']:.3f}"),
        ("starvation ticks", str(s["starvation_ticks"])),
        ("max seam jump / max step (rad)", f"{s['max_seam_jump_rad']} / {s['max_step_rad']}"),
        ("obs -> motion (ms)", _fmt_obs_to_motion(s["obs_to_motion_ms"])),
        ("restarts", json.dumps(s["restarts"])),
        ("waypoints to the M7", str(s["waypoints_forwarded"])),
        ("torch in any actor", str(s["torch_loaded_in_any_actor"])),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    lat = Table(title="per-stage latency (ms)", title_justify="left")
    for c in ("stage", "p50", "p99"):
        lat.add_column(c)
    for name, v in s["stage_latency_ms"].items():
        p50 = v.get("p50_ms", v.get("loop_p50_ms"))
        p99 = v.get("p99_ms", v.get("loop_p99_ms"))
        lat.add_row(name, f"{p50}", f"{p99}")
    console.print(lat)


def _fmt_obs_to_motion(o: dict[str, Any]) -> str:
    if not o:
        return "no chunk executed"
    return f"p50 {o['p50_ms']} / p99 {o['p99_ms']} over {o['n']} chunks"


def side_by_side(summaries: list[dict[str, Any]]) -> Table:
    """The modes next to each other on what async exists to change."""
    lat = summaries[0].get("simulated_latency_ms") or 0
    t = Table(title="async vs sync" + (f" at {lat:.0f} ms simulated inference latency" if lat else ""),
              title_justify="left")
    t.add_column("")
    for s in summaries:
        t.add_column(s["mode"], justify="right")
    rows = [("success", lambda s: f"{s['successes']}/{s['episodes']}"),
            ("task time, successes (s)", lambda s: str(s["task_time_s_mean_success"])),
            ("idle fraction", lambda s: f"{s['robot_idle_fraction']:.3f}"),
            ("max seam jump (rad)", lambda s: str(s["max_seam_jump_rad"])),
            ("starvation ticks", lambda s: str(s["starvation_ticks"]))]
    for label, fmt in rows:
        t.add_row(label, *[fmt(s) for s in summaries])
    times = [s["task_time_s_mean_success"] for s in summaries]
    if all(times):
        t.add_row("task time vs " + summaries[-1]["mode"], *[f"{x / times[-1]:.2f}x" for x in times])
    return t


def write_markdown(path: Path, summaries: list[dict[str, Any]]) -> None:
    lat = summaries[0].get("simulated_latency_ms") or 0
    lines = ["# edgevla sim demo", "",
             f"Simulated inference latency: {lat:.0f} ms (capture to chunk)." if lat else
             "Inference latency: this machine's own.", "",
             "| mode | episodes | success | train / val | task time (s) | idle fraction | "
             "starvation ticks | max seam jump (rad) | obs->motion p50/p99 (ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        o = s["obs_to_motion_ms"]
        lines.append(f"| {s['mode']} | {s['episodes']} | {s['success_rate']} | "
                     f"{s['success_train_clusters']} / {s['success_val_cluster']} | "
                     f"{s['task_time_s_mean_success']} | {s['robot_idle_fraction']} | "
                     f"{s['starvation_ticks']} | {s['max_seam_jump_rad']} | "
                     f"{o.get('p50_ms')} / {o.get('p99_ms')} |")
    lines += ["", "Per actor footprint (last run):", "", "| actor | RSS MB | CPU share of 2 cores |",
              "|---|---|---|"]
    for actor, f in summaries[-1]["footprint"].items():
        lines.append(f"| {actor} | {f['rss_mb']} | {f['cpu_share_of_2_cores']} |")
    plots = [s["failed_episode_plot"] for s in summaries if s.get("failed_episode_plot")]
    if plots:
        lines += ["", "First failed episode per mode (joints, chunk arrivals, task phase): "
                  + ", ".join(Path(p).name for p in plots)]
    path.write_text("\n".join(lines) + "\n")


def run_once(cfg: SimDemoConfig, out_dir: Path, console: Console, live: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = build_graph(cfg, out_dir)
    model_dir = _model_dir(graph)
    if not is_bundle(model_dir):
        raise SystemExit(f"no model bundle at {model_dir}: run `make train-default` (or pass "
                         f"--model DIR of an `edgevla export` bundle)")
    with console.status("building the M7 firmware (host build)" if not cfg.qemu
                        else "building the M7 firmware (QEMU Cortex-M7 build)"):
        ensure_built("qemu-m7" if cfg.qemu else "host")
    recording = Path(graph.actors["recorder"].params["path"])
    for old in out_dir.glob(recording.stem + "*.mcap"):
        old.unlink()
    manager = EpisodeManager(specs=demo_episodes(seed=cfg.seed), timeout_s=cfg.episode_timeout_s)
    sup = Supervisor(graph)
    console.print(f"[bold]edgevla demo[/] · sim profile · {cfg.mode} · {len(graph.actors)} actors · "
                  f"up to {cfg.duration_s:.0f}s · run dir {sup.run_dir}")

    def tick(s: Supervisor) -> None:
        manager.on_tick(s)
        if cfg.episodes and len(manager.results) >= cfg.episodes:
            s.stop_requested = True
        if live_view is not None:
            live_view.update(status_table(s.status(), title=f"edgevla · sim ({cfg.mode}) · "
                                          f"episodes {len(manager.results)} · successes "
                                          f"{sum(e.success for e in manager.results)}"))

    live_view = None
    if live:
        from rich.live import Live

        with Live(status_table(sup.status()), console=console, refresh_per_second=4) as lv:
            live_view = lv
            sup.run(cfg.duration_s, on_tick=tick)
    else:
        sup.run(cfg.duration_s, on_tick=tick)
    console.print(status_table(sup.final_status, title=f"actors at the end ({cfg.mode})"))
    summary = summarize(sup, manager.results, recording, out_dir, cfg, model_dir)
    write_json_whole(out_dir / f"summary-{cfg.mode}.json", summary)
    print_summary(console, summary)
    return summary


def run_sim_demo(out_dir: Path, duration_s: float | None = None, qemu: bool = False,
                 mode: str = "async", episodes: int = 0, model: str | None = None,
                 latency_ms: float = 0.0) -> int:
    import sys

    console = Console(width=None if sys.stdout.isatty() else 150)
    modes = ["async", "sync"] if mode == "both" else [mode]
    summaries = []
    for m in modes:
        cfg = SimDemoConfig(mode=m, qemu=qemu, episodes=episodes, model=model,
                            duration_s=duration_s or SimDemoConfig.duration_s,
                            latency_ms=latency_ms)
        summaries.append(run_once(cfg, out_dir, console, live=sys.stdout.isatty()))
    write_markdown(out_dir / "summary.md", summaries)
    write_json_whole(out_dir / "summary.json", summaries if len(summaries) > 1 else summaries[0])
    if len(summaries) == 2:
        console.print(side_by_side(summaries))
    console.print(f"summary: {out_dir / 'summary.md'}, plots: {out_dir}/timeline-*.png")
    # The demo fails loudly when the pipeline itself did not run, not when the policy misses.
    return 0 if all(s["chunks_accepted"] for s in summaries) else 1
