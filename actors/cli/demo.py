"""`make demo` / `edgevla demo`: run a profile for a bounded time, leave a summary behind."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from edgevla.actors.console.dashboard import status_table
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
    (out_dir / "summary.json").write_text(json.dumps(final, indent=1, default=str))
    sink = next(a for a in final["actors"] if a["actor"] == "sink")
    chunks = sink["actor_stats"].get("count", 0)
    console.print(f"chunks delivered end to end: {chunks}; summary: {out_dir / 'summary.json'}")
    return 0 if chunks > 0 else 1


def run_demo(out_dir: Path, duration_s: float | None = None, profile: str = "sim",
             qemu: bool = False, mode: str = "async", episodes: int = 0,
             model: str | None = None, latency_ms: float = 0.0) -> int:
    if profile == "sim":
        try:
            from edgevla.actors.cli.demo_sim import run_sim_demo
        except ModuleNotFoundError as exc:
            if exc.name != "edgevla.actors.cli.demo_sim":
                raise
            Console().print("[yellow]sim profile not available yet: running the skeleton[/]")
        else:
            return run_sim_demo(out_dir, duration_s, qemu=qemu, mode=mode, episodes=episodes,
                                model=model, latency_ms=latency_ms)
    return run_skeleton(out_dir, duration_s or 10.0)
