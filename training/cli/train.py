"""`edgevla train`, `edgevla eval`, `edgevla train-default`.

torch, lerobot and mujoco are imported inside the handlers only (the CLI must start fast).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgevla.actors.console.help_format import DefaultsHelpFormatter
from edgevla.actors.console.values import number_list
from edgevla.deploy.bundle.manifest import load_manifest
from edgevla.deploy.bundle.model_path import is_bundle
from edgevla.deploy.export.exporter import export_bundle, read_stats
from edgevla.training.eval.chunk_policies import open_policy
from edgevla.training.eval.eval_config import EvalConfig
from edgevla.training.eval.evaluate import evaluate
from edgevla.training.eval.figures import latency_sweep_plot
from edgevla.training.eval.results_files import write_outputs
from edgevla.training.learn.checkpoints import load_policy, resolve_pretrained_dir
from edgevla.training.learn.train import train
from edgevla.training.learn.train_config import TrainConfig


def _offline_env() -> None:
    # Nothing here may reach a hub; local caches only (Makefile sets the same).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")


def add_parser(sub) -> None:
    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_train_default_parser(sub)


def _add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune lerobot ACT or SmolVLA on a LeRobot dataset (CPU, resumable)",
        description=(
            "Train lerobot 0.4.4's ACT or SmolVLA (real classes, processors and dataset loader) on a "
            "local LeRobot dataset. Defaults mirror the reference recipe (batch 8, checkpoint every "
            "--save-every steps, ACT chunk 100, SmolVLA chunk 50) with model sizes that train on a "
            "2-core CPU. Writes OUT/checkpoints/NNNNNN/pretrained_model (reloadable offline), "
            "OUT/loss.json and OUT/loss.png. Run again with --resume to continue from "
            "OUT/checkpoints/last (e.g. with a larger --steps)."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--policy", choices=("act", "smolvla"), default=None, help="policy type (default act)")
    p.add_argument("--dataset", default=None, help="LeRobot dataset folder (meta/info.json inside)")
    p.add_argument("--out", default=None, help="run folder for checkpoints, loss curve and config")
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 8, as the reference)")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint period in steps (default 500)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the policy config's)")
    p.add_argument("--num-workers", type=int, default=None, help="dataloader worker processes (default 1)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default=None,
                   help="YAML/JSON file of TrainConfig fields (policy_overrides: {dim_model: 256, ...}); "
                        "command-line flags win")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one lerobot policy config field, e.g. --set chunk_size=50 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoints/last")
    p.add_argument("--init-from", default=None, metavar="RUN_OR_CKPT",
                   help="warm start a new run from another run's weights and optimizer moments (same "
                        "architecture; normaliser from --dataset, so both datasets need the same kind of "
                        "image statistics), e.g. to move on to a bigger recording")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    p.set_defaults(func=cmd_train)


def _add_eval_parser(sub) -> None:
    e = sub.add_parser(
        "eval",
        help="closed-loop success in the sim (test / held-out val / global), results table",
        description=(
            "Roll a policy out in the simulated tea-bag scene from the protocol's start positions "
            "(a different seed than recording): test = training clusters, val = the held-out "
            "cluster, global = both. --mode sync captures, infers and executes the whole chunk; "
            "--mode async runs the executor core (blending, staleness by time) on a virtual clock "
            "with the inference latency simulated. Writes results.md and results.json."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    e.add_argument("--policy", required=True, help="training run / checkpoint folder, or exported bundle")
    e.add_argument("--episodes", type=int, default=20, help="test episodes (and val episodes unless --val-episodes)")
    e.add_argument("--val-episodes", type=int, default=None)
    e.add_argument("--mode", choices=("sync", "async", "both"), default="sync")
    e.add_argument("--latency-ms", type=_latency_list, default=None,
                   help="simulated inference latency, both modes: sync holds the arm still for it "
                        "after each capture, async gets each chunk this much later (default: the "
                        "measured median here). A comma list (e.g. 50,320,1500,2860: 320 and 2860 "
                        "are ACT optimised / ONNX FP32 on an i.MX 95 CPU) runs every latency and "
                        "also writes latency_sweep.png")
    e.add_argument("--strategy", default="crossfade", help="async: executor blending strategy")
    e.add_argument("--crossfade-ms", type=float, default=200.0, help="async: crossfade length")
    e.add_argument("--request-margin", type=float, default=1.5,
                   help="async: ask for the next chunk this many measured latencies before the "
                        "current one runs out")
    e.add_argument("--actions-per-chunk", type=_count_list, default=None, metavar="N[,N...]",
                   help="execute only the first N actions of each chunk (default: the policy's "
                        "n_action_steps); a comma list runs each, e.g. 100,50,25,10")
    e.add_argument("--max-seconds", type=float, default=15.0, help="episode time limit (sim seconds)")
    e.add_argument("--protocol-seed", type=int, default=1000, help="seed of the evaluation start positions")
    e.add_argument("--out", default="out/eval", help="folder for results.md/json, contact sheet, videos")
    e.add_argument("--contact-sheet", action="store_true", help="write contact_sheet.png of every episode")
    e.add_argument("--videos", action="store_true", help="write an mp4 per episode (3 cameras side by side)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_eval)


def _add_train_default_parser(sub) -> None:
    d = sub.add_parser(
        "train-default",
        help="record the default dataset, train the shipped small ACT, evaluate, export",
        description=(
            "The recipe of models/default: record the protocol's dataset with `edgevla dataset "
            "record`, train a small ACT, evaluate it closed loop (sync and async), export it through "
            "deploy/ when available, and write OUT/README.md with the measured numbers and times."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    d.add_argument("--out", default="models/default")
    d.add_argument("--work", default="out/train-default", help="scratch folder (dataset, run, eval)")
    d.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    d.add_argument("--episodes", type=int, default=None, help="eval episodes per split (recipe default)")
    d.add_argument("--dataset", default=None, help="reuse an already recorded dataset instead of recording")
    d.add_argument("--resume", action="store_true", help="continue an interrupted run in --work")
    d.set_defaults(func=cmd_train_default)


def _parse_sets(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except (yaml.YAMLError, ValueError) as exc:
            raise SystemExit(f"--set {item!r}: the value is not valid YAML: "
                             f"{getattr(exc, 'problem', None) or exc}") from None
    return out


def cmd_train(args) -> int:
    _offline_env()

    flags = {
        "policy": args.policy, "dataset": args.dataset, "out": args.out, "steps": args.steps,
        "batch_size": args.batch_size, "save_every": args.save_every, "lr": args.lr,
        "num_workers": args.num_workers, "seed": args.seed, "init_from": args.init_from,
    }
    try:
        cfg = TrainConfig.from_file(args.config, **flags) if args.config else TrainConfig(
            **{k: v for k, v in flags.items() if v is not None})
        if args.set:
            cfg.policy_overrides = {**cfg.policy_overrides, **_parse_sets(args.set)}
        if not cfg.dataset or not cfg.out:
            print("edgevla train: --dataset and --out are required", file=sys.stderr)
            return 2
        result = train(cfg, resume=args.resume, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"edgevla train: {exc}", file=sys.stderr)
        return 2
    print(f"trained {cfg.policy} {result.steps_done} steps in {result.seconds:.0f} s; loss "
          f"{result.first_loss:.4f} -> {result.last_loss:.4f}")
    print(f"checkpoint: {result.last_checkpoint}/pretrained_model   loss curve: {result.out / 'loss.png'}")
    return 0


_latency_list = number_list(float, "milliseconds", 0, "320 or 50,320,1500")
_count_list = number_list(int, "counts", 1, "25 or 100,50,25")


def cmd_eval(args) -> int:
    _offline_env()
    from rich.console import Console
    from rich.markdown import Markdown

    modes = ("sync", "async") if args.mode == "both" else (args.mode,)
    keep = args.contact_sheet or args.videos
    latencies = args.latency_ms or [None]
    try:
        policy = open_policy(args.policy)
        reports, shown = [], []
        runs = [(lat, n, mode) for lat in latencies for n in (args.actions_per_chunk or [None])
                for mode in modes]
        for latency, n_exec, mode in runs:
            cfg = EvalConfig(episodes=args.episodes, val_episodes=args.val_episodes, mode=mode,
                             latency_ms=latency, strategy=args.strategy,
                             crossfade_ms=args.crossfade_ms,
                             request_latency_margin=args.request_margin,
                             actions_per_chunk=n_exec,
                             max_seconds=args.max_seconds, protocol_seed=args.protocol_seed,
                             frames_every=3 if keep else 0)
            report, episodes = evaluate(args.policy, cfg, progress=not args.no_progress, policy=policy)
            reports.append(report)
            shown = shown or episodes
            # Written after every run, so a long sweep that dies later keeps what it measured.
            paths = write_outputs(reports, Path(args.out), contact=shown if keep else None,
                                  videos=args.videos, fps=policy.fps)
        if len(latencies) > 1:
            paths["latency_sweep"] = latency_sweep_plot([r.row() for r in reports],
                                                        Path(args.out) / "latency_sweep.png")
    except (ValueError, FileNotFoundError) as exc:
        print(f"edgevla eval: {exc}", file=sys.stderr)
        return 2
    text = paths["markdown"].read_text()
    console = Console()
    if sys.stdout.isatty() and console.width >= 160:
        console.print(Markdown(text))
    else:  # narrow or piped: the markdown as written, never a number cut to "0.…"
        print(text)
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_train_default(args) -> int:
    _offline_env()
    recipe = DefaultRecipe()
    if args.steps is not None:
        recipe.steps = args.steps
    if args.episodes is not None:
        recipe.eval_episodes = args.episodes
    try:
        summary = run_recipe(recipe, out=Path(args.out), work=Path(args.work), dataset=args.dataset,
                             resume=args.resume)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"edgevla train-default: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


# ------------------------------------------------------------------------ the default model


@dataclass
class DefaultRecipe:
    """How models/default is made. Sized for the 2-core CPU this project is developed on."""

    # dataset: the reference protocol's clusters (11 of 10x10 cm, cluster 6 held out and not
    # recorded at all) at the recorder's default 96x96 and 30 fps; 10 episodes per training
    # cluster (8 normal + 2 recovery, 20%) of the reference's 12: 100 episodes, ~10 min here.
    record_args: tuple[str, ...] = ("--only-clusters", "0,1,2,3,4,5,7,8,9,10", "--per-cluster", "10")
    steps: int = 30000
    batch_size: int = 8
    save_every: int = 500
    lr: float = 2e-4
    # Stop and keep the last checkpoint after 100 minutes (0.6-0.85 s/step measured on 2 cores
    # with bf16 autocast, the data worker included; resume with `make train-default` again).
    time_budget_s: float = 6000.0
    bf16_autocast: bool = True
    policy_overrides: dict = field(default_factory=dict)  # ActSize defaults (dim 128, chunk 100)
    eval_episodes: int = 10  # per split: one test start in each training cluster, 10 held-out
    export_args: tuple[str, ...] = ("--no-litert",)  # deploy's default precisions (vision int8 variant)
    max_weights_mb: float = 20.0
    max_bundle_mb: float = 25.0


def _export_in_process(ckpt: Path, bundle: Path, info: dict) -> None:
    # Same exporter, loaded through training.train.load_policy (which registers lerobot's policy
    # configs before reading config.json).

    policy, _, _ = load_policy(ckpt)
    export_bundle(policy, bundle, stats=read_stats(ckpt), fps=float(info.get("fps", 30)),
                  task=str(info.get("task", "put the tea bag in the mug")), litert=False,
                  model_id="edgevla-default-act")


def trim_bundle(bundle: Path, max_mb: float) -> list[str]:
    """Drop non-default stage variants, largest first, until the bundle fits in `max_mb`.

    The repository carries tens of MB at most; the runtime only needs each stage's default.
    Returns the files removed. The manifest is rewritten and re-validated by deploy's loader.
    """

    manifest = load_manifest(bundle)
    removed: list[str] = []

    def total_mb() -> float:
        return sum(f.stat().st_size for f in bundle.iterdir() if f.is_file()) / 1e6

    optional = sorted(
        ((name, key, var) for name, spec in manifest.stages.items() for key, var in spec.variants.items()
         if key != spec.default),
        key=lambda item: -(bundle / item[2].file).stat().st_size,
    )
    for name, key, var in optional:
        if total_mb() <= max_mb:
            break
        del manifest.stages[name].variants[key]
        (bundle / var.file).unlink()
        removed.append(var.file)
        manifest.save(bundle)
    load_manifest(bundle)
    return removed


class _AlreadyExported(Exception):
    """The bundle was exported beforehand (e.g. in parallel with the evaluation)."""


def _run(cmd: list[str], log: Path) -> None:
    # Each stage is the project's own CLI, so the recipe is exactly what a person would type.
    with log.open("a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {rc}; see {log}")


def run_recipe(recipe: DefaultRecipe, out: Path, work: Path, dataset: str | None = None,
               resume: bool = False) -> dict:
    """record -> train -> eval (sync + async) -> export -> write `out` (README, config, results)."""
    exe = shutil.which("edgevla") or str(Path(sys.executable).with_name("edgevla"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "train-default.log"
    times: dict[str, float] = {}
    commands: list[str] = []

    t = time.monotonic()
    ds = Path(dataset) if dataset else work / "dataset"
    if not dataset and not (ds / "meta" / "info.json").is_file():
        cmd = [exe, "dataset", "record", "--out", str(ds), "--no-progress", *recipe.record_args]
        commands.append(" ".join(cmd[1:]))
        _run(cmd, log)
    times["record_s"] = time.monotonic() - t

    t = time.monotonic()
    run_dir = work / "run"
    cfg_file = work / "train_config.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump({
        "policy": "act", "dataset": str(ds), "out": str(run_dir), "steps": recipe.steps,
        "batch_size": recipe.batch_size, "save_every": recipe.save_every, "lr": recipe.lr,
        "time_budget_s": recipe.time_budget_s, "policy_overrides": dict(recipe.policy_overrides),
        "bf16_autocast": recipe.bf16_autocast,
    }))
    cmd = [exe, "train", "--config", str(cfg_file), "--no-progress"]
    if resume or (run_dir / "checkpoints" / "last").exists():
        cmd.append("--resume")
    commands.append(" ".join(cmd[1:]))
    _run(cmd, log)
    times["train_s"] = time.monotonic() - t

    t = time.monotonic()
    eval_dir = work / "eval"
    cmd = [exe, "eval", "--policy", str(run_dir), "--episodes", str(recipe.eval_episodes), "--mode", "both",
           "--out", str(eval_dir), "--contact-sheet", "--no-progress"]
    commands.append(" ".join(cmd[1:]))
    _run(cmd, log)
    times["eval_s"] = time.monotonic() - t

    return package_default_model(run_dir, eval_dir, out, recipe, commands, times, work, exe, log)


def package_default_model(run_dir: Path, eval_dir: Path, out: Path, recipe: DefaultRecipe,
                          commands: list[str], times: dict[str, float], work: Path, exe: str,
                          log: Path, export: bool = True) -> dict:
    """Copy the checkpoint (and the export when deploy/ provides one) into `out` with its papers."""

    ckpt = resolve_pretrained_dir(run_dir)
    info = json.loads((ckpt / "edgevla.json").read_text()) if (ckpt / "edgevla.json").is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    target = out / "checkpoint"
    if target.exists():
        shutil.rmtree(target)
    weights_mb = (ckpt / "model.safetensors").stat().st_size / 1e6
    # The repository carries tens of MB at most: the exported bundle is what the runtime needs;
    # the PyTorch weights (resnet18 backbone alone is ~45 MB) ship only when they are small.
    ignore = None if weights_mb <= recipe.max_weights_mb else shutil.ignore_patterns("model.safetensors")
    shutil.copytree(ckpt, target, ignore=ignore)
    export_note = ""
    bundle = out / "bundle"
    t = time.monotonic()
    try:
        if not export:
            if not is_bundle(bundle):
                raise RuntimeError(f"{bundle}: no exported bundle (manifest.json) to package")
            raise _AlreadyExported
        if bundle.exists():
            shutil.rmtree(bundle)
        cmd = [exe, "export", "--policy", str(ckpt), "--out", str(bundle), "--fps", str(info.get("fps", 30)),
               "--task", str(info.get("task", "put the tea bag in the mug")), *recipe.export_args]
        if info.get("dataset") and Path(info["dataset"]).is_dir():
            cmd += ["--dataset", str(info["dataset"])]
        _run(cmd, log)
        commands.append(" ".join(cmd[1:]))
        times["export_s"] = time.monotonic() - t
    except _AlreadyExported:
        pass
    except RuntimeError as exc:
        export_note = f"`edgevla export` failed: {exc}"
        if bundle.exists():
            shutil.rmtree(bundle)
        try:
            _export_in_process(ckpt, bundle, info)
            export_note += "; exported in-process with deploy.exporter.export_bundle instead"
            times["export_s"] = time.monotonic() - t
        except Exception as exc2:  # noqa: BLE001 - the note records why; the checkpoint still ships
            export_note += f"; in-process export failed too: {exc2!r}"
            if bundle.exists():
                shutil.rmtree(bundle)
    if bundle.exists():
        removed = trim_bundle(bundle, recipe.max_bundle_mb)
        if removed:
            export_note = (export_note + "; " if export_note else "") + (
                f"dropped non-default variants {removed} to stay under {recipe.max_bundle_mb:.0f} MB")
    results = json.loads((eval_dir / "results.json").read_text())
    for name in ("results.md", "results.json", "contact_sheet.png"):
        if (eval_dir / name).is_file():
            shutil.copy2(eval_dir / name, out / name)
    for name in ("loss.png", "train_config.json"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    history = json.loads((run_dir / "loss.json").read_text())
    summary = {
        "checkpoint": str(target), "checkpoint_weights_included": ignore is None,
        "weights_mb": round(weights_mb, 1), "bundle": str(bundle) if bundle.exists() else None,
        "export_note": export_note, "steps": history["losses"][-1][0] if history["losses"] else 0,
        "train_seconds_total": history.get("seconds_total"), "times_s": times, "commands": commands,
        "results": results["rows"], "recipe": asdict(recipe),
    }
    (out / "recipe.json").write_text(json.dumps(summary, indent=1))
    return summary
