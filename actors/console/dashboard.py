"""Terminal views of a running graph: the live table and the end-of-run summary.

Below 100 columns the table switches to a compact layout (actor, state, rate, restarts, RSS);
cells fold instead of being cut, so no number is ever shown as "148…".
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from edgevla.actors.console.tables import COMPACT_BELOW_COLUMNS
from edgevla.actors.wire.control import ReplicaState

_STATE_STYLE = {ReplicaState.RUNNING: "green", ReplicaState.BACKOFF: "yellow", ReplicaState.HUNG: "red",
                ReplicaState.FAILED: "bold red", ReplicaState.STOPPED: "dim", ReplicaState.EXITED: "dim",
                ReplicaState.PENDING: "dim"}


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _rate(a: dict[str, Any]) -> str:
    # an actor without a loop rate runs when its trigger input arrives ("event")
    target = "event" if a["rate_target_hz"] is None else _f(a["rate_target_hz"], "{:g}")
    return f"{target}/{_f(a['rate_actual_hz'])}"


def _sent(a: dict[str, Any]) -> str:
    # an actor with outputs that has published nothing stands out
    n = a.get("sent")
    if n is None:
        return "-"
    return f"[yellow]{n}[/]" if n == 0 and a.get("outputs") else str(n)


def _rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """This machine's actors, then every other machine's as last heard (``machine:`` before
    the name); a machine not heard from lately is one ``unreachable`` row."""
    rows = list(status.get("actors", []))
    here = status.get("machine")
    if here:
        rows = [{**a, "machine": f"{here}:"} for a in rows]
    for m, peer in (status.get("peers") or {}).items():
        if not peer.get("reachable"):
            age = peer.get("age_s")
            rows.append({"machine": f"{m}:", "actor": f"({peer.get('address')})", "replica": "*",
                         "state": "unreachable", "age_s": age})
            continue
        rows += [{**a, "machine": f"{m}:"} for a in peer.get("actors", [])]
    return rows


def status_table(status: dict[str, Any], title: str | None = None,
                 width: int | None = None) -> Table:
    """The actors of ``status`` as a table; ``width`` (terminal columns) picks the layout."""
    compact = width is not None and width < COMPACT_BELOW_COLUMNS
    t = Table(title=title or f"edgevla · {status.get('graph')} · up {status.get('uptime_s', 0):.0f}s",
              title_justify="left")
    cols = (("actor", "state", "Hz tgt/act", "sent", "restarts", "RSS MB") if compact else
            ("actor", "state", "pid", "rate tgt/act Hz", "loop p50/p99 ms", "sent", "restarts",
             "skipped", "dropped", "malformed", "RSS MB", "CPU s"))
    for col in cols:
        t.add_column(col, justify="right" if col not in ("actor", "state") else "left",
                     overflow="fold")
    for a in _rows(status):
        style = _STATE_STYLE.get(a["state"], "red")
        name, state = f"{a.get('machine', '')}{a['actor']}.{a['replica']}", f"[{style}]{a['state']}[/]"
        if a["state"] == "unreachable":
            heard = "never heard" if a["age_s"] is None else f"last heard {a['age_s']:.0f}s ago"
            t.add_row(f"{a['machine']} {a['actor']}", f"[red]unreachable ({heard})[/]",
                      *["-"] * (len(cols) - 2))
            continue
        if compact:
            t.add_row(name, state, _rate(a), _sent(a), str(a["restarts"]), _f(a["rss_mb"], "{:.0f}"))
            continue
        t.add_row(
            name, state, _f(a["pid"], "{}"), _rate(a),
            f"{_f(a['loop_p50_ms'], '{:.2f}')}/{_f(a['loop_p99_ms'], '{:.2f}')}",
            _sent(a), str(a["restarts"]), str(a["skipped"]), str(a["dropped_send"]), str(a["malformed"]),
            _f(a["rss_mb"], "{:.0f}"), _f(a["cpu_s"], "{:.1f}"),
        )
    arm = arm_line(status)
    if arm:
        t.caption, t.caption_justify = arm, "left"
    return t


def arm_line(status: dict[str, Any]) -> str:
    """The arm as the M7 (or the host firmware) last reported it, from the executor's stats:
    mode and faults, red when it is not running freely. Empty without a firmware link."""
    for a in status.get("actors", []):
        mcu = (a.get("actor_stats") or {}).get("mcu") or {}
        if "mode" not in mcu:
            continue
        mode, faults = mcu["mode"], mcu.get("faults", "none")
        bad = mode != "RUNNING" or any(f in faults for f in ("SERVO", "WATCHDOG"))
        text = f"arm: {mode}, faults: {faults}"
        if "SERVO_ERROR" in faults:
            text += " (a servo stopped answering or reported overload/overheat: the arm holds; " \
                    "torque goes off after the firmware's torque_off_ms)"
        return f"[red]{text}[/]" if bad else text
    return ""
