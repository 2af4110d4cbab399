"""`edgevla dataset ...`: record the protocol in the simulator, inspect a dataset, check the expert.

Subcommands: ``record``, ``info``, ``expert-eval``, ``render-bench``, ``map``. Heavy imports
(mujoco, torch, lerobot) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from edgevla.actors.console.values import count
from edgevla.firmware_bridge.servos.joint_units import UNIT_SETS
from edgevla.training.dataset.image_stats import repair_image_stats
from edgevla.training.dataset.info import contact_sheet, format_summary, summarize
from edgevla.training.dataset.record import record_dataset
from edgevla.training.sim.expert import evaluate_expert
from edgevla.training.sim.render_timing import measure_render
from edgevla.training.sim.scene import SceneConfig
from edgevla.training.sim.start_positions import (ProtocolConfig, check_clusters, draw_map, make_protocol,
                                                  select_episodes)

DEFAULT_OUT_HINT = "out/datasets/sim_teabag"


_UNITS_HELP = ("joint units of state and action: the sim's radians (default), or LeRobot's SO-101 "
               "follower units through the sim arm's calibration (so101-degrees: use_degrees=True; "
               "so101-range: -100..100), the gripper 0..100 in both")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x480, got {text!r}")


def _offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")


def _protocol_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol (defaults: the reference protocol)")
    g.add_argument("--clusters", type=count(), default=11, help="number of 10x10 cm start clusters")
    g.add_argument("--positions-per-cluster", type=count(0), default=10,
                   help="normal episodes per cluster")
    g.add_argument("--recovery-per-cluster", type=count(0), default=2,
                   help="recovery episodes per cluster (bag dropped / missed grasp / mug moved)")
    g.add_argument("--val-cluster", type=int, default=6,
                   help="cluster held out for validation (-1: none)")
    g.add_argument("--cluster-size", type=float, default=0.10, help="cluster side, m")
    g.add_argument("--seed", type=int, default=0, help="protocol seed (start poses, expert style)")


def _protocol_cfg(args: argparse.Namespace):
    try:
        return ProtocolConfig(
            clusters=args.clusters, positions_per_cluster=args.positions_per_cluster,
            recovery_per_cluster=args.recovery_per_cluster,
            val_cluster=None if args.val_cluster < 0 else args.val_cluster,
            cluster_size_m=args.cluster_size, seed=args.seed,
        )
    except ValueError as exc:  # values argparse cannot judge alone (a val cluster that is none)
        print(f"edgevla dataset: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dataset", help="record / inspect LeRobot datasets of the simulated arm",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    r = dsub.add_parser(
        "record", help="record the protocol with the scripted expert into a LeRobot dataset",
        description="Record tea-bag pick-and-place demonstrations of the scripted expert in the "
                    "MuJoCo scene, through lerobot's dataset API. Defaults record the full "
                    "protocol (11 clusters x (10 + 2 recovery) episodes, cluster 6 held out as "
                    "the 'val' split) at 96x96, 30 fps: the training set of the shipped model. "
                    "Writes protocol_map.png and contact_sheet.png into the dataset folder.")
    r.add_argument("--out", required=True,
                   help=f"new dataset folder (must not exist), e.g. {DEFAULT_OUT_HINT}")
    r.add_argument("--episodes", type=count(), default=None,
                   help="record only the first N episodes of the selection")
    r.add_argument("--only-clusters", type=_int_list, default=None, metavar="C,C",
                   help="record only these clusters")
    r.add_argument("--per-cluster", type=count(), default=None,
                   help="episodes per cluster (normal and recovery in proportion)")
    r.add_argument("--width", type=count(), default=96, help="image width (640 for the reference)")
    r.add_argument("--height", type=count(), default=96, help="image height (480 for the reference)")
    r.add_argument("--fps", type=count(), default=30, help="recording and control rate")
    r.add_argument("--video", action="store_true",
                   help="store images as video (read back with torchcodec) instead of PNG")
    r.add_argument("--repo-id", default="edgevla/sim_teabag", help="LeRobot repo_id to record")
    r.add_argument("--units", choices=list(UNIT_SETS), default="radians", help=_UNITS_HELP)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    _protocol_args(r)
    r.set_defaults(func=_cmd_record)

    i = dsub.add_parser("info", help="episodes, frames, clusters, recovery share, split",
                        description="Summarise a LeRobot dataset recorded by `dataset record`.")
    i.add_argument("dir", help="dataset folder")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.add_argument("--contact-sheet", default=None, metavar="PNG",
                   help="also draw sample frames (episodes x moments, all cameras) to PNG")
    i.set_defaults(func=_cmd_info)

    e = dsub.add_parser(
        "expert-eval", help="success rate of the scripted expert per cluster",
        description="Roll the scripted expert out on N seeded episodes per cluster (normal and "
                    "recovery starts in the protocol's proportion), without rendering, and "
                    "report the success rate per cluster and per start kind. Exit code 1 when "
                    "a cluster is below --min-rate.")
    e.add_argument("--episodes-per-cluster", type=count(), default=50)
    e.add_argument("--only-clusters", type=_int_list, default=None, metavar="C,C")
    e.add_argument("--min-rate", type=float, default=0.95)
    e.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    _protocol_args(e)
    e.set_defaults(func=_cmd_expert_eval)

    b = dsub.add_parser("render-bench", help="rendering cost per frame at given resolutions",
                        description="Mean ms per frame for each camera and all three, plus "
                                    "physics per control step (shadows off).")
    b.add_argument("--sizes", default="96x96,640x480",
                   help="comma-separated WIDTHxHEIGHT list")
    b.add_argument("--frames", type=count(), default=30)
    b.add_argument("--json", default=None, metavar="PATH")
    b.set_defaults(func=_cmd_render_bench)

    f = dsub.add_parser(
        "fix-stats", help="repair image normalisation stats written by lerobot 0.4.4 (std 0)",
        description="lerobot 0.4.4 computes std 0 for image features (uint8 overflow), so "
                    "training normalises pixels ~40-85x too strongly. Recompute every broken "
                    "camera's statistics from a sample of frames and rewrite meta/stats.json "
                    "(the old one is kept as stats.json.orig). Datasets recorded by this "
                    "version of edgevla are already correct. Models trained on the old stats "
                    "keep them in their own normaliser.")
    f.add_argument("dir", help="dataset folder")
    f.add_argument("--frames", type=count(), default=1000, help="frames to sample")
    f.set_defaults(func=_cmd_fix_stats)

    m = dsub.add_parser("map", help="PNG map of the protocol's clusters and start positions")
    m.add_argument("--out", required=True, help="PNG path")
    _protocol_args(m)
    m.set_defaults(func=_cmd_map)


def _cmd_record(args: argparse.Namespace) -> int:
    _offline_env()

    try:
        cfg = _protocol_cfg(args)
        scene = SceneConfig(width=args.width, height=args.height, fps=args.fps, seed=args.seed)
        specs = make_protocol(cfg)
        if args.only_clusters is not None or args.per_cluster is not None or args.episodes is not None:
            specs = select_episodes(specs, clusters=args.only_clusters,
                                    per_cluster=args.per_cluster, limit=args.episodes)
    except ValueError as exc:
        print(f"edgevla dataset record: {exc}", file=sys.stderr)
        return 2
    if os.path.exists(args.out):
        print(f"edgevla dataset record: {args.out} already exists; choose a new --out",
              file=sys.stderr)
        return 2
    print(f"recording {len(specs)} episodes at {scene.width}x{scene.height}, {scene.fps} fps "
          f"into {args.out}")
    report = record_dataset(args.out, cfg, scene, episodes=specs, use_videos=args.video,
                            repo_id=args.repo_id, progress=not args.no_progress, units=args.units)
    print(report.summary())
    print(f"map: {report.map_png}\ncontact sheet: {report.contact_sheet_png}")
    if report.interrupted:
        print(f"interrupted (Ctrl-C): {report.episodes} of {report.planned} episodes recorded; "
              f"{args.out} is a complete dataset of those (the episode under way was dropped)",
              file=sys.stderr)
        return 130
    return 0 if not report.failed_episodes else 1


def _cmd_fix_stats(args: argparse.Namespace) -> int:
    _offline_env()

    try:
        report = repair_image_stats(args.dir, max_frames=args.frames)
    except FileNotFoundError as exc:
        print(f"edgevla dataset fix-stats: {exc}", file=sys.stderr)
        return 2
    if not report:
        print(f"{args.dir}: image statistics are plausible; nothing changed")
    for cam, r in report.items():
        old = ", ".join(f"{v:.4f}" for v in r["old_std"])
        new = ", ".join(f"{v:.3f}" for v in r["new_std"])
        print(f"{cam}: std [{old}] -> [{new}]")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    _offline_env()

    try:
        s = summarize(args.dir)
    except FileNotFoundError as exc:
        print(f"edgevla dataset info: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(s.to_dict(), indent=2) if args.json else format_summary(s))
    if args.contact_sheet:
        print(f"contact sheet: {contact_sheet(args.dir, args.contact_sheet)}", file=sys.stderr)
    return 0


def _cmd_expert_eval(args: argparse.Namespace) -> int:
    _offline_env()

    base = _protocol_cfg(args)
    n = args.episodes_per_cluster
    share = base.recovery_per_cluster / max(1, base.episodes_per_cluster)
    n_rec = int(round(n * share))
    cfg = ProtocolConfig(**{**vars(base), "positions_per_cluster": n - n_rec,
                            "recovery_per_cluster": n_rec})
    specs = make_protocol(cfg)
    if args.only_clusters is not None:
        try:
            check_clusters(specs, args.only_clusters)
        except ValueError as exc:
            print(f"edgevla dataset expert-eval: {exc}", file=sys.stderr)
            return 2
        specs = [s for s in specs if s.cluster in args.only_clusters]
    from rich.progress import Progress

    with Progress() as prog:
        task = prog.add_task("expert rollouts", total=len(specs))
        res = evaluate_expert(specs, progress=lambda i, total: prog.update(task, completed=i))
    print(f"{len(specs)} episodes ({n} per cluster, {n_rec} recovery) in {res.seconds:.0f} s, "
          f"{res.mean_steps / 30:.1f} s of robot time per episode")
    print("cluster  success")
    for c, (s, total) in res.per_cluster.items():
        print(f"{c:7d}  {s}/{total} ({100 * s / total:.0f}%)")
    for kind, (s, total) in sorted(res.per_kind.items()):
        print(f"  {kind or 'normal':14s} {s}/{total}")
    print(f"overall {100 * res.overall_rate:.1f}%, worst cluster "
          f"{100 * res.worst_cluster_rate:.1f}%")
    for f in res.failures[:20]:
        print(f"  failed: {f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"per_cluster": {str(k): v for k, v in res.per_cluster.items()},
                       "per_kind": res.per_kind, "failures": res.failures,
                       "overall_rate": res.overall_rate,
                       "worst_cluster_rate": res.worst_cluster_rate,
                       "seconds": res.seconds}, fh, indent=2)
    return 0 if res.worst_cluster_rate >= args.min_rate else 1


def _cmd_render_bench(args: argparse.Namespace) -> int:
    _offline_env()

    rows = {}
    for text in args.sizes.split(","):
        w, h = _size(text)
        r = measure_render(SceneConfig(width=w, height=h), frames=args.frames)
        rows[f"{w}x{h}"] = r
        print(f"{w}x{h}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    cfg = _protocol_cfg(args)
    print(draw_map(make_protocol(cfg), cfg, args.out))
    return 0
