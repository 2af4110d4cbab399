"""The process around an actor: sockets, loop rate, heartbeats, control channel, shutdown.

The supervisor starts ``python -m edgevla.actors.runtime.process SPEC.json`` once per actor replica.
This module owns everything an actor kind should not have to write: it binds the output
topics, connects to every producer of the inputs, runs ``step`` at ``rate_hz`` (or on each
message of the trigger port), answers control requests (stats, set_rate, set_param, stop),
sends heartbeats with its loop latency, exits cleanly on SIGTERM/SIGINT, and dies with its
supervisor (PR_SET_PDEATHSIG plus a parent check) so no actor is ever left orphaned.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from edgevla.actors.runtime.actor import Actor
from edgevla.actors.runtime.registry import resolve
from edgevla.actors.wire.bus import BusCounters, Publisher, Subscriber, bind, curve_keys, serve_requests
from edgevla.actors.wire.clock import StepWallClock
from edgevla.actors.wire.codec import encode
from edgevla.actors.wire.control import ActorCommand
from edgevla.actors.wire.curve_auth import HandshakeWatch, start_authenticator
from edgevla.actors.wire.messages import TRACE_PREFIX, Heartbeat, Message, StepTrace

log = logging.getLogger("edgevla.runtime")

HEARTBEAT_PERIOD_S = 0.25


@dataclass
class ProcessSpec:
    """Everything one actor process needs, written by the supervisor as JSON."""

    actor: str
    replica: int
    kind: str
    params: dict[str, Any]
    inputs: dict[str, str]  # port -> topic ("*" -> "*" for every topic)
    outputs: dict[str, str]  # port -> topic
    rate_hz: float | None
    sub_endpoints: dict[str, list[str]]  # topic -> endpoints to connect
    pull_endpoints: dict[str, list[str]]  # balanced topic -> PUSH endpoints to connect
    pub_endpoints: dict[str, str]  # topic -> endpoint to bind
    push_topics: list[str]  # output topics sent as a work queue
    control_endpoint: str
    heartbeat_endpoint: str
    supervisor_pid: int
    all_topics: list[str] = field(default_factory=list)
    image_topics: list[str] = field(default_factory=list)
    image_hwm: int = 4
    cpu_affinity: list[int] = field(default_factory=list)
    nice: int = 0
    realtime_priority: int = 0
    curve: dict[str, Any] | None = None  # z85 keys of this process, its servers', whom it admits
    jpeg: dict[str, int] = field(default_factory=dict)  # output topic -> JPEG quality
    trace_steps: bool = False  # publish a StepTrace per step (a recorder runs: replay needs them)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "ProcessSpec":
        return cls(**json.loads(Path(path).read_text()))


class LoopStats:
    """Step latency and achieved rate over a sliding window."""

    def __init__(self, window: int = 256) -> None:
        self.latency_ns: deque[int] = deque(maxlen=window)
        self.step_times_ns: deque[int] = deque(maxlen=window)
        self.steps = 0
        self.overruns = 0

    def record(self, t_start_ns: int, t_end_ns: int) -> None:
        self.latency_ns.append(t_end_ns - t_start_ns)
        self.step_times_ns.append(t_start_ns)
        self.steps += 1

    def rate_hz(self, now_ns: int, window_s: float = 2.0, slow_window_s: float = 30.0) -> float:
        """Steps per second over the last ``window_s``; a slow, trigger-driven actor (a stage
        asked every few seconds) is measured over up to ``slow_window_s`` instead of reading 0."""
        for w in (window_s, slow_window_s):
            cutoff = now_ns - int(w * 1e9)
            recent = [t for t in self.step_times_ns if t >= cutoff]
            if len(recent) >= 3:
                break
        if len(recent) < 2 or recent[-1] == recent[0]:
            return 0.0
        return (len(recent) - 1) / ((recent[-1] - recent[0]) / 1e9)

    def latency_ms(self) -> tuple[float, float]:
        if not self.latency_ns:
            return 0.0, 0.0
        arr = np.fromiter(self.latency_ns, dtype=np.int64) / 1e6
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when the supervisor dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class ActorProcess:
    def __init__(self, spec: ProcessSpec, actor: Actor) -> None:
        self.spec = spec
        self.actor = actor
        self.clock = StepWallClock()
        self.rate_hz = spec.rate_hz
        self.counters = BusCounters()
        self.loop = LoopStats()
        self.stop_requested = False
        self.errors: dict[str, int] = {}
        self.ctx = zmq.Context()
        self.auth = None
        if spec.curve and spec.curve.get("allowed"):  # across machines: only theirs get in
            self.auth = start_authenticator(self.ctx, spec.curve["allowed"])
        curve_self = curve_keys(spec.curve, server=True)
        curve_client = curve_keys(spec.curve, server=False)
        self._curve_client = curve_client
        name = f"{spec.actor}.{spec.replica}"
        self.pubs: dict[str, Publisher] = {}
        for topic, ep in spec.pub_endpoints.items():
            kind = zmq.PUSH if topic in spec.push_topics else zmq.PUB
            # While a recorder runs, small-message sockets also carry a step trace per step: a
            # recorder that stalls for half a second must not overflow them (and lose steps)
            hwm = spec.image_hwm if topic in spec.image_topics else \
                (1000 if spec.trace_steps else 100)
            self.pubs[topic] = Publisher(self.ctx, ep, producer=name, kind=kind, hwm=hwm,
                                         curve=curve_self, counters=self.counters,
                                         jpeg_quality=spec.jpeg.get(topic))
        sub_topics = sorted({t for t in spec.sub_endpoints})
        endpoints = sorted({e for eps in spec.sub_endpoints.values() for e in eps})
        self.sub = Subscriber(self.ctx, endpoints, ["*"] if "*" in spec.inputs.values()
                              else sub_topics, curve=curve_client, counters=self.counters,
                              hwm=1000 if actor.collect_all else 100,
                              borrow=actor.borrow_inputs) if endpoints else None
        # a graph across machines: a refused or mismatched key is said on this side too
        self.watches = [HandshakeWatch(s.sock) for s in (self.sub,) if s is not None
                        and curve_client is not None and curve_client.server_keys]
        pull_eps = sorted({e for eps in spec.pull_endpoints.values() for e in eps})
        self.pull = Subscriber(self.ctx, pull_eps, list(spec.pull_endpoints), kind=zmq.PULL,
                               curve=curve_client, counters=self.counters) if pull_eps else None
        self.ctl = self.ctx.socket(zmq.REP)
        self.ctl.setsockopt(zmq.LINGER, 0)
        bind(self.ctl, spec.control_endpoint)
        self.hb = self.ctx.socket(zmq.PUSH)
        self.hb.setsockopt(zmq.LINGER, 0)
        self.hb.setsockopt(zmq.SNDHWM, 10)
        self.hb.connect(spec.heartbeat_endpoint)
        self.topic_ports: dict[str, list[str]] = {}
        for port, topic in spec.inputs.items():
            self.topic_ports.setdefault(topic, []).append(port)
        self.trigger = actor.trigger if actor.trigger in spec.inputs else None
        self.pending: dict[str, Any] = {}
        # Step traces ride on one of the actor's own PUB sockets (the recorder subscribes to
        # every topic; other consumers filter by their topic): an actor without inputs or
        # without a PUB output has nothing a replay could feed it.
        trace_pubs = [p for t, p in self.pubs.items() if t not in spec.push_topics]
        self._trace_pub = trace_pubs[0] if spec.trace_steps and spec.inputs and trace_pubs \
            and "*" not in spec.inputs.values() else None
        self._consumed: dict[str, list[list[Any]]] = {}
        self._trace_topic = TRACE_PREFIX + spec.actor
        self._hb_seq = 0

    # ------------------------------------------------------------------ inputs
    def _ports_for(self, topic: str) -> list[str]:
        ports = self.topic_ports.get(topic)
        if ports is None and "*" in self.topic_ports:
            return [topic]
        return ports or []

    def _collect(self) -> None:
        got: list[tuple[str, Message]] = []
        for s in (self.sub, self.pull):
            if s is not None:
                got.extend(s.drain_all())
        t_recv = time.monotonic_ns()
        for topic, msg in got:
            msg.t_recv_ns = t_recv  # local receive time (not on the wire): the recorder's log time
            for port in self._ports_for(topic):
                if self.actor.collect_all:
                    self.pending.setdefault(port, []).append(msg)
                else:
                    if port in self.pending:
                        self.counters.skipped[topic] += 1
                    self.pending[port] = msg
                if self._trace_pub is not None:
                    key = [topic, msg.producer, int(msg.seq)]
                    if self.actor.collect_all:
                        self._consumed.setdefault(port, []).append(key)
                    else:
                        self._consumed[port] = [key]

    # ------------------------------------------------------------------ outputs
    def _publish(self, outputs: dict[str, Any] | None) -> None:
        if not outputs:
            return
        for port, value in outputs.items():
            topic = self.spec.outputs.get(port)
            if topic is None:
                continue  # port not wired in this graph
            for msg in (value if isinstance(value, list) else [value]):
                if msg is not None:
                    self.pubs[topic].send(topic, msg)

    def step_once(self) -> None:
        inputs, self.pending = self.pending, {}
        self.clock.begin_step()
        t0 = time.monotonic_ns()
        outputs = self.actor.step(self.clock, inputs)
        t1 = time.monotonic_ns()
        self.loop.record(t0, t1)
        if self._trace_pub is not None:
            self._trace(self.clock.first_read_ns or t0)
        self._publish(outputs)

    def _trace(self, t_ns: int) -> None:
        """Which messages this step consumed, and the clock reading it acted on, for the
        recorder. Sent before the outputs; not counted as the actor's output."""
        consumed, self._consumed = self._consumed, {}
        trace = StepTrace(actor=self.spec.actor, t_ns=int(t_ns), inputs=consumed,
                          step=self.loop.steps - 1,  # counted by loop.record before this
                          producer=self._trace_pub.producer, t_pub_ns=time.monotonic_ns())
        self._trace_pub.send_raw(encode(self._trace_topic, trace))

    # ------------------------------------------------------------------ control
    def stats(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        p50, p99 = self.loop.latency_ms()
        try:
            actor_stats = self.actor.stats()
        except Exception as exc:  # noqa: BLE001 - stats must never kill the loop
            actor_stats = {"stats_error": repr(exc)}
        return {
            "actor": self.spec.actor,
            "replica": self.spec.replica,
            "pid": os.getpid(),
            "rate_target_hz": self.rate_hz,
            "rate_actual_hz": round(self.loop.rate_hz(now), 2),
            "loop_p50_ms": round(p50, 3),
            "loop_p99_ms": round(p99, 3),
            "steps": self.loop.steps,
            "overruns": self.loop.overruns,
            "malformed": self.counters.malformed_total(),
            "skipped": sum(self.counters.skipped.values()),
            "dropped_send": sum(self.counters.dropped_send.values()),
            "bus": self.counters.as_dict(),
            "rss_mb": round(_rss_mb(), 1),
            "rss_peak_mb": round(_rss_peak_mb(), 1),
            "cpu_s": round(sum(os.times()[:2]), 2),
            # the board runtime must stay torch-free; tests and the summary check this
            "torch_loaded": "torch" in sys.modules,
            "actor_stats": _plain(actor_stats),
        }

    def handle_control(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a map"}
        cmd = req.get("cmd")
        if cmd == ActorCommand.PING:
            return {"ok": True}
        if cmd == ActorCommand.STATS:
            return {"ok": True, "stats": self.stats()}
        if cmd == ActorCommand.SET_RATE:
            hz = req.get("hz")
            if not isinstance(hz, (int, float)) or hz <= 0:
                return {"ok": False, "error": f"hz must be > 0, got {hz!r}"}
            self.rate_hz = float(hz)
            return {"ok": True, "rate_hz": self.rate_hz}
        if cmd == ActorCommand.SET_PARAM:
            try:
                self.actor.set_param(str(req.get("name")), req.get("value"))
            except (KeyError, ValueError, TypeError) as exc:
                # a KeyError's str() quotes its message: the actor's line as it was written
                text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                return {"ok": False, "error": str(text)}
            return {"ok": True}
        if cmd == ActorCommand.STOP:
            self.stop_requested = True
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _heartbeat(self) -> None:
        self._hb_seq += 1
        p50, _ = self.loop.latency_ms()
        hb = Heartbeat(actor=self.spec.actor, pid=os.getpid(), loop_latency_ns=int(p50 * 1e6),
                       stats=self.stats(), seq=self._hb_seq, t_pub_ns=time.monotonic_ns(),
                       producer=f"{self.spec.actor}.{self.spec.replica}")

        try:
            self.hb.send_multipart(encode("heartbeat", hb), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        poller = zmq.Poller()
        for s in (self.sub, self.pull):
            if s is not None:
                poller.register(s.sock, zmq.POLLIN)
        poller.register(self.ctl, zmq.POLLIN)
        for w in self.watches:
            poller.register(w.socket, zmq.POLLIN)
        next_tick = time.monotonic_ns()
        next_hb = 0
        while not self.stop_requested:
            now = time.monotonic_ns()
            if now >= next_hb:
                self._heartbeat()
                next_hb = now + int(HEARTBEAT_PERIOD_S * 1e9)
                if os.getppid() != self.spec.supervisor_pid:
                    log.error("supervisor %d is gone: exiting", self.spec.supervisor_pid)
                    return 3
            rate_driven = self.trigger is None and self.rate_hz
            deadline = min(next_hb, next_tick) if rate_driven else next_hb
            timeout_ms = max(0.0, (deadline - time.monotonic_ns()) / 1e6)
            events = dict(poller.poll(timeout_ms))
            if self.ctl in events:
                serve_requests(self.ctl, self.handle_control)
            for w in self.watches:
                if w.socket in events:
                    w.drain()
            self._collect()
            if rate_driven:
                now = time.monotonic_ns()
                if now >= next_tick:
                    self.step_once()
                    period = int(1e9 / self.rate_hz)
                    next_tick += period
                    if next_tick < time.monotonic_ns():
                        # We fell behind a whole period: re-anchor rather than burst to catch up.
                        self.loop.overruns += 1
                        next_tick = time.monotonic_ns() + period
            elif self.trigger is not None:
                if self.trigger in self.pending:
                    self.step_once()
        return 0

    def close(self) -> None:
        try:
            self.actor.close()
        finally:
            for p in self.pubs.values():
                p.close()
            for s in (self.sub, self.pull):
                if s is not None:
                    s.close()
            self.ctl.close(linger=0)
            self.hb.close(linger=0)
            for w in self.watches:
                w.close()
            if self.auth is not None:
                self.auth.stop()
            self.ctx.term()


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return 0.0


def _rss_peak_mb() -> float:
    """The process's peak resident set so far (VmHWM): what a memory budget has to hold."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


def _plain(obj: Any) -> Any:
    """Make actor stats msgpack-safe (numpy scalars and arrays to Python)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def apply_scheduling(cpu_affinity: list[int], nice: int, realtime_priority: int,
                     pid: int = 0) -> list[str]:
    """Pin, renice and raise process ``pid`` (0: this one) as the graph asks; one note per
    request that could not be met (the process then runs as it was: a fallback, not a crash)."""
    notes = []
    if cpu_affinity:
        cpus = set(cpu_affinity) & os.sched_getaffinity(pid)
        if cpus:
            os.sched_setaffinity(pid, cpus)
        else:
            notes.append(f"cpu_affinity {cpu_affinity}: none of these CPUs exist here; "
                         f"not pinning")
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except OSError as exc:
            notes.append(f"nice {nice} refused: {exc}")
    if realtime_priority:
        # On a shared core a normal-priority control loop was measured stalling for hundreds of
        # ms; SCHED_FIFO keeps the executor's tick jitter sub-millisecond where it is allowed.
        try:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(realtime_priority))
        except (OSError, AttributeError) as exc:
            notes.append(f"SCHED_FIFO priority {realtime_priority} refused ({exc}): running at "
                         f"normal priority")
    return notes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgevla.actors.runtime.process SPEC.json", file=sys.stderr)
        return 2
    _die_with_parent()
    spec = ProcessSpec.load(argv[0])
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {spec.actor}.{spec.replica} %(levelname)s "
                               f"%(name)s: %(message)s")
    if os.getppid() != spec.supervisor_pid:
        return 3  # the supervisor died before we could arm PDEATHSIG
    for note in apply_scheduling(spec.cpu_affinity, spec.nice, spec.realtime_priority):
        log.warning("%s", note)

    actor = resolve(spec.kind)(f"{spec.actor}")
    proc: ActorProcess | None = None
    stop = {"flag": False}

    def on_signal(signum, _frame) -> None:
        stop["flag"] = True
        if proc is not None:
            proc.stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        actor.setup(dict(spec.params))
        proc = ActorProcess(spec, actor)
        proc.stop_requested = stop["flag"]
        rc = proc.run()
    except Exception:  # noqa: BLE001 - log the crash; the supervisor decides what happens next
        traceback.print_exc()
        return 1
    finally:
        if proc is not None:
            try:
                proc.close()
            except Exception:  # noqa: BLE001
                traceback.print_exc()
    log.info("stopped cleanly")
    return rc


if __name__ == "__main__":
    sys.exit(main())
