"""`edgevla export` and `edgevla bundle` (torch/lerobot imported inside the handlers only)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edgevla.actors.console.values import count
from edgevla.deploy.bundle.manifest import BundleError, write_board_bundle
from edgevla.deploy.export import exporter, parity
from edgevla.deploy.export import smolvla_local as sl
from edgevla.deploy.export.quantize import parse_precision_spec
from edgevla.deploy.inference.pipeline import StageChoice
from edgevla.firmware_bridge.servos.joint_units import UNIT_SETS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a policy to a model bundle (ONNX/LiteRT stages, quantized variants)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Split a lerobot ACT or SmolVLA checkpoint into stages (ACT: vision, decoder; "
                    "SmolVLA: vision, prefill, denoise), export each to ONNX, write int8/int4 "
                    "variants and (ACT vision) a LiteRT .tflite, check every stage against "
                    "PyTorch and the composed pipeline against lerobot, and write manifest.json.",
        epilog="examples:\n"
               "  edgevla export --policy outputs/train/act/checkpoints/last/pretrained_model "
               "--out models/act\n"
               "  edgevla export --policy CKPT --precision vision=int8,prefill=int4,denoise=fp32\n"
               "  edgevla export --tiny smolvla --out /tmp/tiny   # random weights, no checkpoint\n"
               "  edgevla export --smolvla-base --no-litert   # smolvla_base's size, random weights")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--policy", metavar="CKPT", help="lerobot pretrained_model folder")
    src.add_argument("--tiny", choices=("act", "smolvla"),
                     help="build a tiny random-weight policy instead (tests, demos)")
    src.add_argument("--smolvla-base", action="store_true",
                     help="build SmolVLA at smolvla_base's published size (~450M parameters) with "
                          "random weights (benchmarks, memory; deploy/export/smolvla_base.py)")
    p.add_argument("--out", metavar="DIR", help="bundle directory (default: models/<policy>)")
    p.add_argument("--precision", default="", metavar="SPEC",
                   help="per-stage precision, e.g. vision=int8,prefill=int4,denoise=fp32 "
                        "(fp32|int8|int8-dynamic|int8-static|int4; default: vision/prefill int8, "
                        "denoise/decoder fp32)")
    p.add_argument("--fps", type=float, default=30.0, help="dataset fps: action i runs at t0 + i/fps")
    p.add_argument("--task",
                   help="language instruction baked into the SmolVLA bundle (default: the "
                        "--dataset's task when it has one, else 'pick up the bag and place it "
                        "in the box')")
    p.add_argument("--dataset", metavar="ROOT",
                   help="LeRobot dataset folder for int8 calibration and the parity check "
                        "(default: synthetic dataset-like frames)")
    p.add_argument("--samples", type=count(), default=8, help="calibration/parity samples (default 8)")
    p.add_argument("--units", choices=list(UNIT_SETS), default=None,
                   help="joint units of the dataset's state and action, recorded in the bundle: "
                        "radians (the sim's), so101-degrees (LeRobot SO follower, use_degrees=True), "
                        "so101-range (use_degrees=False). Default: what `--dataset` records, else "
                        "radians; a LeRobot SO-101 dataset needs it said")
    p.add_argument("--vlm", metavar="DIR",
                   help="SmolVLA: the backbone's config/processor/tokenizer folder, when the "
                        "checkpoint names a hub repo that is not in the local Hugging Face cache")
    p.add_argument("--stand-in-tokenizer", action="store_true",
                   help="SmolVLA from smolvla_base without its tokenizer files: build the backbone "
                        "from the shipped sizes (the task's token ids are not the real ones: for "
                        "timing, not for the robot)")
    p.add_argument("--no-litert", action="store_true", help="skip the LiteRT vision variant")
    p.add_argument("--no-check", action="store_true", help="skip the parity check")
    p.add_argument("--portable-onnx", action="store_true",
                   help="SmolVLA: standard ONNX ops only in prefill/denoise (default: RoPE and "
                        "attention as ONNX Runtime contrib nodes, faster, ONNX Runtime only)")
    p.add_argument("--model-id", metavar="ID",
                   help="the bundle's model id (chunks carry it; default: the checkpoint's run "
                        "folder and policy type)")
    p.add_argument("--rtc-vjp", action="store_true",
                   help="SmolVLA: also export the denoise step's vector-Jacobian product "
                        "(denoise_vjp.onnx), for real-time chunking's full correction "
                        "(denoise param rtc_correction: full)")
    p.set_defaults(func=_export)

    _add_bundle_parser(sub)


def _add_bundle_parser(sub) -> None:
    b = sub.add_parser(
        "bundle", help="package a model bundle for a board: graph, systemd units, README, tarball",
        description="Write a board bundle: model/ (the model bundle), graph.yaml (executor + M7 "
                    "bridge pinned apart from the inference cores), systemd units for the "
                    "supervisor and the M7 firmware (remoteproc), install.sh and README.md. "
                    "Run it on the board with `edgevla run BUNDLE`.")
    b.add_argument("--target", default="imx95",
                   help="board profile: imx95 (default), imx8mp, or host (no M7: the arm's Feetech "
                        "bus on a USB serial adapter, driven by the firmware's host build)")
    b.add_argument("--calibration", metavar="JSON",
                   help="the arm's LeRobot calibration file (lerobot-calibrate writes it); needed "
                        "when the model's joints are in LeRobot units")
    b.add_argument("--servo-device", metavar="TTY",
                   help="host target: the arm's serial port (default /dev/ttyACM0)")
    b.add_argument("--model", required=True, metavar="DIR", help="model bundle from `edgevla export`")
    b.add_argument("--out", required=True, metavar="DIR", help="new directory for the board bundle")
    b.add_argument("--firmware", metavar="ELF", help="M7 firmware image to include")
    b.add_argument("--denoise-steps", type=count(), help="SmolVLA denoising steps in the graph")
    b.add_argument("--no-tar", action="store_true", help="do not also write DIR.tar.gz")
    b.set_defaults(func=_bundle)


def _export(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rich.console import Console
    from rich.table import Table

    console = Console()
    try:
        policy, stats, out, model_id = _policy_to_export(args, console)
    except (FileNotFoundError, ValueError) as exc:
        print(f"edgevla export: {exc}", file=sys.stderr)
        return 2
    kind = exporter.policy_type(policy)
    stages = exporter.DEFAULT_PRECISION[kind]
    try:
        precision = parse_precision_spec(args.precision, stages) if args.precision else None
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    try:
        samples = (exporter.samples_from_dataset(args.dataset, policy, args.samples) if args.dataset
                   else exporter.synthetic_samples(policy, args.samples))
        joints = exporter.joint_units_for_export(args.units, args.dataset, args.policy)
        task = args.task or (exporter.dataset_task(args.dataset) if args.dataset else None) \
            or exporter.DEFAULT_TASK
    except (FileNotFoundError, ValueError) as exc:
        print(f"edgevla export: {exc}", file=sys.stderr)
        return 2
    with console.status("exporting") as st:
        manifest = exporter.export_bundle(
            policy, out, stats=stats, precision=precision, fps=args.fps, task=task,
            samples=samples, litert=not args.no_litert, model_id=model_id,
            progress=lambda s: st.update(s), portable_onnx=args.portable_onnx, joints=joints,
            rtc_vjp=args.rtc_vjp)
    table = Table(title=f"{kind} bundle -> {out}")
    for c in ("stage", "variant", "backend", "precision", "MB", "default", "err vs torch (rel)"):
        table.add_column(c)
    report: dict = {}
    if not args.no_check:
        with console.status("checking parity"):
            report = _parity_report(policy, stats, out, manifest, samples[: min(3, len(samples))])
        (out / "parity.json").write_text(json.dumps(report, indent=1))
    for s, spec in manifest.stages.items():
        for key, var in spec.variants.items():
            e = report.get(key, {}).get(s, {}).get("dataset_rel") if key in report else None
            table.add_row(s, key, var.backend, var.precision, f"{var.size_bytes / 1e6:.2f}",
                          "*" if key == spec.default else "", "" if e is None else f"{e:.2e}")
    console.print(table)
    if report:
        a = report["composed_fp32_vs_lerobot"]
        q = report["composed_chosen_vs_fp32"]
        unit = "rad" if set(manifest.joint_units) == {"radians"} else \
            "/".join(sorted(set(manifest.joint_units)))
        console.print(f"fp32 pipeline vs lerobot: max action error {a['action_max_abs']:.2e} {unit}; "
                      f"chosen precisions vs fp32: {q['action_max_abs']:.2e} {unit} "
                      f"({100 * q['action_max_frac_range']:.3f}% of joint range)")
        if a["action_max_abs"] > parity.ACTION_TOL_FP32_RAD:
            console.print(f"[red]parity check failed: fp32 pipeline differs from lerobot by more "
                          f"than {parity.ACTION_TOL_FP32_RAD} {unit}[/]")
            return 1
    return 0


def _policy_to_export(args, console):
    """(policy, stats, out dir, model id) from --policy, --tiny or --smolvla-base."""
    if args.smolvla_base:
        from edgevla.deploy.export import smolvla_base as sb  # torch: only when asked for

        with console.status("building smolvla_base-shaped SmolVLA (random weights)"):
            policy = sb.make_base_smolvla(sb.write_base_smolvlm(sb.stand_in_folder()))
        return policy, sl.tiny_stats(policy), Path(args.out or "models/smolvla-base"), \
            "smolvla-base-random"
    if args.tiny:
        out = Path(args.out or f"models/tiny-{args.tiny}")
        if args.tiny == "act":
            policy = sl.make_tiny_act()
        else:
            policy = sl.make_tiny_smolvla(sl.write_tiny_smolvlm(out.parent / f"{out.name}-vlm"))
        return policy, sl.tiny_stats(policy), out, f"tiny-{args.tiny}"
    with console.status(f"loading {args.policy}"):
        policy, stats = exporter.load_policy(args.policy, vlm=args.vlm,
                                             stand_in_tokenizer=args.stand_in_tokenizer)
    if stats is None:
        console.print("[yellow]warning: no normaliser stats in the checkpoint; the bundle "
                      "feeds raw values[/]")
    kind = exporter.policy_type(policy)
    return policy, stats, Path(args.out or f"models/{kind}"), \
        args.model_id or Path(args.policy).resolve().parent.name + "-" + kind


def _parity_report(policy, stats, out: Path, manifest, check: list) -> dict:
    """Every precision's stages against PyTorch, and the composed pipeline against lerobot
    (fp32) and against fp32 (the chosen precisions)."""
    report: dict = {}
    for key in ("fp32", "int8", "int4"):
        prec = {s: key for s, spec in manifest.stages.items() if key in spec.variants}
        if prec:
            report[key] = parity.stage_parity(policy, out, check, prec, random_inputs=False)
    chosen = {s: StageChoice(spec.default) for s, spec in manifest.stages.items()}
    report["composed_fp32_vs_lerobot"] = parity.composed_parity(
        policy, stats, out, check, {s: StageChoice("fp32", "onnxruntime")
                                     for s in manifest.stages}).as_dict()
    report["composed_chosen_vs_fp32"] = parity.composed_parity(
        policy, stats, out, check, chosen, reference="fp32").as_dict()
    return report


def _bundle(args) -> int:
    try:
        out = write_board_bundle(args.model, args.out, target=args.target, firmware=args.firmware,
                                 tarball=not args.no_tar, denoise_steps=args.denoise_steps,
                                 calibration=args.calibration, servo_device=args.servo_device)
    except (BundleError, FileNotFoundError) as exc:
        print(f"edgevla bundle: {exc}", file=sys.stderr)
        return 2
    print(f"board bundle written to {out}" + ("" if args.no_tar else f" and {out}.tar.gz"))
    if args.target == "host":
        print(f"run it: edgevla run {out}/graph.yaml   (the arm on its USB adapter; see {out}/README.md)")
    else:
        print(f"on the board: sudo {out.name}/install.sh && systemctl start edgevla "
              f"(or: edgevla run {out.name})")
    return 0
