"""One process of an actor as the supervisor tracks it, and the signals that end it."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevla.actors.runtime.graph import ActorConfig
from edgevla.actors.wire.control import ReplicaState


@dataclass
class Replica:
    actor: ActorConfig
    index: int
    spec_path: Path
    log_path: Path
    popen: subprocess.Popen | None = None
    state: ReplicaState = ReplicaState.PENDING
    restarts: int = 0
    consecutive_failures: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    last_heartbeat_at: float = 0.0
    last_stats: dict[str, Any] = field(default_factory=dict)
    last_exit: int | None = None
    last_error: str | None = None  # the last error line of its log, read when it exited
    healthy_once: bool = False  # a heartbeat has arrived from some incarnation of it
    events: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.actor.name}.{self.index}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen and self.popen.poll() is None else None


def kill(p: subprocess.Popen | None, sig: int) -> None:
    """Signal ``p`` if it still runs; one that died meanwhile is no error."""
    if p is not None and p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def terminate(p: subprocess.Popen, timeout_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    kill(p, signal.SIGTERM)
    try:
        p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(p, signal.SIGKILL)
        p.wait(timeout=5)
