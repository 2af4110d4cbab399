"""Whether a run went well, and why an actor restarted: pure functions over the final status.

`edgevla run` exits 0 only when every actor became healthy (sent a heartbeat) and none failed
or kept restarting; the summary names each restarted actor's last error line from its log.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgevla.actors.wire.control import ReplicaState

# An actor that restarted this often in one run "kept restarting", whatever its final state.
KEPT_RESTARTING = 3
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Down|Interrupt)\b.*")
_LOG_LINE = re.compile(r"^\S+ \S+ (\S+ )?(ERROR|CRITICAL) ")  # date time [actor.replica] LEVEL


def last_error_line(log_text: str) -> str | None:
    """The last line of an actor's log that says what went wrong: a Python exception line
    (``LinkDown: cannot open ...``) or an ERROR log record; None when there is none."""
    found = None
    for line in log_text.splitlines():
        s = line.strip()
        if _ERROR_LINE.match(s):
            found = s
        elif m := _LOG_LINE.match(s):
            found = s[m.start(2):]  # from the level on: the time and actor are known already
    return found[:300] if found else None


def tail_error(log_path: Path, max_bytes: int = 16384) -> str | None:
    """`last_error_line` over the end of a log file (None when it cannot be read)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    return last_error_line(text)


def problems(status: dict[str, Any], startup_grace_s: float = 30.0) -> list[str]:
    """One line per actor replica that makes the run a failure; empty for a good run.

    No heartbeat at all counts only in a run longer than ``startup_grace_s`` (the time the
    supervisor gives a model to load): a short run may end before a slow actor is up.
    """
    out = []
    long_enough = float(status.get("uptime_s", 0.0)) > startup_grace_s
    for a in status.get("actors", []):
        name = f"{a['actor']}.{a['replica']}"
        why = f": {a['last_error']}" if a.get("last_error") else ""
        if a.get("state") == ReplicaState.FAILED:
            out.append(f"{name} failed after {a.get('restarts', 0)} restart(s){why}")
        elif long_enough and not a.get("healthy_once", True):
            out.append(f"{name} never became healthy (no heartbeat){why}")
        elif a.get("restarts", 0) >= KEPT_RESTARTING:
            out.append(f"{name} kept restarting ({a['restarts']} restarts){why}")
        elif long_enough and a.get("outputs") and a.get("sent", 1) == 0:
            out.append(f"{name} produced nothing on {', '.join(a['outputs'])}{why}")
    return out


def restart_notes(status: dict[str, Any]) -> list[str]:
    """One line per replica that restarted at all, with its last error line."""
    return [f"{a['actor']}.{a['replica']}: {a['restarts']} restart(s), last error: "
            f"{a.get('last_error') or 'none in its log'}"
            for a in status.get("actors", []) if a.get("restarts", 0) > 0]
