"""`edgevla run | check | status | scale | set | restart | stop | keys`: start a graph and talk to it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from edgevla.actors.console.dashboard import status_table
from edgevla.actors.console.output_files import write_json_whole
from edgevla.actors.console.values import DURATION_S
from edgevla.actors.recording.tap import add_recorder
from edgevla.actors.runtime import run_verdict
from edgevla.actors.runtime.graph import GraphError, load_graph
from edgevla.actors.runtime.machine_keys import keys_dir, write_keys
from edgevla.actors.runtime.placement import share
from edgevla.actors.runtime.preflight import preflight
from edgevla.actors.runtime.restart_policy import STARTUP_GRACE_S
from edgevla.actors.runtime.run_lookup import supervisor_request
from edgevla.actors.runtime.supervisor import Supervisor
from edgevla.actors.wire.control import SupervisorCommand
from edgevla.deploy.bundle.model_path import model_path


def _machine_share(graph, machine: str | None):
    """What this machine runs of a graph that spans machines."""
    if not machine:
        raise ValueError(f"{graph.path}: the graph spans machines "
                         f"{', '.join(sorted(graph.machines))}: start each machine's share with "
                         f"--machine NAME")
    return share(graph, machine)


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

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
    if graph.machines or args.machine:
        try:
            graph = _machine_share(graph, args.machine)
        except ValueError as exc:
            console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            return 2

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
    try:
        sup = Supervisor(graph)
    except (ValueError, PermissionError) as exc:  # a run directory it cannot make or use
        console.print(f"edgevla run: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
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

    for line in run_verdict.restart_notes(final):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    bad = run_verdict.problems(final, STARTUP_GRACE_S)
    final["verdict"] = {"ok": not bad, "problems": bad}
    if args.summary_json:
        write_json_whole(args.summary_json, final)
    if bad:
        console.print(f"[bold red]run failed[/] ({len(bad)} problem(s)):")
        for line in bad:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        return 1
    return 0


def _with_bundle_paths(graph, path: Path):
    """``params.model`` made absolute by the model path rule (deploy/bundle/model_path.py)."""
    root = path if path.is_dir() else path.parent
    actors = {}
    for name, a in graph.actors.items():
        model = a.params.get("model")
        if isinstance(model, str):
            a = replace(a, params={**a.params, "model": str(model_path(model, root))})
        actors[name] = a
    return replace(graph, actors=actors)


def _request(args: argparse.Namespace, payload: dict) -> dict | None:
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
    reply = _request(args, {"cmd": SupervisorCommand.STATUS})
    if reply is None:
        return 1
    if args.json or not sys.stdout.isatty():  # piped: machine-readable
        print(json.dumps(reply, indent=1, default=str))
    else:
        from rich.console import Console

        console = Console()
        console.print(status_table(reply, width=console.width))
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    if args.hz is None and args.replicas is None:
        print("edgevla scale: give --hz and/or --replicas", file=sys.stderr)
        return 2
    reply = _request(args, {"cmd": SupervisorCommand.SCALE, "actor": args.actor, "hz": args.hz,
                            "replicas": args.replicas})
    if reply is None:
        return 1
    print(json.dumps(reply))
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    try:
        graph = load_graph(args.graph)
    except GraphError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    if not graph.machines:
        print(f"edgevla keys: {args.graph}: the graph names no machines", file=sys.stderr)
        return 2
    folder = Path(args.out) if args.out else keys_dir(graph)
    for pub, made in write_keys(graph, folder):
        print(f"{'made' if made else 'kept'} {pub} and {pub.name}_secret")
    print(f"each machine needs every {folder}/*.key and its own <machine>.key_secret, in the "
          f"folder its graph's network.keys_dir names")
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    try:  # the value as a graph file would write it: true, 0.5, exp, [1, 2]
        value = yaml.safe_load(args.value)
    except yaml.YAMLError:
        value = args.value
    try:
        reply = supervisor_request({"cmd": SupervisorCommand.SET_PARAM, "actor": args.actor,
                                    "name": args.name, "value": value}, run_dir=args.run_dir)
    except (FileNotFoundError, TimeoutError) as exc:
        print(f"edgevla: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):  # a refused name or value: the actor's own one line
        errors = reply.get("errors") or [reply.get("error", "refused")]
        print(f"edgevla set: {'; '.join(map(str, errors))}", file=sys.stderr)
        return 2
    print(json.dumps(reply))
    return 0


def _cmd_simple(cmd: SupervisorCommand):
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




def _cmd_check(args: argparse.Namespace) -> int:
    try:
        g = load_graph(args.graph)
    except GraphError as exc:
        for p in exc.problems:
            print(p)
        return 2

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
    p.add_argument("--duration", type=DURATION_S, default=None, metavar="S",
                   help="stop after S seconds, S > 0 (default: run until stopped)")
    p.add_argument("--headless", action="store_true",
                   help="no live table; print the summary at the end")
    p.add_argument("--record", metavar="OUT.mcap", help="record every topic to an MCAP file")
    p.add_argument("--summary-json", metavar="PATH", help="write the final status as JSON")
    p.add_argument("--machine", metavar="NAME",
                   help="a graph that names machines: start this machine's share (each machine "
                        "runs its own `edgevla run GRAPH --machine NAME`)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check", help="validate a graph file and the model bundles it names, "
                                       "without starting anything")
    p.add_argument("graph")
    p.set_defaults(func=_cmd_check)

    for cmd, helptext in ((SupervisorCommand.STATUS, "show the running graph's actors"),
                          (SupervisorCommand.STOP,
                           "stop the running graph (actors in reverse start order)"),
                          (SupervisorCommand.RESTART, "restart one actor's processes")):
        p = sub.add_parser(cmd, help=helptext)
        if cmd == SupervisorCommand.RESTART:
            p.add_argument("actor")
        if cmd == SupervisorCommand.STATUS:
            p.add_argument("--json", action="store_true",
                           help="print raw JSON (what it prints when its output is piped)")
        p.add_argument("--run-dir", help="run directory or run name (default: the newest live run)")
        p.set_defaults(func=_cmd_status if cmd == SupervisorCommand.STATUS else _cmd_simple(cmd))

    p = sub.add_parser(SupervisorCommand.SCALE,
                       help="change an actor's rate or replica count at run time")
    p.add_argument("actor")
    p.add_argument("--hz", type=float, help="new loop rate in Hz")
    p.add_argument("--replicas", type=int, help="new number of processes (<= max_replicas)")
    p.add_argument("--run-dir", help="run directory or run name (default: the newest live run)")
    p.set_defaults(func=_cmd_scale)

    p = sub.add_parser("keys", help="make the CURVE keys of a graph's machines (once; existing "
                                    "keys are kept)")
    p.add_argument("graph", help="graph YAML file that names machines")
    p.add_argument("--out", metavar="DIR", help="key folder (default: the graph's network.keys_dir)")
    p.set_defaults(func=_cmd_keys)

    p = sub.add_parser("set", help="change one runtime parameter of an actor (every replica)",
                       description="Set a runtime parameter of a running actor, e.g. "
                                   "`edgevla set denoise rtc false`, `edgevla set executor "
                                   "crossfade_ms 50`. VALUE is read as YAML (true, 0.5, exp).")
    p.add_argument("actor")
    p.add_argument("name", help="parameter name (an actor's error lists the ones it has)")
    p.add_argument("value")
    p.add_argument("--run-dir", help="run directory or run name (default: the newest live run)")
    p.set_defaults(func=_cmd_set)
