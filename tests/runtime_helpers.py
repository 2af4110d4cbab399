"""Drive a Supervisor from a test without threads: poll until a condition holds."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from edgevla.actors.runtime.graph import GraphConfig, RestartPolicy, parse_graph
from edgevla.actors.runtime.supervisor import Supervisor


def with_model(graph: GraphConfig, model: str, restart: RestartPolicy, **params: Any) -> GraphConfig:
    """``graph`` with every model stage pointed at ``model`` (and given ``params``), every actor
    restarting by ``restart``: a shipped graph run on a bundle a test made."""
    actors = {}
    for name, a in graph.actors.items():
        p = dict(a.params)
        if "model" in p:
            p.update(model=str(model), **params)
        actors[name] = replace(a, params=p, restart=restart)
    return replace(graph, actors=actors)


def start_graph(yaml_text: str, run_base: str) -> Supervisor:
    sup = Supervisor(parse_graph(yaml_text, "test.yaml"), base_dir=run_base)
    sup.start()
    return sup


def run_until(sup: Supervisor, pred: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sup.poll_once(20)
        if pred():
            return True
    return False


def run_for(sup: Supervisor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.poll_once(20)


def actor_stats(sup: Supervisor, name: str, replica: int = 0) -> dict:
    r = sup.replicas[name][replica]
    reply = sup.actor_request(r, {"cmd": "stats"}, timeout_ms=2000)
    assert reply and reply["ok"], f"{name}.{replica} did not answer: {reply}"
    return reply["stats"]


def replica(sup: Supervisor, name: str, index: int = 0):
    return sup.replicas[name][index]


@dataclass
class Recorded:
    """A recorded message as replay and the plots read it (`recorder.RecordedMessage`), reduced
    to schema, publish time and the decoded message."""

    schema: str
    publish_time_ns: int
    msg: Any

    def decode(self) -> Any:
        return self.msg
