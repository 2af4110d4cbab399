"""Terminal views of a running graph: the live table and the end-of-run summary."""

from __future__ import annotations

from typing import Any

from rich.table import Table

_STATE_STYLE = {"running": "green", "backoff": "yellow", "hung": "red", "failed": "bold red",
                "stopped": "dim", "exited": "dim", "pending": "dim"}


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def status_table(status: dict[str, Any], title: str | None = None) -> Table:
    t = Table(title=title or f"edgevla · {status.get('graph')} · up {status.get('uptime_s', 0):.0f}s",
              title_justify="left")
    for col in ("actor", "state", "pid", "rate tgt/act Hz", "loop p50/p99 ms", "restarts",
                "skipped", "dropped", "malformed", "RSS MB", "CPU s"):
        t.add_column(col, justify="right" if col not in ("actor", "state") else "left")
    for a in status.get("actors", []):
        style = _STATE_STYLE.get(a["state"], "")
        t.add_row(
            f"{a['actor']}.{a['replica']}", f"[{style}]{a['state']}[/]", _f(a["pid"], "{}"),
            f"{_f(a['rate_target_hz'], '{:g}')}/{_f(a['rate_actual_hz'])}",
            f"{_f(a['loop_p50_ms'], '{:.2f}')}/{_f(a['loop_p99_ms'], '{:.2f}')}",
            str(a["restarts"]), str(a["skipped"]), str(a["dropped_send"]), str(a["malformed"]),
            _f(a["rss_mb"], "{:.0f}"), _f(a["cpu_s"], "{:.1f}"),
        )
    return t
