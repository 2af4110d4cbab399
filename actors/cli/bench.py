"""`edgevla bench NAME [--quick] [--json PATH]`: the one benchmark command.

A benchmark is a function ``run(quick: bool) -> BenchResult`` named in `BENCHES` as
``"module:function"`` and imported only when asked for, so `edgevla bench bus` never imports
torch. Each benchmark measures its own baseline in the same run: machines are noisy, so the
headline figures are ratios.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

from edgevla.actors.console.bench_report import (BenchInputError, BenchResult, check_json_path, print_result,
                                                 write_json)

BENCHES: dict[str, str] = {
    "bus": "edgevla.actors.bench.bus:run",
    "link": "edgevla.firmware_bridge.link.bench:run",
    "executor": "edgevla.actors.bench.executor:run",
    "inference": "edgevla.deploy.export.bench_inference:run",
    "recorder": "edgevla.actors.bench.recorder:run",
    "rtc": "edgevla.actors.bench.rtc:run",
    "train-step": "edgevla.training.learn.bench_step:run",
}


def load(name: str):
    if name not in BENCHES:
        raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHES))}")
    module, func = BENCHES[name].split(":")
    return getattr(importlib.import_module(module), func)


# benchmarks that take a model size (`--size`)
SIZED = {"inference": ("small", "base")}


def run_bench(name: str, quick: bool, json_path: str | None, size: str | None = None) -> BenchResult:
    """Run one benchmark; ``json_path`` is checked by the caller (`check_json_path`)."""
    fn = load(name)
    if json_path:  # a benchmark's plots go next to its JSON
        os.environ["EDGEVLA_BENCH_OUT"] = str(Path(json_path).parent)
    t0 = time.perf_counter()
    res: BenchResult = fn(quick=quick, size=size) if size else fn(quick=quick)
    elapsed = time.perf_counter() - t0
    print_result(res)
    if json_path:
        write_json(Path(json_path), name, quick, elapsed, res)
    return res


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark: table + JSON (rows, summary)",
                       description="Run one benchmark. Each measures its baseline in the same "
                                   "run and reports ratios. Known: " + ", ".join(sorted(BENCHES)))
    p.add_argument("name", choices=sorted(BENCHES), metavar="NAME",
                   help="benchmark name: " + ", ".join(sorted(BENCHES)))
    p.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    p.add_argument("--json", metavar="PATH", help="write rows and summary as JSON here")
    p.add_argument("--size", choices=("small", "base"),
                   help="inference only: small configs (default) or SmolVLA at smolvla_base's "
                        "published size (~450M parameters; export, quantization and timing take "
                        "about 8 minutes on 2 cores)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    try:
        if args.json:
            check_json_path(args.json)
        if args.size and args.name not in SIZED:
            raise ValueError(f"--size: only {', '.join(SIZED)} takes a model size, not {args.name}")
    except ValueError as exc:
        print(f"edgevla bench: {exc}", file=sys.stderr)
        return 2
    try:
        run_bench(args.name, args.quick, args.json, getattr(args, "size", None))
    except BenchInputError as exc:
        print(f"edgevla bench {args.name}: {exc}", file=sys.stderr)
        return 2
    return 0
