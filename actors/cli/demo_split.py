"""`edgevla demo --split`: the sim profile as robot + inference server, both on this machine.

`graphs/sim_split.yaml` with both machines on loopback, keys of its own (in ``--out``), each
machine's share under its own supervisor: the robot's (sim, firmware, executor, recorder) and
the server's (vision, decoder). Episodes, scoring and summary are the sim demo's
(`demo_sim`), so the two runs compare directly; ``jpeg`` sends the camera frames to the server
as JPEG at that quality (``network.jpeg``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from edgevla.actors.cli.demo_sim import (CAMERA_TOPICS, GRAPHS, EpisodeManager, SimDemoConfig, _model_dir,
                                         demo_episodes, print_summary, summarize, with_demo_settings)
from edgevla.actors.console.dashboard import status_table
from edgevla.actors.console.output_files import write_json_whole
from edgevla.actors.recording.tap import add_recorder
from edgevla.actors.runtime.graph import GraphConfig, load_graph
from edgevla.actors.runtime.machine_keys import write_keys
from edgevla.actors.runtime.placement import share
from edgevla.actors.runtime.supervisor import Supervisor
from edgevla.deploy.bundle.model_path import is_bundle
from edgevla.firmware_bridge.firmware.build import ensure_built

BASE_PORT = 6600


def split_graph(out_dir: Path, jpeg: int | None) -> GraphConfig:
    """The shipped split graph on loopback, its keys made in ``out_dir/keys``."""
    text = (GRAPHS / "sim_split.yaml").read_text()
    text = text.replace("192.168.1.10", "127.0.0.1").replace("192.168.1.20", "127.0.0.1")
    text = text.replace("${GRAPH_DIR}/../..", str(GRAPHS.parents[1]))
    net = f"base_port: {BASE_PORT}"
    if jpeg:
        net += ", jpeg: {" + ", ".join(f"{t}: {jpeg}" for t in CAMERA_TOPICS) + "}"
    text = text.replace("base_port: 5600", net)
    path = out_dir / "split.yaml"
    path.write_text(text)
    graph = load_graph(path)
    write_keys(graph)
    return graph


def run_split_once(cfg: SimDemoConfig, out_dir: Path, console: Console,
                   jpeg: int | None) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = with_demo_settings(split_graph(out_dir, jpeg), cfg)
    model_dir = _model_dir(graph)
    if not is_bundle(model_dir):
        raise SystemExit(f"no model bundle at {model_dir}: run `make train-default`")
    with console.status("building the M7 firmware (host build)"):
        ensure_built("host")
    recording = out_dir / f"run-{cfg.mode}.mcap"
    recording.unlink(missing_ok=True)
    exclude = [] if cfg.record_frames else list(CAMERA_TOPICS)
    robot = Supervisor(add_recorder(share(graph, "robot"), str(recording), params={"exclude": exclude}))
    server = Supervisor(share(graph, "server"))
    manager = EpisodeManager(specs=demo_episodes(seed=cfg.seed), timeout_s=cfg.episode_timeout_s)
    console.print(f"[bold]edgevla demo[/] · sim profile across robot + server"
                  f"{f' (frames JPEG {jpeg})' if jpeg else ''} · {cfg.mode} · "
                  f"up to {cfg.duration_s:.0f}s · run dirs {robot.run_dir}, {server.run_dir}")

    def tick(s: Supervisor) -> None:
        server.poll_once(0)
        manager.on_tick(s)
        if cfg.episodes and len(manager.results) >= cfg.episodes:
            s.stop_requested = True

    server.start()
    try:
        robot.run(cfg.duration_s, on_tick=tick)
    finally:
        server.stop()
    console.print(status_table(robot.final_status, title=f"robot at the end ({cfg.mode})"))
    summary = summarize(robot, manager.results, recording, out_dir, cfg, model_dir)
    summary["machines"] = {"robot": sorted(robot.graph.actors), "server": sorted(server.graph.actors),
                           "jpeg_quality": jpeg,
                           "server_restarts": {a["actor"]: a["restarts"]
                                               for a in server.final_status["actors"]}}
    write_json_whole(out_dir / f"summary-{cfg.mode}.json", summary)
    print_summary(console, summary)
    return summary


def run_split_demo(out_dir: Path, duration_s: float | None, mode: str, episodes: int,
                   model: str | None, latency_ms: float, jpeg: int | None) -> int:
    console = Console(width=None if sys.stdout.isatty() else 150)
    cfg = SimDemoConfig(mode=mode, episodes=episodes, model=model, latency_ms=latency_ms,
                        duration_s=duration_s or SimDemoConfig.duration_s)
    summary = run_split_once(cfg, out_dir, console, jpeg)
    write_json_whole(out_dir / "summary.json", summary)
    return 0 if summary["chunks_accepted"] else 1
