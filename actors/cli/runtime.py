"""`edgevla run | status | scale | restart | stop | demo`: start a graph and talk to it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgevla.actors.console.values import number


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgevla.actors.console.dashboard import status_table
    from edgevla.actors.runtime.graph import GraphError, load_graph
    from edgevla.actors.runtime.supervisor import Supervisor

    # A pipe or a log file gets a wide table instead of rich's 80-column guess.
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        graph = load_graph(args.graph)
    except GraphError as exc:
        console.print(f"[bold red]graph rejected[/] ({len(exc.problems)} problem(s)):")
        for p in exc.problems:
            console.print(f"  {p}", markup=False, highlight=False, soft_wrap=True)
        return 2
    graph = _with_bundle_paths(graph, Path(args.graph))
    from edgevla.actors.runtime.preflight import preflight

    problems = preflight(graph)
    if problems:
        console.print(f"[bold red]graph cannot start here[/] ({len(problems)} problem(s)):")
        for p in problems:
            console.print(f"  {p}", markup=False, highlight=False, soft_wrap=True)
        return 2
    if args.record:
        if Path(args.record).exists():
            console.print(f"{args.record}: exists (a recording of another run); record to a new "
                          f"name or delete it", markup=False, highlight=False, soft_wrap=True)
            return 2
        graph = add_recorder(graph, args.record)
    sup = Supervisor(graph)
    console.print(f"run dir: {sup.run_dir}  (edgevla status / scale / stop talk to this run)")
    live_view = not args.headless and sys.stdout.isatty()
    try:
        if live_view:
            from rich.live import Live

            with Live(status_table(sup.status(), width=console.width), console=console,
                      refresh_per_second=4) as live:
                sup.run(args.duration, on_tick=lambda s: live.update(
                    status_table(s.status(), width=console.width)))
        else:
            sup.run(args.duration)
    except KeyboardInterrupt:  # Ctrl-C is how a run without --duration ends: a stop
        console.print("stopped (Ctrl-C)")
    final = sup.final_status
    console.print(status_table(final, width=console.width, title=f"summary · {graph.name} · ran "
                                            f"{final.get('uptime_s', 0):.1f}s"))
    from edgevla.actors.runtime.run_verdict import problems, restart_notes
    from edgevla.actors.runtime.supervisor import STARTUP_GRACE_S

    for line in restart_notes(final):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    bad = problems(final, STARTUP_GRACE_S)
    final["verdict"] = {"ok": not bad, "problems": bad}
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(json.dumps(final, indent=1, default=str))
    if bad:
        console.print(f"[bold red]run failed[/] ({len(bad)} problem(s)):")
        for line in bad:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        return 1
    return 0


def add_recorder(graph, path: str, name: str = "recorder", params: dict | None = None):
    """`--record`: one more actor that subscribes to every topic and writes MCAP.

    It starts first and the others wait for its first heartbeat, so the recording holds the
    run from its very first message.
    """
    from dataclasses import replace

    from edgevla.actors.runtime.graph import ActorConfig, RestartPolicy

    rec = ActorConfig(name=name, kind="recorder", inputs={"*": "*"}, rate_hz=20.0,
                      restart=RestartPolicy(policy="always", max_restarts=100, backoff_s=0.1),
                      heartbeat_timeout_s=5.0,
                      params={"path": str(path), "run_id": "${RUN_DIR}", **(params or {})})
    actors = {n: replace(a, after=(*a.after, name)) for n, a in graph.actors.items()}
    actors[name] = rec
    return replace(graph, actors=actors)


def _with_bundle_paths(graph, path: Path):
    """In a board bundle, `params.model` paths are relative to the bundle directory."""
    from dataclasses import replace

    root = path if path.is_dir() else path.parent
    actors = {}
    for name, a in graph.actors.items():
        model = a.params.get("model")
        if isinstance(model, str) and not Path(model).is_absolute() and (root / model).exists():
            a = replace(a, params={**a.params, "model": str((root / model).resolve())})
        actors[name] = a
    return replace(graph, actors=actors)


def _request(args: argparse.Namespace, payload: dict) -> dict | None:
    from edgevla.actors.runtime.supervisor import supervisor_request

    try:
        reply = supervisor_request(payload, run_dir=args.run_dir)
    except (FileNotFoundError, TimeoutError) as exc:
        print(f"edgevla: {exc}", file=sys.stderr)
        return None
    if not reply.get("ok"):
        print(f"edgevla: {reply.get('error', reply)}", file=sys.stderr)
        return None
    return reply


def _cmd_status(args: argparse.Namespace) -> int:
    reply = _request(args, {"cmd": "status"})
    if reply is None:
        return 1
    if args.json or not sys.stdout.isatty():  # piped: machine-readable
        print(json.dumps(reply, indent=1, default=str))
    else:
        from rich.console import Console

        from edgevla.actors.console.dashboard import status_table

        console = Console()
        console.print(status_table(reply, width=console.width))
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    if args.hz is None and args.replicas is None:
        print("edgevla scale: give --hz and/or --replicas", file=sys.stderr)
        return 2
    reply = _request(args, {"cmd": "scale", "actor": args.actor, "hz": args.hz,
                            "replicas": args.replicas})
    if reply is None:
        return 1
    print(json.dumps(reply))
    return 0


def _cmd_simple(cmd: str):
    def handler(args: argparse.Namespace) -> int:
        payload = {"cmd": cmd}
        if getattr(args, "actor", None):
            payload["actor"] = args.actor
        reply = _request(args, payload)
        if reply is None:
            return 1
        print(json.dumps(reply))
        return 0

    return handler


_positive_s = number(float, "s", low=0.0, low_open=True,
                     hint=" (leave it out to run until stopped)")
_nonnegative_ms = number(float, "ms", low=0.0, high=60_000.0)


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgevla.actors.cli.demo import run_demo

    return run_demo(out_dir=Path(args.out), duration_s=args.duration, profile=args.profile,
                    qemu=args.qemu, mode=args.mode, episodes=args.episodes, model=args.model,
                    latency_ms=args.latency_ms)


def _cmd_check(args: argparse.Namespace) -> int:
    from edgevla.actors.runtime.graph import GraphError, load_graph

    try:
        g = load_graph(args.graph)
    except GraphError as exc:
        for p in exc.problems:
            print(p)
        return 2
    from edgevla.actors.runtime.preflight import preflight

    problems = preflight(_with_bundle_paths(g, Path(args.graph)))
    for p in problems:
        print(p)
    if problems:
        return 2
    print(f"{g.path}: ok — {len(g.actors)} actors, topics: {', '.join(g.topics())}")
    print("start order: " + " -> ".join(g.start_order()))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="start a graph (YAML file or board bundle) under a supervisor",
                       description="Start every actor of GRAPH as its own process, watch "
                                   "heartbeats, restart per policy, show a live table. Stops on "
                                   "Ctrl-C, `edgevla stop`, or after --duration.")
    p.add_argument("graph", help="graph YAML file, or a bundle directory holding graph.yaml")
    p.add_argument("--duration", type=_positive_s, default=None, metavar="S",
                   help="stop after S seconds, S > 0 (default: run until stopped)")
    p.add_argument("--headless", action="store_true",
                   help="no live table; print the summary at the end")
    p.add_argument("--record", metavar="OUT.mcap", help="record every topic to an MCAP file")
    p.add_argument("--summary-json", metavar="PATH", help="write the final status as JSON")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check", help="validate a graph file and the model bundles it names, "
                                       "without starting anything")
    p.add_argument("graph")
    p.set_defaults(func=_cmd_check)

    for name, helptext in (("status", "show the running graph's actors"),
                           ("stop", "stop the running graph (actors in reverse start order)"),
                           ("restart", "restart one actor's processes")):
        p = sub.add_parser(name, help=helptext)
        if name == "restart":
            p.add_argument("actor")
        if name == "status":
            p.add_argument("--json", action="store_true",
                           help="print raw JSON (what it prints when its output is piped)")
        p.add_argument("--run-dir", help="run directory or run name (default: the newest live run)")
        p.set_defaults(func=_cmd_status if name == "status" else _cmd_simple(name))

    p = sub.add_parser("scale", help="change an actor's rate or replica count at run time")
    p.add_argument("actor")
    p.add_argument("--hz", type=float, help="new loop rate in Hz")
    p.add_argument("--replicas", type=int, help="new number of processes (<= max_replicas)")
    p.add_argument("--run-dir", help="run directory or run name (default: the newest live run)")
    p.set_defaults(func=_cmd_scale)

    p = sub.add_parser("demo", help="the main job: sim profile end to end, bounded, with summary",
                       description="Run the sim profile (cameras, stage actors on the default "
                                   "model, executor, M7 host firmware, simulated arm) for a "
                                   "bounded time and leave a summary and plots in --out.")
    p.add_argument("--out", default="out/demo", help="where summary and plots go")
    p.add_argument("--duration", type=_positive_s, default=None, metavar="S",
                   help="seconds to run (default: the profile's own)")
    p.add_argument("--profile", default="sim", choices=("sim", "skeleton"),
                   help="sim: the full graph; skeleton: synthetic cameras and dummy stages")
    p.add_argument("--qemu", action="store_true", help="use the QEMU Cortex-M7 firmware build")
    p.add_argument("--mode", default="async", choices=("async", "sync", "both"),
                   help="async: infer while executing; sync: capture -> infer -> execute; "
                        "both: run each and compare idle fraction, task time and success")
    p.add_argument("--episodes", type=int, default=0,
                   help="stop after this many episodes (default: run for --duration)")
    p.add_argument("--model", help="model bundle directory (default: models/default)")
    p.add_argument("--latency-ms", type=_nonnegative_ms, default=0.0, metavar="MS",
                   help="simulate a board's inference latency: each chunk leaves the decoder no "
                        "earlier than capture + MS (default 0: this machine's own latency)")
    p.set_defaults(func=_cmd_demo)
