"""`make demo` / `edgevla demo`: run a profile for a bounded time, leave a summary behind."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from edgevla.actors.cli.demo_sim import run_sim_demo
from edgevla.actors.cli.demo_split import run_split_demo
from edgevla.actors.console.dashboard import status_table
from edgevla.actors.console.output_files import write_json_whole
from edgevla.actors.console.values import DURATION_S, LATENCY_MS, count
from edgevla.actors.runtime.graph import load_graph
from edgevla.actors.runtime.supervisor import Supervisor

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def run_skeleton(out_dir: Path, duration_s: float) -> int:
    console = Console(width=150)
    graph = load_graph(GRAPHS / "skeleton.yaml")
    sup = Supervisor(graph)
    console.print(f"[bold]edgevla demo (skeleton)[/]: {len(graph.actors)} actors, "
                  f"{duration_s:.0f}s, run dir {sup.run_dir}")
    sup.run(duration_s)
    final = sup.final_status
    console.print(status_table(final, title="summary · skeleton"))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_whole(out_dir / "summary.json", final)
    sink = next(a for a in final["actors"] if a["actor"] == "sink")
    chunks = sink["actor_stats"].get("count", 0)
    console.print(f"chunks delivered end to end: {chunks}; summary: {out_dir / 'summary.json'}")
    return 0 if chunks > 0 else 1


def run_demo(out_dir: Path, duration_s: float | None = None, profile: str = "sim",
             qemu: bool = False, mode: str = "async", episodes: int = 0,
             model: str | None = None, latency_ms: float = 0.0) -> int:
    if profile == "sim":
        return run_sim_demo(out_dir, duration_s, qemu=qemu, mode=mode, episodes=episodes,
                            model=model, latency_ms=latency_ms)
    return run_skeleton(out_dir, duration_s or 10.0)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.split or args.jpeg:
        if args.profile != "sim" or args.qemu or args.mode == "both":
            print("edgevla demo: --split runs the sim profile in one mode (async or sync), "
                  "with the host firmware", file=sys.stderr)
            return 2
        if args.jpeg is not None and args.jpeg > 100:
            print(f"edgevla demo: --jpeg must be a JPEG quality 1..100, got {args.jpeg}",
                  file=sys.stderr)
            return 2
        return run_split_demo(Path(args.out), args.duration, args.mode, args.episodes, args.model,
                              args.latency_ms, args.jpeg)
    return run_demo(out_dir=Path(args.out), duration_s=args.duration, profile=args.profile,
                    qemu=args.qemu, mode=args.mode, episodes=args.episodes, model=args.model,
                    latency_ms=args.latency_ms)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job: sim profile end to end, bounded, with summary",
                       description="Run the sim profile (cameras, stage actors on the default "
                                   "model, executor, M7 host firmware, simulated arm) for a "
                                   "bounded time and leave a summary and plots in --out.")
    p.add_argument("--out", default="out/demo", help="where summary and plots go")
    p.add_argument("--duration", type=DURATION_S, default=None, metavar="S",
                   help="seconds to run (default: the profile's own)")
    p.add_argument("--profile", default="sim", choices=("sim", "skeleton"),
                   help="sim: the full graph; skeleton: synthetic cameras and dummy stages")
    p.add_argument("--qemu", action="store_true", help="use the QEMU Cortex-M7 firmware build")
    p.add_argument("--mode", default="async", choices=("async", "sync", "both"),
                   help="async: infer while executing; sync: capture -> infer -> execute; "
                        "both: run each and compare idle fraction, task time and success")
    p.add_argument("--episodes", type=count(), default=0,
                   help="stop after this many episodes (default: run for --duration)")
    p.add_argument("--model", help="model bundle directory (default: models/default)")
    p.add_argument("--latency-ms", type=LATENCY_MS, default=0.0, metavar="MS",
                   help="simulate a board's inference latency: each chunk leaves the decoder no "
                        "earlier than capture + MS (default 0: this machine's own latency)")
    p.add_argument("--split", action="store_true",
                   help="run the sim profile as two machines on this one: the robot (sim, "
                        "firmware, executor) and an inference server (vision, decoder), over "
                        "CURVE (graphs/sim_split.yaml)")
    p.add_argument("--jpeg", type=count(), default=None, metavar="Q",
                   help="with --split: camera frames to the server as JPEG at quality Q (1..100)")
    p.set_defaults(func=_cmd_demo)
