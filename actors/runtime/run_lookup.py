"""Finding a run and talking to its supervisor: the client side of `edgevla status/scale/stop`.

A live supervisor keeps a pid file in its run directory and points ``<base>/current`` at the
newest run started; these functions read that and send one control request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import zmq

from edgevla.actors.console.output_files import write_text_whole
from edgevla.actors.wire import endpoints as ep
from edgevla.actors.wire.bus import request, run_base

SUPERVISOR_PID_FILE = "supervisor.pid"  # in the run dir while its supervisor runs


def announce_run(run_dir: Path) -> None:
    """Let `edgevla status/scale/stop` find this run: its pid file says it is live (until the
    supervisor stops and removes it), the ``current`` pointer names the newest run started."""
    (run_dir / SUPERVISOR_PID_FILE).write_text(str(os.getpid()))
    write_text_whole(run_dir.parent / "current", str(run_dir))


def run_is_live(run_dir: Path) -> bool:
    """Its supervisor wrote a pid file that `stop` has not removed, and that process lives."""
    try:
        pid = int((run_dir / SUPERVISOR_PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def live_runs(base_dir: str | None = None) -> list[Path]:
    """Run directories with a live supervisor, newest first."""
    base = run_base(base_dir)
    runs = [d for d in base.iterdir() if d.is_dir() and run_is_live(d)] if base.is_dir() else []
    return sorted(runs, key=lambda d: d.stat().st_mtime, reverse=True)


def find_run_dir(run_dir: str | None = None, base_dir: str | None = None) -> Path:
    """The run a command talks to: ``run_dir`` (a path, or a run's name under the base
    directory) or else the newest live run. FileNotFoundError says which is missing or ended."""
    base = run_base(base_dir)
    if run_dir:
        rd = Path(run_dir)
        if not rd.is_dir() and (base / run_dir).is_dir():
            rd = base / run_dir
        if not rd.is_dir():
            raise FileNotFoundError(f"no run {run_dir!r} (neither a directory nor a run under "
                                    f"{base}); live runs: {_names(live_runs(base_dir))}")
        if not run_is_live(rd):
            raise FileNotFoundError(f"run {rd.name} has ended (summary: {rd / 'status.json'}); "
                                    f"live runs: {_names(live_runs(base_dir))}")
        return rd
    live = live_runs(base_dir)
    if not live:
        raise FileNotFoundError(f"nothing is running (no live edgevla run under {base}); start "
                                f"one with `edgevla run GRAPH`")
    return live[0]


def _names(runs: list[Path]) -> str:
    return ", ".join(d.name for d in runs) or "none"


def supervisor_request(payload: dict[str, Any], run_dir: str | None = None,
                       timeout_ms: int = 2000) -> dict[str, Any]:
    rd = find_run_dir(run_dir)
    ctx = zmq.Context.instance()
    reply = request(ctx, ep.supervisor_endpoint(rd), payload, timeout_ms=timeout_ms)
    if reply is None:
        raise TimeoutError(f"supervisor at {rd} did not answer within {timeout_ms} ms "
                           f"(is it still running?)")
    return reply
