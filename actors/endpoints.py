"""Where each topic lives: the one naming rule for endpoints, shared by runtime, replay and tools.

Every stream topic is bound by its producer, one socket per producer replica:
``ipc://<run_dir>/t.<topic>.<replica>.sock`` (or a tcp port from the graph's port map).
Consumers connect to every replica of the producer (ZeroMQ reconnects by itself when a
restarted producer binds again, so restarts need no rewiring). Work queues (inputs of
replicated actors) use the same rule with a ``.push`` suffix.
"""

from __future__ import annotations

from pathlib import Path


def topic_endpoint(run_dir: str | Path, topic: str, replica: int = 0, *, push: bool = False,
                   tcp_port: int | None = None, tcp_host: str = "127.0.0.1") -> str:
    if tcp_port is not None:
        return f"tcp://{tcp_host}:{tcp_port}"
    suffix = ".push" if push else ""
    return f"ipc://{Path(run_dir)}/t.{topic}.{replica}{suffix}.sock"


def control_endpoint(run_dir: str | Path, actor: str, replica: int = 0) -> str:
    return f"ipc://{Path(run_dir)}/c.{actor}.{replica}.sock"


def heartbeat_endpoint(run_dir: str | Path) -> str:
    return f"ipc://{Path(run_dir)}/supervisor.hb.sock"


def supervisor_endpoint(run_dir: str | Path) -> str:
    return f"ipc://{Path(run_dir)}/supervisor.ctl.sock"
