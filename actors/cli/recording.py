"""`edgevla replay ...` and `edgevla inspect ...` (recordings are made by `edgevla run --record`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgevla.actors.console.output_files import write_json_whole, write_text_whole
from edgevla.actors.console.tables import fitted_table
from edgevla.actors.console.user_files import usable_file
from edgevla.actors.recording.inspect import inspect_file, plot_timeline, print_inspection
from edgevla.actors.recording.replay_compare import compare_replay, diff_report_json, dumps
from edgevla.actors.recording.replay_setup import load_recording, parse_sets
from edgevla.actors.recording.step_replay import replay_step, write_replay_mcap
from edgevla.actors.recording.timed_replay import replay_timed
from edgevla.actors.runtime.graph import GraphError, load_graph
from edgevla.actors.runtime.inprocess import ActorSetupError
from edgevla.actors.wire.bus import make_run_dir

RECORDING = "an MCAP recording written by `edgevla run --record`"
REPLAY_HELP = """\
Replay a recording made with `edgevla run GRAPH --record out.mcap` (rotated or restarted
continuations out.1.mcap, out.2.mcap ... are read too).

timed (default): republish every recorded message, bit-identical, on its topic's endpoint in
  --run-dir with the original spacing / --speed. Consumers connect there as to a live graph.
--step: no sockets and no wall time: the --replace actors run in this process on a virtual
  clock, stepping when they stepped in the recording; the result does not depend on machine
  speed. With --compare the report says how their outputs differ from the recorded ones.

examples:
  edgevla replay run.mcap --speed 0.5 --run-dir /tmp/edgevla-replay
  edgevla replay run.mcap --step --graph g.yaml --replace executor --compare
  edgevla replay run.mcap --step --graph g.yaml --replace executor \\
      --set executor.strategy=latest --compare --json diff.json --out replayed.mcap
