"""The supervisor: starts a graph's actors as processes, watches them, restarts them, stops them.

One supervisor per run. It writes each actor's `ProcessSpec`, starts producers before
consumers, and then loops: heartbeats in (PULL), control requests from the CLI (REP), rate and
parameter commands from governors (the graph's ``control`` output ports), exit and hang
detection, restarts with exponential backoff up to ``max_restarts``. It stops actors in reverse
start order. Actors arm PR_SET_PDEATHSIG, so a SIGKILLed supervisor leaves no orphans.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import zmq

from edgevla.actors.runtime.graph import ActorConfig, GraphConfig, expand_placeholders
from edgevla.actors.runtime.process import ProcessSpec
from edgevla.actors.runtime.registry import resolve
from edgevla.actors.runtime.run_verdict import tail_error
from edgevla.actors.wire import endpoints as ep
from edgevla.actors.wire import shm as _shm
from edgevla.actors.wire.bus import Subscriber, bind, make_run_dir, request, run_base, serve_requests
from edgevla.actors.wire.codec import decode
from edgevla.actors.wire.errors import MalformedMessage
from edgevla.actors.wire.messages import Command, Heartbeat

log = logging.getLogger("edgevla.supervisor")

STARTUP_GRACE_S = 30.0  # model loading may take a while before the first heartbeat
SUPERVISOR_PID_FILE = "supervisor.pid"  # in the run dir while its supervisor runs


@dataclass
class Replica:
    actor: ActorConfig
    index: int
    spec_path: Path
    log_path: Path
    popen: subprocess.Popen | None = None
    state: str = "pending"  # pending|running|backoff|hung|failed|exited|stopped
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


class Supervisor:
    def __init__(self, graph: GraphConfig, *, run_dir: Path | None = None,
                 env: dict[str, str] | None = None, base_dir: str | None = None) -> None:
        self.graph = graph
        self.run_dir = run_dir or make_run_dir(base_dir, name=graph.name)
        (self.run_dir / "specs").mkdir(exist_ok=True, mode=0o700)
        (self.run_dir / "logs").mkdir(exist_ok=True, mode=0o700)
        self.env = {**os.environ, **(env or {})}
        self.ctx = zmq.Context()
        self.hb_sock = self.ctx.socket(zmq.PULL)
        self.hb_sock.setsockopt(zmq.LINGER, 0)
        bind(self.hb_sock, ep.heartbeat_endpoint(self.run_dir))
        self.ctl_sock = self.ctx.socket(zmq.REP)
        self.ctl_sock.setsockopt(zmq.LINGER, 0)
        bind(self.ctl_sock, ep.supervisor_endpoint(self.run_dir))
        self.curve = self._curve_material() if graph.network.curve else None
        self.tcp_ports = graph.tcp_ports() if graph.network.transport == "tcp" else {}
        self.balanced = graph.balanced_topics()
        # Frames queue at most IMAGE_HWM deep per subscriber: latest-value readers only want the
        # newest. A recorder wants every frame, and a short scheduling stall of its process
        # would overflow 4 frames (measured: 4.2% lost over 60 s at load 12); 32 does not.
        self.image_hwm = 32 if any(a.all_inputs for a in graph.actors.values()) else 4
        self.replicas: dict[str, list[Replica]] = {}
        self.rate_overrides: dict[str, float] = {}
        self.stop_requested = False
        self.started_at = time.monotonic()
        self.malformed_heartbeats = 0
        self.governor_commands: list[dict[str, Any]] = []
        self._pids: set[int] = set()  # every actor pid of this run: their shm segments
        control_topics = [t for a in graph.actors.values() for p, t in a.outputs.items()
                          if p == "control"]
        self.control_sub = Subscriber(
            self.ctx, [self.endpoint(t, r) for t in control_topics
                       for r in range(graph.actors[graph.producers()[t]].max_replicas)],
            control_topics) if control_topics else None
        self._write_pointer()

    # ------------------------------------------------------------------ wiring
    def endpoint(self, topic: str, replica: int, push: bool = False) -> str:
        if self.tcp_ports:
            port = self.tcp_ports[(topic, replica)] + (10000 if push else 0)
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

    def _spec(self, a: ActorConfig, index: int) -> ProcessSpec:
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
            n = prod.max_replicas if prod else 1
            if topic == trigger_topic:
                pull_eps[topic] = [self.endpoint(topic, r, push=True) for r in range(n)]
            else:
                sub_eps[topic] = [self.endpoint(topic, r) for r in range(n)]
            if self.graph.network.inject:
                sub_eps.setdefault(topic, []).append(ep.inject_endpoint(self.run_dir, topic))
        outputs = dict(a.outputs)
        pub_eps = {t: self.endpoint(t, index, push=t in self.balanced) for t in outputs.values()}
        image_topics = [t for t in outputs.values() if "frame" in t or "cam" in t
                        or t in ("top", "gripper", "left")]
        return ProcessSpec(
            actor=a.name, replica=index, kind=a.kind, params=self._expand(a.params),
            inputs=({"*": "*"} if a.all_inputs else dict(a.inputs)), outputs=outputs,
            rate_hz=self.rate_overrides.get(a.name, a.rate_hz), sub_endpoints=sub_eps,
            pull_endpoints=pull_eps, pub_endpoints=pub_eps,
            push_topics=[t for t in outputs.values() if t in self.balanced],
            control_endpoint=ep.control_endpoint(self.run_dir, a.name, index),
            heartbeat_endpoint=ep.heartbeat_endpoint(self.run_dir),
            supervisor_pid=os.getpid(), all_topics=self.graph.topics(),
            image_topics=image_topics, image_hwm=self.image_hwm,
            cpu_affinity=list(a.cpu_affinity), nice=a.nice,
            realtime_priority=a.realtime_priority,
            curve=self.curve)

    def _expand(self, value: Any) -> Any:
        return expand_placeholders(value, self.graph.path, self.run_dir)

    # ------------------------------------------------------------------ lifecycle
    def _make_replica(self, a: ActorConfig, index: int) -> Replica:
        return Replica(actor=a, index=index,
                       spec_path=self.run_dir / "specs" / f"{a.name}.{index}.json",
                       log_path=self.run_dir / "logs" / f"{a.name}.{index}.log")

    def _spawn(self, r: Replica) -> None:
        self._spec(r.actor, r.index).save(r.spec_path)
        logf = open(r.log_path, "ab")
        try:
            r.popen = subprocess.Popen(
                [sys.executable, "-m", "edgevla.actors.runtime.process", str(r.spec_path)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                cwd=os.getcwd())
        finally:
            logf.close()
        self._pids.add(r.popen.pid)
        r.state = "running"
        r.started_at = time.monotonic()
        r.last_heartbeat_at = 0.0
        r.events.append(f"{time.monotonic() - self.started_at:.2f}s start pid {r.popen.pid}")

    def start(self) -> None:
        for name in self.graph.start_order():
            a = self.graph.actors[name]
            self.replicas[name] = [self._make_replica(a, i) for i in range(a.replicas)]
        self._start_ready()

    def _is_up(self, name: str) -> bool:
        return any(r.state == "running" and r.last_heartbeat_at for r in self.replicas[name])

    def _start_ready(self) -> None:
        """Start pending actors whose `after:` dependencies are up (setup done, heartbeating)."""
        for name in self.graph.start_order():
            for r in self.replicas[name]:
                if r.state == "pending" and all(self._is_up(d) for d in r.actor.after):
                    self._spawn(r)

    def all_replicas(self) -> list[Replica]:
        return [r for rs in self.replicas.values() for r in rs]

    def _reap_shm(self, r: Replica) -> None:
        """A dead actor cannot unlink its shared-memory segments: remove them for it."""
        if r.popen is not None and r.popen.poll() is not None:
            _shm.cleanup_pid(r.popen.pid)

    def _on_exit(self, r: Replica, code: int, now: float) -> None:
        self._reap_shm(r)
        r.last_exit = code
        failed = code != 0 or r.state == "hung"
        if failed:
            r.last_error = tail_error(r.log_path) or (
                "no heartbeat: killed as hung" if r.state == "hung" else f"exit code {code}")
        policy = r.actor.restart
        r.events.append(f"{now - self.started_at:.2f}s exit {code}"
                        f"{' (hung)' if r.state == 'hung' else ''}")
        if r.state == "stopping":
            r.state = "stopped"
            return
        restart = policy.policy == "always" or (policy.policy == "on-failure" and failed)
        if not restart:
            r.state = "failed" if failed else "exited"
            return
        if r.restarts >= policy.max_restarts:
            r.state = "failed"
            r.events.append(f"{now - self.started_at:.2f}s gave up after {r.restarts} restarts")
            log.error("%s: gave up after %d restarts", r.key, r.restarts)
            return
        if now - r.started_at > policy.reset_after_s:
            r.consecutive_failures = 0
        delay = min(policy.backoff_s * (2 ** r.consecutive_failures), policy.backoff_max_s)
        r.consecutive_failures += 1
        r.state = "backoff"
        r.next_start_at = now + delay
        r.events.append(f"{now - self.started_at:.2f}s restart in {delay:.3f}s")

    def poll_once(self, timeout_ms: int = 50) -> None:
        poller = zmq.Poller()
        poller.register(self.hb_sock, zmq.POLLIN)
        poller.register(self.ctl_sock, zmq.POLLIN)
        if self.control_sub:
            poller.register(self.control_sub.sock, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        now = time.monotonic()
        if self.hb_sock in events:
            self._drain_heartbeats(now)
        if self.ctl_sock in events:
            serve_requests(self.ctl_sock, self.handle)
        if self.control_sub and self.control_sub.sock in events:
            for _, msg in self.control_sub.drain_all():
                if isinstance(msg, Command):
                    self._apply_governor(msg)
        if any(r.state == "pending" for r in self.all_replicas()):
            self._start_ready()
        for r in self.all_replicas():
            if r.state in ("running", "hung", "stopping") and r.popen is not None:
                code = r.popen.poll()
                if code is not None:
                    self._on_exit(r, code, now)
                    continue
            if r.state == "running":
                silent_for = now - (r.last_heartbeat_at or r.started_at)
                limit = r.actor.heartbeat_timeout_s if r.last_heartbeat_at else \
                    max(STARTUP_GRACE_S, r.actor.heartbeat_timeout_s)
                if silent_for > limit:
                    log.error("%s: no heartbeat for %.1fs: killing it", r.key, silent_for)
                    r.events.append(f"{now - self.started_at:.2f}s hung ({silent_for:.1f}s "
                                    f"silent): SIGKILL")
                    r.state = "hung"
                    _kill(r.popen, signal.SIGKILL)
            elif r.state == "backoff" and now >= r.next_start_at:
                r.restarts += 1
                self._spawn(r)

    def _drain_heartbeats(self, now: float) -> None:
        while True:
            try:
                frames = self.hb_sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                _, hb = decode(frames)
            except MalformedMessage:
                self.malformed_heartbeats += 1
                continue
            if not isinstance(hb, Heartbeat):
                continue
            replica = int(hb.stats.get("replica", 0)) if isinstance(hb.stats, dict) else 0
            for r in self.replicas.get(hb.actor, []):
                if r.index == replica and r.pid == hb.pid:
                    r.last_heartbeat_at = now
                    r.last_stats = hb.stats
                    r.healthy_once = True

    # ------------------------------------------------------------------ control
    def _apply_governor(self, cmd: Command) -> None:
        args = cmd.args if isinstance(cmd.args, dict) else {}
        actor = args.get("actor")
        result: dict[str, Any] | None
        if cmd.name == "set_rate":
            result = self.scale(str(actor), hz=args.get("hz"))
        elif cmd.name == "set_param":
            result = self.set_param(str(actor), str(args.get("name")), args.get("value"))
        else:
            result = {"ok": False, "error": f"unknown governor command {cmd.name!r}"}
        self.governor_commands.append({"t_s": round(time.monotonic() - self.started_at, 3),
                                       "from": cmd.producer, "name": cmd.name, "args": args,
                                       "ok": bool(result and result.get("ok"))})

    def actor_request(self, r: Replica, payload: dict[str, Any], timeout_ms: int = 500):
        return request(self.ctx, ep.control_endpoint(self.run_dir, r.actor.name, r.index),
                       payload, timeout_ms=timeout_ms)

    def scale(self, actor: str, hz: float | None = None,
              replicas: int | None = None) -> dict[str, Any]:
        if actor not in self.graph.actors:
            return {"ok": False, "error": f"no actor {actor!r}; actors: "
                                          f"{', '.join(self.graph.actors)}"}
        a = self.graph.actors[actor]
        out: dict[str, Any] = {"ok": True}
        if hz is not None:
            if not isinstance(hz, (int, float)) or hz <= 0:
                return {"ok": False, "error": f"hz must be > 0, got {hz!r}"}
            self.rate_overrides[actor] = float(hz)  # restarts keep the new rate
            replies = [self.actor_request(r, {"cmd": "set_rate", "hz": float(hz)})
                       for r in self.replicas[actor] if r.state == "running"]
            out["rate_hz"] = float(hz)
            out["applied"] = sum(1 for x in replies if x and x.get("ok"))
        if replicas is not None:
            if not isinstance(replicas, int) or not 1 <= replicas <= a.max_replicas:
                return {"ok": False, "error": f"replicas must be 1..{a.max_replicas} "
                                              f"(max_replicas of {actor}), got {replicas!r}"}
            current = self.replicas[actor]
            while len(current) < replicas:
                r = self._make_replica(a, len(current))
                current.append(r)
                self._spawn(r)
            while len(current) > replicas:
                r = current.pop()
                self._stop_replica(r)
            out["replicas"] = replicas
        return out

    def set_param(self, actor: str, name: str, value: Any) -> dict[str, Any]:
        if actor not in self.replicas:
            return {"ok": False, "error": f"no actor {actor!r}"}
        replies = [self.actor_request(r, {"cmd": "set_param", "name": name, "value": value})
                   for r in self.replicas[actor] if r.state == "running"]
        ok = bool(replies) and all(x and x.get("ok") for x in replies)
        errors = [x.get("error") for x in replies if x and not x.get("ok")]
        return {"ok": ok, "errors": errors} if errors else {"ok": ok}

    def restart(self, actor: str) -> dict[str, Any]:
        if actor not in self.replicas:
            return {"ok": False, "error": f"no actor {actor!r}"}
        for r in self.replicas[actor]:
            if r.popen is not None and r.popen.poll() is None:
                _terminate(r.popen)
            self._reap_shm(r)
            r.restarts += 1
            self._spawn(r)
        return {"ok": True}

    def status(self) -> dict[str, Any]:
        actors = []
        for r in self.all_replicas():
            s = r.last_stats or {}
            actors.append({
                "actor": r.actor.name, "replica": r.index, "kind": r.actor.kind,
                "state": r.state, "pid": r.pid, "restarts": r.restarts,
                "rate_target_hz": self.rate_overrides.get(r.actor.name, r.actor.rate_hz),
                "rate_actual_hz": s.get("rate_actual_hz"), "loop_p50_ms": s.get("loop_p50_ms"),
                "loop_p99_ms": s.get("loop_p99_ms"), "malformed": s.get("malformed", 0),
                "skipped": s.get("skipped", 0), "dropped_send": s.get("dropped_send", 0),
                "rss_mb": s.get("rss_mb"), "cpu_s": s.get("cpu_s"), "steps": s.get("steps", 0),
                "actor_stats": s.get("actor_stats", {}), "bus": s.get("bus", {}),
                "outputs": sorted(set(r.actor.outputs.values())),
                "sent": sum((s.get("bus") or {}).get("sent", {}).values()),
                "last_exit": r.last_exit, "last_error": r.last_error,
                "healthy_once": r.healthy_once, "events": r.events[-20:],
            })
        return {"graph": self.graph.name, "run_dir": str(self.run_dir), "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started_at, 2), "actors": actors,
                "governor_commands": self.governor_commands[-50:]}

    def handle(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a map"}
        cmd = req.get("cmd")
        if cmd == "status":
            return {"ok": True, **self.status()}
        if cmd == "scale":
            return self.scale(str(req.get("actor")), hz=req.get("hz"),
                              replicas=req.get("replicas"))
        if cmd == "set_param":
            return self.set_param(str(req.get("actor")), str(req.get("name")), req.get("value"))
        if cmd == "restart":
            return self.restart(str(req.get("actor")))
        if cmd == "stop":
            self.stop_requested = True
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    # ------------------------------------------------------------------ running and stopping
    def run(self, duration_s: float | None = None,
            on_tick: Callable[["Supervisor"], None] | None = None,
            tick_period_s: float = 0.25) -> None:
        self.start()
        end = time.monotonic() + duration_s if duration_s else None
        next_cb = 0.0
        try:
            while not self.stop_requested and (end is None or time.monotonic() < end):
                self.poll_once(50)
                if on_tick and time.monotonic() >= next_cb:
                    on_tick(self)
                    next_cb = time.monotonic() + tick_period_s
        finally:
            self.stop()

    def _stop_replica(self, r: Replica, timeout_s: float = 3.0) -> None:
        if r.popen is not None and r.popen.poll() is None:
            r.state = "stopping"
            _terminate(r.popen, timeout_s)
        self._reap_shm(r)
        if r.state not in ("failed", "exited"):  # the summary must still say how it ended
            r.state = "stopped"

    def stop(self) -> None:
        final = self.status()
        order = self.graph.start_order()
        for name in reversed(order):
            for r in self.replicas.get(name, []):
                # last stats before it goes, for the summary
                if r.state == "running":
                    reply = self.actor_request(r, {"cmd": "stats"}, timeout_ms=300)
                    if reply and reply.get("ok"):
                        r.last_stats = reply["stats"]
                self._stop_replica(r)
        for pid in self._pids:  # every process of the run is gone: none of theirs may stay
            _shm.cleanup_pid(pid)
        self.final_status = {**final, **self.status()}
        (self.run_dir / SUPERVISOR_PID_FILE).unlink(missing_ok=True)
        (self.run_dir / "status.json").write_text(json.dumps(self.final_status, indent=1,
                                                             default=str))
        for s in (self.hb_sock, self.ctl_sock):
            s.close(linger=0)
        if self.control_sub:
            self.control_sub.close()
        self.ctx.term()

    def _write_pointer(self) -> None:
        """Let `edgevla status/scale/stop` find this run: its pid file says it is live (until
        `stop` removes it), the ``current`` pointer names the newest run started."""
        (self.run_dir / SUPERVISOR_PID_FILE).write_text(str(os.getpid()))
        pointer = self.run_dir.parent / "current"
        tmp = self.run_dir.parent / f".current.{os.getpid()}"
        tmp.write_text(str(self.run_dir))
        os.replace(tmp, pointer)


def _kill(p: subprocess.Popen | None, sig: int) -> None:
    if p is not None and p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def _terminate(p: subprocess.Popen, timeout_s: float = 3.0) -> None:
    _kill(p, signal.SIGTERM)
    try:
        p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(p, signal.SIGKILL)
        p.wait(timeout=5)


def run_is_live(run_dir: Path) -> bool:
    """Its supervisor wrote a pid file that `stop` has not removed, and that process lives."""
    try:
        pid = int((run_dir / SUPERVISOR_PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def live_runs(base_dir: str | None = None) -> list[Path]:
    """Run directories with a live supervisor, newest first."""
    base = run_base(base_dir)
    runs = [d for d in base.iterdir() if d.is_dir() and run_is_live(d)] if base.is_dir() else []
    return sorted(runs, key=lambda d: d.stat().st_mtime, reverse=True)


def find_run_dir(run_dir: str | None = None, base_dir: str | None = None) -> Path:
    """The run a command talks to: ``run_dir`` (a path, or a run's name under the base
    directory) or else the newest live run. FileNotFoundError says which is missing or ended."""
    base = run_base(base_dir)
    if run_dir:
        rd = Path(run_dir)
        if not rd.is_dir() and (base / run_dir).is_dir():
            rd = base / run_dir
        if not rd.is_dir():
            raise FileNotFoundError(f"no run {run_dir!r} (neither a directory nor a run under "
                                    f"{base}); live runs: {_names(live_runs(base_dir))}")
        if not run_is_live(rd):
            raise FileNotFoundError(f"run {rd.name} has ended (summary: {rd / 'status.json'}); "
                                    f"live runs: {_names(live_runs(base_dir))}")
        return rd
    live = live_runs(base_dir)
    if not live:
        raise FileNotFoundError(f"nothing is running (no live edgevla run under {base}); start "
                                f"one with `edgevla run GRAPH`")
    return live[0]


def _names(runs: list[Path]) -> str:
    return ", ".join(d.name for d in runs) or "none"


def supervisor_request(payload: dict[str, Any], run_dir: str | None = None,
                       timeout_ms: int = 2000) -> dict[str, Any]:
    rd = find_run_dir(run_dir)
    ctx = zmq.Context.instance()
    reply = request(ctx, ep.supervisor_endpoint(rd), payload, timeout_ms=timeout_ms)
    if reply is None:
        raise TimeoutError(f"supervisor at {rd} did not answer within {timeout_ms} ms "
                           f"(is it still running?)")
    return reply
