"""Where each topic lives: the one naming rule for endpoints, shared by runtime, replay and tools.

Every stream topic is bound by its producer, one socket per producer replica:
``ipc://<run_dir>/t.<topic>.<replica>.sock`` (or a tcp port from the graph's port map).
Consumers connect to every replica of the producer (ZeroMQ reconnects by itself when a
restarted producer binds again, so restarts need no rewiring). Work queues (inputs of
replicated actors) use the same rule with a ``.push`` suffix.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_IPC_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin


def _ipc(run_dir: str | Path, name: str) -> str:
    path = f"{Path(run_dir)}/{name}"
    if len(path) > _IPC_PATH_MAX:
        # Long names (deep run dirs, long topics) are hashed rather than failing to bind.
        path = f"{Path(run_dir)}/h.{hashlib.sha1(name.encode()).hexdigest()[:16]}.sock"
        if len(path) > _IPC_PATH_MAX:
            raise ValueError(f"run directory {run_dir} is too long for ipc sockets "
                             f"({len(path)} > {_IPC_PATH_MAX} bytes): use a shorter base dir")
    return f"ipc://{path}"


def topic_endpoint(run_dir: str | Path, topic: str, replica: int = 0, *, push: bool = False,
                   tcp_port: int | None = None, tcp_host: str = "127.0.0.1") -> str:
    if tcp_port is not None:
        return f"tcp://{tcp_host}:{tcp_port}"
    suffix = ".push" if push else ""
    return _ipc(run_dir, f"t.{topic.replace('/', '~')}.{replica}{suffix}.sock")


def control_endpoint(run_dir: str | Path, actor: str, replica: int = 0) -> str:
    return _ipc(run_dir, f"c.{actor}.{replica}.sock")


def heartbeat_endpoint(run_dir: str | Path) -> str:
    return _ipc(run_dir, "supervisor.hb.sock")


def supervisor_endpoint(run_dir: str | Path) -> str:
    return _ipc(run_dir, "supervisor.ctl.sock")


def inject_endpoint(run_dir: str | Path, topic: str) -> str:
    """Where a fault-injection test binds to reach every subscriber of ``topic``."""
    return _ipc(run_dir, f"inject.{topic.replace('/', '~')}.sock")
