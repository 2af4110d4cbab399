"""One graph across machines: which actors run where, and how their topics cross.

A graph may name machines (``machines: {robot: {address: 10.0.0.2}, server: {address:
10.0.0.3}}``) and give each actor a ``machine:``. Each machine runs its own supervisor on its
share (`share`, ``edgevla run graph.yaml --machine NAME``). A topic read only on its producer's
machine stays on ipc there; a topic read on another machine is bound by its producer on tcp at
its machine's address, on a port every share derives the same way from the whole graph
(`GraphConfig.tcp_ports`), so no machine needs to ask another where anything is.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from edgevla.actors.runtime.machine_keys import load_keys

# a push (work-queue) socket of a topic sits this far above its pub port
PUSH_PORT_OFFSET = 10000


@dataclass(frozen=True)
class Placement:
    """This machine's view of a graph that spans machines."""

    machine: str
    addresses: dict[str, str]  # machine -> address
    producer_machine: dict[str, str]  # topic -> the machine of its producer
    replicas: dict[str, int]  # topic -> its producer's replica count
    ports: dict[tuple[str, int], int]  # (topic, replica) -> tcp port, the whole graph's
    cross: frozenset[str]  # topics read on a machine other than their producer's
    keys: Any = None  # `machine_keys.MachineKeys` when the graph uses CURVE

    def endpoint(self, topic: str, replica: int, push: bool = False) -> str | None:
        """tcp endpoint of a topic that crosses machines (None: a local topic)."""
        if topic not in self.cross:
            return None
        port = self.ports[(topic, replica)] + (PUSH_PORT_OFFSET if push else 0)
        return f"tcp://{self.addresses[self.producer_machine[topic]]}:{port}"

    def remote_machines(self) -> list[str]:
        return sorted(set(self.addresses) - {self.machine})

    def curve(self) -> dict[str, Any] | None:
        """A process's CURVE material on this machine: its key pair, the key of the publisher
        behind every endpoint it may connect to (its own machine's for local ones), and the
        keys a publisher admits (the graph's machines')."""
        if self.keys is None:
            return None
        pub = self.keys.public
        server_keys = {self.endpoint(t, r, push): pub[self.producer_machine[t]]
                       for (t, r) in self.ports if t in self.cross for push in (False, True)}
        return {"public": pub[self.machine], "secret": self.keys.secret,
                "server_public": pub[self.machine], "server_keys": server_keys,
                "allowed": {k: m for m, k in pub.items()}}


def parse_machines(raw: Any, err: Callable[[str, str], None]) -> dict[str, str]:
    """``machines:`` of a graph file -> {name: address}; problems go to ``err(field, text)``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        err("machines", f"must be a mapping of machine name -> {{address: ...}}, got {raw!r}")
        return {}
    out: dict[str, str] = {}
    for name, spec in raw.items():
        where = f"machines.{name}"
        if not isinstance(spec, dict) or set(spec) - {"address"}:
            err(where, f"must be {{address: <IP address>}}, got {spec!r}")
            continue
        address = spec.get("address")
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            err(f"{where}.address", f"must be an IP address, got {address!r}")
            continue
        out[str(name)] = str(address)
    return out


def parse_jpeg(raw: Any, err: Callable[[str, str], None]) -> dict[str, int]:
    """``network.jpeg: {topic: quality}``: camera topics that cross machines as JPEG."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        err("network.jpeg", f"must map camera topics to a JPEG quality 1..100, got {raw!r}")
        return {}
    out = {}
    for topic, q in raw.items():
        if type(q) is not int or not 1 <= q <= 100:
            err(f"network.jpeg.{topic}", f"must be a JPEG quality 1..100, got {q!r}")
            continue
        out[str(topic)] = q
    return out


def check_actor_machines(actors: dict[str, Any], machines: dict[str, str],
                         err: Callable[[str, str], None]) -> None:
    """Every actor on a named machine when the graph has machines; none names one otherwise."""
    for a in actors.values():
        where = f"actors.{a.name}.machine"
        if machines and a.machine not in machines:
            err(where, f"must name one of the graph's machines ({', '.join(sorted(machines))}), "
                       f"got {a.machine or None!r}")
        elif not machines and a.machine:
            err(where, f"names machine {a.machine!r}, but the graph has no 'machines:'")


def share(graph: Any, machine: str) -> Any:
    """``graph`` (a `GraphConfig` naming machines) cut down to what runs on ``machine``: its
    actors, the other machines' topics they read as external topics, and the `Placement`."""
    if machine not in graph.machines:
        raise ValueError(f"--machine {machine}: the graph's machines are "
                         f"{', '.join(sorted(graph.machines)) or 'none'}")
    producers = graph.producers()
    producer_machine = {t: graph.actors[a].machine for t, a in producers.items()}
    cross = set()
    for a in graph.actors.values():
        topics = graph.topics() if a.all_inputs else a.inputs.values()
        cross |= {t for t in topics if t in producer_machine and producer_machine[t] != a.machine}
    # an actor waits only for actors of its own machine: another machine starts on its own
    local = {n: dataclasses.replace(a, after=tuple(d for d in a.after
                                                   if graph.actors[d].machine == machine))
             for n, a in graph.actors.items() if a.machine == machine}
    remote_inputs = {t for a in local.values()
                     for t in (graph.topics() if a.all_inputs else a.inputs.values())
                     if t in producer_machine and producer_machine[t] != machine}
    placement = Placement(
        machine=machine, addresses=dict(graph.machines), producer_machine=producer_machine,
        replicas={t: graph.actors[a].max_replicas for t, a in producers.items()},
        ports=graph.tcp_ports(), cross=frozenset(cross),
        keys=load_keys(graph, machine) if graph.network.curve else None)
    external = tuple(sorted(set(graph.external_topics) | remote_inputs))
    return dataclasses.replace(graph, actors=local, external_topics=external, placement=placement,
                               name=f"{graph.name}.{machine}")
