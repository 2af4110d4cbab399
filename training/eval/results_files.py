"""The files an evaluation leaves: results.md (tables), results.json, and on request the contact
sheet and per-episode videos."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgevla.training.eval.figures import contact_sheet, write_videos
from edgevla.training.eval.report import EvalReport
from edgevla.training.eval.rollouts import EpisodeResult
from edgevla.training.eval.significance import PairedComparison, paired_comparisons


def paired_markdown(pairs: list[PairedComparison]) -> str:
    lines = ["", "Async vs sync on the same starts (exact McNemar test on the episodes only one mode solved):", "",
             "| simulated latency (ms) | pairs | both solved | only sync | only async | neither | p | verdict |",
             "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in pairs:
        lat = "-" if c.simulated_latency_ms is None else f"{c.simulated_latency_ms:.0f}"
        lines.append(f"| {lat} | {c.pairs} | {c.both} | {c.only_sync} | {c.only_async} | {c.neither} | "
                     f"{c.p_value:.2f} | {c.verdict()} |")
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| policy | format | mode | latency (ms, this CPU) | success test | val | global [95% CI] "
             "| episodes (test/val) "
             "| simulated latency (ms) | actions executed per chunk | task time (s, successes) "
             "| idle fraction | idle after the first chunk |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        sim = r.get("simulated_latency_ms")
        tt = r.get("task_time_s")
        ci = r.get("global_ci95")
        ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and not math.isnan(ci[0]) else ""
        lines.append(f"| {r['policy']} | {r['format']} | {r['mode']} | {r['latency_ms']:.1f} | {r['test']:.2f} | "
                     f"{r['val']:.2f} | {r['global']:.2f}{ci_text} | {r['n_test']}/{r['n_val']} | "
                     f"{'-' if sim is None else f'{sim:.0f}'} | {r.get('actions_per_chunk') or 'all'} | "
                     f"{'-' if tt is None else f'{tt:.2f}'} | "
                     f"{r.get('idle_fraction', 0.0):.3f} | {r.get('running_idle_fraction', 0.0):.3f} |")
    return "\n".join(lines) + "\n"


def write_outputs(reports: list[EvalReport], out: Path, contact: list[EpisodeResult] | None = None,
                  videos: bool = False, fps: int = 30) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in reports]
    pairs = paired_comparisons(reports)
    paths = {"markdown": out / "results.md", "json": out / "results.json"}
    paths["markdown"].write_text(markdown_table(rows) + (paired_markdown(pairs) if pairs else ""))
    paths["json"].write_text(json.dumps({"rows": rows, "paired": [asdict(c) for c in pairs],
                                         "runs": [asdict(r) for r in reports]}, indent=1))
    if contact:
        paths["contact_sheet"] = contact_sheet(contact, out / "contact_sheet.png")
        if videos:
            paths["videos"] = write_videos(contact, out / "videos", fps)
    return paths