"""

INSPECT_HELP = """\
Summarise a recording: per topic messages, rate, inter-message gaps (p50/p99/max, gaps longer
than 2.5x the median period), sequence holes per producer (lost before the recorder, or
skipped by a latest-value stage that passes its input's seq on), bytes;
per stage the latency from camera capture: -> frame, -> features, -> prefix, -> chunk,
-> executed (joint command target time), p50/p99/max; chunk lateness at arrival; starvation
ticks and staleness of the executed commands.

examples:
  edgevla inspect run.mcap
  edgevla inspect run.mcap --plot timeline.png --json stats.json
"""


def add_parser(sub) -> None:
    p = sub.add_parser("replay", help="replay a recording (timed or stepwise), swap actors, "
                                      "compare outputs",
                       description=REPLAY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="recording (.mcap) written by `edgevla run --record`")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--speed", type=float, default=1.0,
                      help="timed mode: playback speed factor (2 = twice as fast; default 1)")
    mode.add_argument("--step", action="store_true",
                      help="step on a virtual clock: deterministic, as fast as the CPU allows")
    p.add_argument("--topics", nargs="+", metavar="TOPIC",
                   help="only these recorded topics (default: all)")
    p.add_argument("--graph", help="graph YAML the live (--replace) actors come from")
    p.add_argument("--replace", nargs="+", default=[], metavar="ACTOR",
                   help="suppress the recorded outputs of these actors and run them live from "
                        "--graph instead")
    p.add_argument("--set", dest="sets", action="append", default=[],
                   metavar="ACTOR.PARAM=VALUE",
                   help="override a live actor's parameter (value parsed as YAML), repeatable")
    p.add_argument("--compare", action="store_true",
                   help="--step: report max/mean abs difference of the live outputs per topic")
    p.add_argument("--json", metavar="PATH", help="write the comparison / replay stats as JSON")
    p.add_argument("--out", metavar="OUT.mcap",
                   help="--step: write the replayed run (recorded inputs + live outputs) as MCAP")
    p.add_argument("--run-dir", help="timed mode: directory for the ipc endpoints "
                                     "(default: a new private run directory)")
    p.add_argument("--delivery-us", type=float, default=1.0,
                   help="--step: modelled bus delivery time (must match the recorded run; "
                        "default 1 µs, the in-process driver's)")
    p.set_defaults(func=_replay)

    q = sub.add_parser("inspect", help="per-topic counts, rates, gaps and per-stage latency of "
                                       "a recording; --plot draws a timeline",
                       description=INSPECT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("file", help="recording (.mcap)")
    q.add_argument("--plot", metavar="OUT.png", help="draw the timeline to this PNG")
    q.add_argument("--json", metavar="PATH", help="write the statistics as JSON")
    q.set_defaults(func=_inspect)


def _progress(description: str):
    from rich.progress import Progress

    prog = Progress(transient=True)
    task = prog.add_task(description, total=1)

    def update(done: int, total: int) -> None:
        prog.update(task, completed=done, total=total)

    return prog, update


def _replay(args) -> int:
    if args.replace and not args.graph:
        print("edgevla replay: --replace needs --graph (the graph the live actors come from)",
              file=sys.stderr)
        return 2
    if not args.step and not args.speed > 0:
        print(f"edgevla replay: --speed must be > 0 (2 = twice as fast), got {args.speed:g}",
              file=sys.stderr)
        return 2
    if args.delivery_us < 0:
        print(f"edgevla replay: --delivery-us must be >= 0, got {args.delivery_us:g}", file=sys.stderr)
        return 2
    try:
        usable_file(args.file, RECORDING)
        msgs, traces = load_recording(args.file, args.topics)
        overrides = parse_sets(args.sets)
    except (FileNotFoundError, ValueError) as exc:
        print(f"edgevla replay: {exc}", file=sys.stderr)
        return 2
    if not msgs:
        print(f"edgevla replay: {args.file}: no messages" +
              (f" on topics {args.topics}" if args.topics else ""), file=sys.stderr)
        return 1
    graph = None
    if args.graph:
        try:
            graph = load_graph(args.graph)
        except GraphError as exc:
            print(exc, file=sys.stderr)
            return 2
    try:
        if args.step:
            return _replay_step(args, msgs, traces, graph, overrides)
        return _replay_timed(args, msgs, graph, overrides)
    except (KeyError, ActorSetupError) as exc:
        print(f"edgevla replay: {exc.args[0]}", file=sys.stderr)
        return 2


def _replay_step(args, msgs, traces, graph, overrides) -> int:
    from rich.console import Console

    con = Console()
    if not args.replace:
        con.print(f"{len(msgs)} messages, nothing live: pass --graph G --replace ACTOR to run "
                  f"actors against the recording")
        return 0
    prog, update = _progress("stepping")
    with prog:
        res = replay_step(msgs, graph, args.replace, traces=traces, overrides=overrides,
                          delivery_ns=int(args.delivery_us * 1000), progress=update)
    span = (res.t_end_ns - res.t_start_ns) / 1e9
    for actor, topics in res.missing_inputs.items():
        con.print(f"[yellow]warning:[/] {actor} reads {', '.join(topics)}: not in the recording "
                  f"(recorded with --topics?), so it never got them")
    con.print(f"stepped {', '.join(f'{a} x{res.steps[a]} ({res.tick_source[a]})' for a in res.live)}"
              f" over {span:.3f} s of recording")
    for actor, steps in res.inputs_not_found.items():
        con.print(f"note: {actor}: {len(steps)} step(s) consumed a message the recording does not "
                  f"hold, the first at +{(steps[0] - res.t_start_ns) / 1e9:.3f} s (sent before the "
                  f"recorder connected, lost by it, or sent by another replaced actor under another "
                  f"name); those steps got what the delivery rule gives")
    for actor, k in res.joined_at_step.items():
        con.print(f"note: {actor}: the recording begins at its step {k}, not its first; replayed "
                  f"from there, what it counts or times from its own start (sequence numbers, "
                  f"startup requests) can differ from the recording")
    report = {"live": res.live, "steps": res.steps, "tick_source": res.tick_source,
              "outputs": {t: len(v) for t, v in res.replayed.items()}}
    rc = 0
    if args.compare:
        diffs = compare_replay(res)
        rows = [(d.topic, str(d.recorded), str(d.replayed), str(d.compared),
                 str(d.identical_frames) + (" (all)" if d.bit_identical else ""),
                 str(d.identical_payload),
                 "-" if d.first_diff is None else f"#{d.first_diff}..#{d.last_diff}",
                 f"{d.max_abs_diff:.6g}", f"{d.mean_abs_diff:.6g}") for d in diffs]
        con.print(fitted_table(
            "live outputs vs recording",
            ("topic", "recorded", "replayed", "paired", "bit-identical", "same content",
             "differing", "max |diff|", "mean |diff|"), rows, con.width,
            compact=("topic", "recorded", "paired", "same content", "max |diff|")))
        con.print("same content: equal fields and arrays (the envelope t_pub_ns/seq/producer is "
                  "stamped by the bus or a counter and left out); differing: first..last "
                  "differing message")
        report = diff_report_json(diffs, res)
    if args.out:
        out = write_replay_mcap(args.out, msgs, res)
        con.print(f"replayed run written to {out}")
    if args.json:
        write_text_whole(args.json, dumps(report))
    return rc


def _replay_timed(args, msgs, graph, overrides) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else make_run_dir(name="replay")
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    span = (msgs[-1].publish_time_ns - msgs[0].publish_time_ns) / 1e9
    print(f"replaying {len(msgs)} messages ({span:.2f} s at x{args.speed:g}) on {run_dir}",
          flush=True)
    prog, update = _progress("replaying")
    with prog:
        stats = replay_timed(msgs, run_dir, speed=args.speed, graph=graph,
                             replace=args.replace, overrides=overrides, progress=update)
    print(f"published {sum(stats.published.values())} messages in {stats.wall_s:.2f} s "
          f"(recording {stats.recording_s:.2f} s), dropped {sum(stats.dropped.values())}, "
          f"max lateness {stats.max_lateness_ms:.2f} ms")
    if args.json:
        from dataclasses import asdict

        write_json_whole(args.json, asdict(stats))
    return 0


def _inspect(args) -> int:
    try:
        usable_file(args.file, RECORDING)
        ins, msgs = inspect_file(args.file)
    except (FileNotFoundError, ValueError) as exc:
        print(f"edgevla inspect: {exc}", file=sys.stderr)
        return 2
    print_inspection(ins)
    if args.json:
        write_json_whole(args.json, ins.as_dict())
    if args.plot:
        out = plot_timeline(msgs, args.plot, title=Path(args.file).name)
        print(f"timeline written to {out}")
    return 0
