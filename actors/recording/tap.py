"""`--record` as a graph edit: one more actor that subscribes to every topic and writes MCAP."""

from __future__ import annotations

from dataclasses import replace

from edgevla.actors.runtime.graph import ActorConfig, GraphConfig, RestartPolicy


def add_recorder(graph: GraphConfig, path: str, name: str = "recorder",
                 params: dict | None = None) -> GraphConfig:
    """``graph`` with a recorder writing ``path``.

    It starts first and the others wait for its first heartbeat, so the recording holds the
    run from its very first message.
    """
    rec = ActorConfig(name=name, kind="recorder", inputs={"*": "*"}, rate_hz=20.0,
                      restart=RestartPolicy(policy="always", max_restarts=100, backoff_s=0.1),
                      heartbeat_timeout_s=5.0,
                      params={"path": str(path), "run_id": "${RUN_DIR}", **(params or {})})
    actors = {n: replace(a, after=(*a.after, name)) for n, a in graph.actors.items()}
    actors[name] = rec
    return replace(graph, actors=actors)
