"""An in-process graph driver: actors stepped directly on one clock, no processes, no sockets.

Used by ``edgevla replay --step`` and by tests. It instantiates each actor with
``registry.resolve(kind)`` (or a test's own class), calls ``setup(params)`` and then
``step(clock, inputs)`` as a discrete-event simulation, routing outputs to inputs by topic.

Semantics (kept identical between a recorded in-process run and its replay, which is what
makes step replay bit-exact):

* a message published at ``t_pub`` is *delivered* at ``t_pub + delivery_ns`` (default 1 µs, an
  ipc hop); a step at time ``t`` sees exactly the messages delivered at or before ``t`` since
  its previous step: the newest per port (latest-value), or all of them in order with
  ``collect_all``;
* rate-driven actors step at ``start + k / rate_hz`` (or at explicit ``tick_times``);
  trigger-driven actors step at the delivery time of each message on their trigger port;
* outputs are stamped like `bus.Publisher.send`: ``seq`` per (actor, topic) when unset,
  ``producer = "<actor>.0"`` when unset, ``t_pub_ns = step time + latency_ns[actor]``;
  every output is encoded with the one wire codec and decoded again for its consumers, so
  actors see what the bus would give them (and the exact frames are kept for recording);
* at equal times deliveries come before steps, and steps go in graph order.

A recorder actor in the graph (``inputs: "*"``) receives every message with ``t_recv_ns`` set
to its delivery time, and also a step trace per step of every other actor (topic
``_trace/<actor>``: msgpack ``{actor, t_ns, inputs: {port: [[topic, producer, seq], ...]}}``)
so a replay knows exactly when each actor stepped and what it consumed.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from edgevla.actors.runtime.actor import Actor
from edgevla.actors.runtime.graph import load_graph
from edgevla.actors.runtime.registry import resolve
from edgevla.actors.wire.clock import Clock, VirtualClock
from edgevla.actors.wire.codec import decode, encode
from edgevla.actors.wire.messages import Message, StepTrace


@dataclass
class ActorSpec:
    """What the driver needs of one actor (a subset of graph.ActorConfig)."""

    name: str
    kind: str
    inputs: dict[str, str] = field(default_factory=dict)  # port -> topic; {"*": "*"}: all
    outputs: dict[str, str] = field(default_factory=dict)
    rate_hz: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def all_inputs(self) -> bool:
        return self.inputs.get("*") == "*"


def actor_specs(graph: Any) -> dict[str, ActorSpec]:
    """GraphConfig, a graph YAML path, ``{"actors": {...}}`` or ``{name: {kind, ...}}``."""
    if isinstance(graph, (str, os.PathLike)):
        graph = load_graph(Path(graph))
    actors = getattr(graph, "actors", None)
    if actors is None and isinstance(graph, dict):
        actors = graph.get("actors", graph)
    if not isinstance(actors, dict):
        raise TypeError(f"expected a graph (GraphConfig, YAML path or dict), got {type(graph)}")
    out: dict[str, ActorSpec] = {}
    for name, a in actors.items():
        if isinstance(a, ActorSpec):
            out[name] = a
            continue
        get = (lambda k, d=None, a=a: a.get(k, d)) if isinstance(a, dict) else \
            (lambda k, d=None, a=a: getattr(a, k, d))
        inputs = get("inputs") or {}
        if inputs == "*":
            inputs = {"*": "*"}
        elif isinstance(inputs, list):
            inputs = {t: t for t in inputs}
        outputs = get("outputs") or {}
        if isinstance(outputs, list):
            outputs = {t: t for t in outputs}
        kind = get("kind")
        if not isinstance(kind, str):
            raise ValueError(f"actors.{name}.kind: expected an actor kind name, got {kind!r}")
        out[name] = ActorSpec(name=name, kind=kind, inputs=dict(inputs), outputs=dict(outputs),
                              rate_hz=get("rate_hz"), params=dict(get("params") or {}))
    return out


class ActorSetupError(ValueError):
    """An actor refused its parameters (``setup`` raised): a wrong value, not a crash."""


@dataclass
class Published:
    """One message that went through the driver (from a live actor or injected)."""

    topic: str
    frames: list[Any]
    t_pub_ns: int
    source: str  # actor name, or "" for injected (recorded) messages


@dataclass(order=True)
class _Event:
    t_ns: int
    prio: int  # 0 deliver, 1 step
    order: int
    kind: str = field(compare=False)
    data: Any = field(compare=False)


class _SeenMessages:
    """The newest delivered messages of some topics by (producer, seq): where a recorded step
    finds what it consumed. Bounded: a step consumes what arrived since the one before it."""

    KEEP = 512  # per topic; a step never consumes a message this many messages old

    def __init__(self, topics: set[str]) -> None:
        self._by_topic: dict[str, dict[tuple[str, int], Any]] = {t: {} for t in topics}

    def add(self, topic: str, msg: Message) -> None:
        seen = self._by_topic.get(topic)
        if seen is None:
            return
        seen[(msg.producer, int(msg.seq))] = msg
        if len(seen) > self.KEEP:
            del seen[next(iter(seen))]  # dicts keep insertion order: the oldest goes

    def get(self, topic: str, producer: str, seq: int) -> Message | None:
        return self._by_topic.get(topic, {}).get((producer, int(seq)))


def _frames_copy(frames: list[Any]) -> list[Any]:
    """Own every buffer (an actor may reuse its arrays after returning them)."""
    return [frames[0], frames[1], *[bytes(memoryview(b).cast("B")) if memoryview(b).ndim != 1
                                    or memoryview(b).format != "B" else bytes(b)
                                    for b in frames[2:]]]


class InProcessGraph:
    def __init__(self, graph: Any, *, clock: Clock | None = None,
                 kinds: dict[str, type[Actor]] | None = None, delivery_ns: int = 1000,
                 latency_ns: dict[str, int] | None = None,
                 tick_times: dict[str, Iterable[int]] | None = None,
                 external: Iterable[Any] | None = None, start_ns: int | None = None,
                 on_message: Callable[[Published], None] | None = None,
                 keep_published: bool = True,
                 step_inputs: dict[str, dict[int, dict[str, list[list[Any]]]]] | None = None
                 ) -> None:
        """``step_inputs``: actor -> step time -> the messages ({port: [[topic, producer,
        seq], ...]}) it consumed at that step in a recorded run; such a step gets exactly those
        (found among the messages delivered so far) instead of the delivery rule's."""
        self.specs = actor_specs(graph)
        self.clock = clock if clock is not None else VirtualClock(start_ns or 0)
        self.delivery_ns = int(delivery_ns)
        self.latency_ns = {k: int(v) for k, v in (latency_ns or {}).items()}
        self.on_message = on_message
        self.keep_published = keep_published
        self.published: list[Published] = []
        self.steps: dict[str, int] = {n: 0 for n in self.specs}
        self.errors: dict[str, int] = {}
        self.actors: dict[str, Actor] = {}
        kinds = kinds or {}
        for name, spec in self.specs.items():
            cls = kinds.get(spec.kind) or resolve(spec.kind)
            actor = cls(name)
            try:
                actor.setup(dict(spec.params))
            except (ValueError, KeyError, TypeError) as exc:  # its params, as a person set them
                raise ActorSetupError(f"actor {name!r} ({spec.kind}): "
                                      f"{exc.args[0] if exc.args else exc}") from exc
            self.actors[name] = actor
        # topic -> [(actor, port)]
        self.consumers: dict[str, list[tuple[str, str]]] = {}
        self._star: list[str] = []
        for name, spec in self.specs.items():
            if spec.all_inputs:
                self._star.append(name)
                continue
            for port, topic in spec.inputs.items():
                self.consumers.setdefault(topic, []).append((name, port))
        self._mail: dict[str, dict[str, Any]] = {n: {} for n in self.specs}
        self._consumed: dict[str, dict[str, list[list[Any]]]] = {n: {} for n in self.specs}
        self._seq: dict[tuple[str, str], int] = {}
        self._heap: list[_Event] = []
        self._order = 0
        self._index = {n: i for i, n in enumerate(self.specs)}
        self._trigger_pending: set[tuple[str, int]] = set()
        self.step_inputs = step_inputs or {}
        self._seen = _SeenMessages({t for steps in self.step_inputs.values()
                                    for ins in steps.values() for keys in ins.values()
                                    for t, *_ in keys})
        self.inputs_not_found: dict[str, list[int]] = {}  # actor -> step times
        t0 = self.clock.now_ns() if start_ns is None else int(start_ns)
        tick_times = tick_times or {}
        self._ticks: dict[str, Iterable[int] | None] = {}
        for name, spec in self.specs.items():
            cls = type(self.actors[name])
            trig = cls.trigger if cls.trigger and cls.trigger in spec.inputs else None
            if name in tick_times:
                it = iter(sorted(int(t) for t in tick_times[name]))
                self._ticks[name] = it
                first = next(it, None)
                if first is not None:
                    self._push(first, 1, "step", name)
            elif trig is None and spec.rate_hz:
                self._ticks[name] = None
                self._push(t0, 1, "step", name)
        self._external = iter(external or ())
        self._next_ext = next(self._external, None)
        self._recorders = [n for n in self._star if hasattr(self.actors[n], "write_trace")]

    # ----------------------------------------------------------------- scheduling
    def _push(self, t: int, prio: int, kind: str, data: Any) -> None:
        order = self._index[data] if kind == "step" else self._order
        self._order += 1
        heapq.heappush(self._heap, _Event(int(t), prio, order if prio else self._order, kind,
                                          data))

    def _next_tick(self, name: str, t: int) -> None:
        ticks = self._ticks.get(name, "trigger")
        if ticks == "trigger":
            return
        if ticks is None:
            rate = self.specs[name].rate_hz
            self._push(t + int(round(1e9 / rate)), 1, "step", name)
        else:
            nxt = next(ticks, None)  # type: ignore[arg-type]
            if nxt is not None:
                self._push(max(nxt, t), 1, "step", name)

    # ----------------------------------------------------------------- messages
    def inject(self, topic: str, frames: list[Any], t_pub_ns: int) -> None:
        """Deliver already-encoded frames (a recorded message) as if published at t_pub_ns."""
        self._emit(Published(topic, list(frames), int(t_pub_ns), ""))

    def _emit(self, pub: Published) -> None:
        if self.keep_published:
            self.published.append(pub)
        if self.on_message is not None:
            self.on_message(pub)
        if self.consumers.get(pub.topic) or self._star:
            self._push(pub.t_pub_ns + self.delivery_ns, 0, "deliver", pub)

    def _deliver(self, pub: Published, t: int) -> None:
        targets = list(self.consumers.get(pub.topic, ()))
        targets += [(n, pub.topic) for n in self._star if n != pub.source]
        if not targets:
            return
        _, msg = decode(pub.frames)
        msg.t_recv_ns = t  # type: ignore[attr-defined]  # the recorder's log_time
        key = [pub.topic, msg.producer, msg.seq]
        self._seen.add(pub.topic, msg)
        for name, port in targets:
            actor = self.actors[name]
            mail = self._mail[name]
            if actor.collect_all:
                mail.setdefault(port, []).append(msg)
                self._consumed[name].setdefault(port, []).append(key)
            else:
                mail[port] = msg
                self._consumed[name][port] = [key]
            cls = type(actor)
            spec = self.specs[name]
            if cls.trigger and spec.inputs.get(cls.trigger) == pub.topic \
                    and self._ticks.get(name, "trigger") == "trigger" \
                    and (name, t) not in self._trigger_pending:
                self._trigger_pending.add((name, t))
                self._push(t, 1, "step", name)

    def _step(self, name: str, t: int) -> None:
        self._trigger_pending.discard((name, t))
        actor = self.actors[name]
        inputs, self._mail[name] = self._mail[name], {}
        consumed, self._consumed[name] = self._consumed[name], {}
        recorded = self.step_inputs.get(name, {}).get(t)
        if recorded is not None:
            inputs, consumed = self._recorded_inputs(name, t, recorded, inputs)
        outputs = actor.step(self.clock, inputs)
        self.steps[name] += 1
        if self._recorders and name not in self._recorders:
            trace = StepTrace(actor=name, t_ns=t, inputs=consumed, step=self.steps[name] - 1).record()
            for r in self._recorders:
                self.actors[r].write_trace(name, trace, t)  # type: ignore[attr-defined]
        if outputs:
            self._publish(name, t, outputs)
        self._next_tick(name, t)

    def _recorded_inputs(self, name: str, t: int, recorded: dict[str, list[list[Any]]],
                         mail: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """The messages a recorded step consumed; a port whose message is not here (published
        by another live actor under another name) keeps what the delivery rule gave it."""
        collect = self.actors[name].collect_all
        inputs: dict[str, Any] = {}
        consumed: dict[str, list[Any]] = {}
        for port, keys in recorded.items():
            found = [m for m in (self._seen.get(*k) for k in keys) if m is not None]
            if len(found) < len(keys):
                steps = self.inputs_not_found.setdefault(name, [])
                if not steps or steps[-1] != t:
                    steps.append(t)
                if port in mail:
                    inputs[port] = mail[port]
                continue
            if found:
                inputs[port] = found if collect else found[-1]
                consumed[port] = [list(k) for k in keys]
        return inputs, consumed

    def _publish(self, name: str, t: int, outputs: dict[str, Any]) -> None:
        spec = self.specs[name]
        t_pub = t + self.latency_ns.get(name, 0)
        for port, value in outputs.items():
            topic = spec.outputs.get(port)
            if topic is None:
                continue  # port not wired in this graph (as the runtime does)
            for msg in (value if isinstance(value, list) else [value]):
                if msg is None:
                    continue
                if not isinstance(msg, Message):
                    raise TypeError(f"actor {name!r} port {port!r}: step returned "
                                    f"{type(msg).__name__}, expected a Message")
                k = (name, topic)
                self._seq[k] = self._seq.get(k, 0) + 1
                if not msg.seq:
                    msg.seq = self._seq[k]
                if not msg.producer:
                    msg.producer = f"{name}.0"
                msg.t_pub_ns = t_pub
                self._emit(Published(topic, _frames_copy(encode(topic, msg)), t_pub, name))

    # ----------------------------------------------------------------- running
    def _ext_time(self) -> int | None:
        if self._next_ext is None:
            return None
        return int(_pub_time(self._next_ext))

    def run_until(self, t_end_ns: int) -> None:
        """Process every event up to and including ``t_end_ns``."""
        while True:
            te = self._ext_time()
            th = self._heap[0].t_ns if self._heap else None
            # an injected message publishes at its t_pub; deliveries/steps at their time
            if te is not None and (th is None or te < th) and te <= t_end_ns:
                m = self._next_ext
                self._next_ext = next(self._external, None)
                self.clock.sleep_until_ns(te)
                self.inject(m.topic, m.frames, te)
                continue
            if th is None or th > t_end_ns:
                break
            ev = heapq.heappop(self._heap)
            self.clock.sleep_until_ns(ev.t_ns)
            if isinstance(self.clock, VirtualClock) and self.clock.now_ns() != ev.t_ns:
                raise RuntimeError(f"event at {ev.t_ns} ns is before the clock "
                                   f"({self.clock.now_ns()} ns)")
            if ev.kind == "deliver":
                self._deliver(ev.data, ev.t_ns)
            else:
                self._step(ev.data, ev.t_ns)
        self.clock.sleep_until_ns(t_end_ns)

    def run_for(self, duration_ns: int) -> None:
        self.run_until(self.clock.now_ns() + int(duration_ns))

    def flush_collectors(self) -> None:
        """Give every ``inputs: "*"`` actor (a recorder) what it has not stepped on yet."""
        # messages published but not yet delivered (in flight at the end of the run)
        for ev in sorted(e for e in self._heap if e.kind == "deliver"):
            pub = ev.data
            if self._star:
                _, msg = decode(pub.frames)
                msg.t_recv_ns = ev.t_ns  # type: ignore[attr-defined]
                for n in self._star:
                    if n != pub.source:
                        self._mail[n].setdefault(pub.topic, []).append(msg)
        self._heap = [e for e in self._heap if e.kind != "deliver"]
        heapq.heapify(self._heap)
        for name in self._star:
            if self._mail[name]:
                inputs, self._mail[name] = self._mail[name], {}
                self._consumed[name] = {}
                self.actors[name].step(self.clock, inputs)
                self.steps[name] += 1

    def pending_external(self) -> bool:
        return self._next_ext is not None

    def close(self) -> None:
        for actor in self.actors.values():
            actor.close()


def _pub_time(m: Any) -> int:
    return m.publish_time_ns if hasattr(m, "publish_time_ns") else m.t_pub_ns
