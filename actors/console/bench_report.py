"""What every benchmark hands back and how it is shown: `BenchResult`, its rich table, and the
JSON file with ``rows`` and a flat ``summary`` (written whole or not at all)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevla.actors.console.output_files import write_json_whole


class BenchInputError(Exception):
    """A benchmark cannot run on what it was given (a missing model, a wrong file): one line
    for the person, exit 2."""


@dataclass
class BenchResult:
    title: str
    rows: list[dict[str, Any]]
    summary: dict[str, float | int | str | bool | None]
    columns: list[str] | None = None  # table column order; default: keys of the first row
    notes: list[str] = field(default_factory=list)


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


# The SIMD features that decide int8 / fp32 speed (x86 flags, Arm features)
SIMD_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                 "asimddp", "i8mm", "sve", "fphp")


def cpu_facts() -> dict[str, str]:
    """The CPU's model name and its SIMD features (comma-joined), from /proc/cpuinfo."""
    model, have = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")):
                have.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine(),
            "cpu_features": ",".join(f for f in SIMD_FEATURES if f in have)}


def write_json(path: Path, name: str, quick: bool, elapsed_s: float, res: BenchResult) -> None:
    out = {
        "bench": name,
        "quick": quick,
        "elapsed_s": round(elapsed_s, 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), **cpu_facts()},
        "rows": res.rows,
        "summary": res.summary,
        "notes": res.notes,
    }
    write_json_whole(path, out, indent=2)
