"""The one bench harness: `edgevla bench NAME [--quick] [--json PATH]`.

A benchmark is a function ``run(quick: bool) -> BenchResult`` registered in `BENCHES` by
``"module:function"`` (imported lazily, so `edgevla bench bus` never imports torch). Each
benchmark measures its own baseline in the same run: machines here are noisy, so headline
figures are ratios. The harness prints the table and writes ``{"rows": [...], "summary": {...}}``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHES: dict[str, str] = {
    "bus": "edgevla.actors.bench.bus:run",
    "link": "edgevla.firmware_bridge.link.bench:run",
    "executor": "edgevla.actors.bench.executor:run",
    "inference": "edgevla.deploy.export.bench_inference:run",
    "recorder": "edgevla.actors.bench.recorder:run",
    "train-step": "edgevla.training.learn.bench_step:run",
}


@dataclass
class BenchResult:
    title: str
    rows: list[dict[str, Any]]
    summary: dict[str, float | int | str | bool | None]
    columns: list[str] | None = None  # table column order; default: keys of the first row
    notes: list[str] = field(default_factory=list)


def load(name: str):
    if name not in BENCHES:
        raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHES))}")
    module, func = BENCHES[name].split(":")
    return getattr(importlib.import_module(module), func)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_result(res: BenchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = res.columns or (list(res.rows[0].keys()) if res.rows else [])
    table = Table(title=res.title)
    for c in cols:
        table.add_column(c)
    for row in res.rows:
        table.add_row(*[_fmt(row.get(c, "")) for c in cols])
    console = Console()
    console.print(table)
    summary = Table(title="summary", show_header=False)
    for k, v in res.summary.items():
        summary.add_row(k, _fmt(v))
    console.print(summary)
    for n in res.notes:
        console.print(f"note: {n}")


def check_json_path(json_path: str) -> Path:
    """Refuse an unusable --json path before the benchmark spends minutes measuring."""
    p = Path(json_path)
    if p.is_dir():
        raise ValueError(f"--json {p}: is a directory (expected a file path, e.g. {p / 'bench.json'})")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(f"--json {p}: {parent} is not a writable directory")
    return p


def run_bench(name: str, quick: bool, json_path: str | None) -> BenchResult:
    """Run one benchmark; ``json_path`` is checked by the caller (`check_json_path`)."""
    fn = load(name)
    if json_path:  # a benchmark's plots go next to its JSON
        os.environ["EDGEVLA_BENCH_OUT"] = str(Path(json_path).parent)
    t0 = time.perf_counter()
    res: BenchResult = fn(quick=quick)
    elapsed = time.perf_counter() - t0
    print_result(res)
    if json_path:
        out = {
            "bench": name,
            "quick": quick,
            "elapsed_s": round(elapsed, 2),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "rows": res.rows,
            "summary": res.summary,
            "notes": res.notes,
        }
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=2, default=str))
        tmp.replace(path)  # whole or not at all
    return res


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark: table + JSON (rows, summary)",
                       description="Run one benchmark. Each measures its baseline in the same "
                                   "run and reports ratios. Known: " + ", ".join(sorted(BENCHES)))
    p.add_argument("name", help="benchmark name: " + ", ".join(sorted(BENCHES)))
    p.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    p.add_argument("--json", metavar="PATH", help="write rows and summary as JSON here")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    try:
        if args.json:
            check_json_path(args.json)
    except ValueError as exc:
        print(f"edgevla bench: {exc}", file=sys.stderr)
        return 2
    run_bench(args.name, args.quick, args.json)
    return 0
