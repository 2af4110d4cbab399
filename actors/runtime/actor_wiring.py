"""How a run's actors find each other: socket endpoints, CURVE keys, and the `ProcessSpec` each
actor process is started with.

Everything here follows from the graph and the run directory; the supervisor adds only what
changes at run time (the rate an actor was scaled to).
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq

from edgevla.actors.runtime.graph import ActorConfig, GraphConfig, expand_placeholders
from edgevla.actors.runtime.placement import PUSH_PORT_OFFSET
from edgevla.actors.runtime.process import ProcessSpec
from edgevla.actors.runtime.registry import resolve
from edgevla.actors.wire import endpoints as ep


class ActorWiring:
    def __init__(self, graph: GraphConfig, run_dir: Path) -> None:
        self.graph = graph
        self.run_dir = run_dir
        if graph.placement is not None and graph.network.curve:
            self.curve = graph.placement.curve()  # each machine its own keys
        else:
            self.curve = self._curve_material() if graph.network.curve else None
        self.tcp_ports = graph.tcp_ports() if graph.network.transport == "tcp" else {}
        self.balanced = graph.balanced_topics()
        # Frames queue at most image_hwm deep per subscriber: latest-value readers only want the
        # newest. A recorder wants every frame, and a short scheduling stall of its process
        # would overflow 4 frames (measured: 4.2% lost over 60 s at load 12); 32 does not.
        self.recording = any(a.all_inputs for a in graph.actors.values())
        self.image_hwm = 32 if self.recording else 4

    def endpoint(self, topic: str, replica: int, push: bool = False) -> str:
        placed = self.graph.placement.endpoint(topic, replica, push) if self.graph.placement else None
        if placed is not None:  # read on another machine than its producer's
            return placed
        if self.tcp_ports:
            port = self.tcp_ports[(topic, replica)] + (PUSH_PORT_OFFSET if push else 0)
            return ep.topic_endpoint(self.run_dir, topic, replica, tcp_port=port,
                                     tcp_host=self.graph.network.host)
        return ep.topic_endpoint(self.run_dir, topic, replica, push=push)

    def _curve_material(self) -> dict[str, str]:
        """One server key pair for the run's topic sockets, and one client pair for our actors.

        With keys_dir set, keys are read from there (so remote peers can be given the public
        key); otherwise generated into the private run directory.
        """
        keys_dir = Path(self.graph.network.keys_dir) if self.graph.network.keys_dir else \
            self.run_dir / "keys"
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        material = {}
        for role in ("server", "client"):
            pub_f, sec_f = keys_dir / f"{role}.key", keys_dir / f"{role}.key_secret"
            if not pub_f.exists():
                public, secret = zmq.curve_keypair()
                pub_f.write_bytes(public)
                old = os.umask(0o077)
                try:
                    sec_f.write_bytes(secret)
                finally:
                    os.umask(old)
            material[role] = (pub_f.read_bytes().strip(), sec_f.read_bytes().strip())
        # Every process is both a server (its outputs) and a client (its inputs); sharing one
        # pair per role keeps the key exchange to "give the peer server.key".
        return {"public": material["server"][0].decode(), "secret": material["server"][1].decode(),
                "server_public": material["server"][0].decode()}

    def _input_endpoints(self, a: ActorConfig) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(SUB endpoints, PULL endpoints) per input topic: a replicated actor pulls its trigger
        topic as a work queue and subscribes to the rest."""
        producers = self.graph.producers()
        sub_eps: dict[str, list[str]] = {}
        pull_eps: dict[str, list[str]] = {}
        trigger_topic = None
        if a.max_replicas > 1:
            trig = resolve(a.kind).trigger
            trigger_topic = a.inputs.get(trig) if trig else None
        topics = self.graph.topics() if a.all_inputs else sorted(set(a.inputs.values()))
        for topic in topics:
            prod = self.graph.actors.get(producers.get(topic, ""))
            n = prod.max_replicas if prod else self._remote_replicas(topic)
            if topic == trigger_topic:
                pull_eps[topic] = [self.endpoint(topic, r, push=True) for r in range(n)]
            else:
                sub_eps[topic] = [self.endpoint(topic, r) for r in range(n)]
            if self.graph.network.inject:
                sub_eps.setdefault(topic, []).append(ep.inject_endpoint(self.run_dir, topic))
        return sub_eps, pull_eps

    def _jpeg(self, topics) -> dict[str, int]:
        """JPEG quality of the camera topics among ``topics`` that leave this machine."""
        placement, jpeg = self.graph.placement, self.graph.network.jpeg
        if placement is None or not jpeg:
            return {}
        return {t: jpeg[t] for t in topics if t in jpeg and t in placement.cross}

    def _remote_replicas(self, topic: str) -> int:
        """Replicas of a topic's producer on another machine (1 for a topic from outside)."""
        placement = self.graph.placement
        return placement.replicas.get(topic, 1) if placement is not None else 1

    def spec(self, a: ActorConfig, index: int, rate_hz: float | None) -> ProcessSpec:
        """What replica ``index`` of ``a`` is started with, looping at ``rate_hz``."""
        sub_eps, pull_eps = self._input_endpoints(a)
        outputs = dict(a.outputs)
        pub_eps = {t: self.endpoint(t, index, push=t in self.balanced) for t in outputs.values()}
        return ProcessSpec(
            actor=a.name, replica=index, kind=a.kind,
            params=expand_placeholders(a.params, self.graph.path, self.run_dir),
            inputs=({"*": "*"} if a.all_inputs else dict(a.inputs)), outputs=outputs,
            rate_hz=rate_hz, sub_endpoints=sub_eps,
            pull_endpoints=pull_eps, pub_endpoints=pub_eps,
            push_topics=[t for t in outputs.values() if t in self.balanced],
            control_endpoint=ep.control_endpoint(self.run_dir, a.name, index),
            heartbeat_endpoint=ep.heartbeat_endpoint(self.run_dir),
            supervisor_pid=os.getpid(), all_topics=self.graph.topics(),
            image_topics=image_topics(a), image_hwm=self.image_hwm,
            cpu_affinity=list(a.cpu_affinity), nice=a.nice,
            realtime_priority=a.realtime_priority,
            curve=self.curve, trace_steps=self.recording, jpeg=self._jpeg(outputs.values()))


def image_topics(a: ActorConfig) -> list[str]:
    """The topics ``a`` publishes camera frames on: the ports its kind declares as
    ``image_outputs``, mapped through the graph."""
    ports = resolve(a.kind).image_outputs
    return [t for p, t in a.outputs.items() if p in ports]
