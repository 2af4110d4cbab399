"""The other machines' halves of a graph, for `edgevla status` on any of them.

Each machine's supervisor publishes a summary of its actors once a second on tcp at its own
address (port ``base_port - 1 - index`` of the machine in name order, CURVE as the graph says);
every other machine's supervisor keeps the newest it heard and how old it is. A machine not
heard from for `STALE_S` is shown as unreachable, never guessed at.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import msgpack
import zmq

from edgevla.actors.wire.bus import apply_curve, bind, curve_keys

PERIOD_S = 1.0
STALE_S = 3.0
# what of an actor's status crosses: enough for the table, not its full stats
_FIELDS = ("actor", "replica", "state", "pid", "restarts", "rate_target_hz", "rate_actual_hz",
           "loop_p50_ms", "loop_p99_ms", "sent", "skipped", "dropped_send", "malformed",
           "rss_mb", "cpu_s", "outputs")


def status_endpoint(placement, machine: str, base_port: int) -> str:
    index = sorted(placement.addresses).index(machine)
    return f"tcp://{placement.addresses[machine]}:{base_port - 1 - index}"


class PeerStatus:
    def __init__(self, ctx: zmq.Context, placement, base_port: int,
                 curve: dict[str, Any] | None) -> None:
        self.placement = placement
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        apply_curve(self.pub, curve_keys(curve, server=True), server=True)
        bind(self.pub, status_endpoint(placement, placement.machine, base_port))
        client = curve_keys(curve, server=False)
        for m in placement.remote_machines():
            if client is not None:  # trust each machine by its own key (read at connect)
                apply_curve(self.sub, dataclasses.replace(
                    client, server_public=placement.keys.public[m].encode()), server=False)
            self.sub.connect(status_endpoint(placement, m, base_port))
        self._next = 0.0
        self.heard: dict[str, tuple[float, dict[str, Any]]] = {}

    def due(self) -> bool:
        """Time to publish again (the status is built only then)."""
        return time.monotonic() >= self._next

    def publish(self, own: dict[str, Any]) -> None:
        self._next = time.monotonic() + PERIOD_S
        body = {"machine": self.placement.machine, "graph": own.get("graph"),
                "uptime_s": own.get("uptime_s"),
                "actors": [{k: a.get(k) for k in _FIELDS} for a in own.get("actors", [])]}
        try:
            self.pub.send(msgpack.packb(body, use_bin_type=True), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def drain(self) -> None:
        while True:
            try:
                raw = self.sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                body = msgpack.unpackb(raw, raw=False)
                machine = str(body["machine"])
            except Exception:  # noqa: BLE001 - a peer's garbage never stops the supervisor
                continue
            if machine in self.placement.addresses and machine != self.placement.machine:
                self.heard[machine] = (time.monotonic(), body)

    def view(self) -> dict[str, Any]:
        """machine -> {"reachable", "age_s", "actors"} for every other machine of the graph."""
        now = time.monotonic()
        out = {}
        for m in self.placement.remote_machines():
            t, body = self.heard.get(m, (None, {}))
            age = None if t is None else round(now - t, 1)
            out[m] = {"reachable": age is not None and age <= STALE_S, "age_s": age,
                      "address": self.placement.addresses[m], "actors": body.get("actors", [])}
        return out

    def close(self) -> None:
        self.pub.close(linger=0)
        self.sub.close(linger=0)
