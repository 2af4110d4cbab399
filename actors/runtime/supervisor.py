"""The supervisor: starts a graph's actors as processes, watches them, restarts them, stops them.

One supervisor per run. It writes each actor's `ProcessSpec`, starts producers before
consumers, and then loops: heartbeats in (PULL), control requests from the CLI (REP), rate and
parameter commands from governors (the graph's ``control`` output ports), exit and hang
detection, restarts with exponential backoff up to ``max_restarts`` (the rules are in
`restart_policy`). It stops actors in reverse start order. Actors arm PR_SET_PDEATHSIG, so a
SIGKILLed supervisor leaves no orphans.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import zmq

from edgevla.actors.console.output_files import write_json_whole
from edgevla.actors.runtime import restart_policy
from edgevla.actors.runtime.actor_wiring import ActorWiring
from edgevla.actors.runtime.graph import ActorConfig, GraphConfig
from edgevla.actors.runtime.peer_status import PeerStatus
from edgevla.actors.runtime.replica import Replica, kill, terminate
from edgevla.actors.runtime.run_lookup import SUPERVISOR_PID_FILE, announce_run
from edgevla.actors.runtime.run_verdict import tail_error
from edgevla.actors.wire import endpoints as ep
from edgevla.actors.wire import shm as _shm
from edgevla.actors.wire.bus import Subscriber, bind, curve_keys, make_run_dir, request, serve_requests
from edgevla.actors.wire.codec import decode
from edgevla.actors.wire.control import ActorCommand, GovernorCommand, ReplicaState, SupervisorCommand
from edgevla.actors.wire.curve_auth import start_authenticator
from edgevla.actors.wire.errors import MalformedMessage
from edgevla.actors.wire.messages import Command, Heartbeat

log = logging.getLogger("edgevla.supervisor")

# a replica in one of these states has a process whose exit we have not seen yet
_PROCESS_STATES = (ReplicaState.RUNNING, ReplicaState.HUNG, ReplicaState.STOPPING)


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
        self.wiring = ActorWiring(graph, self.run_dir)
        self.replicas: dict[str, list[Replica]] = {}
        self.rate_overrides: dict[str, float] = {}
        self.stop_requested = False
        self.started_at = time.monotonic()
        self.malformed_heartbeats = 0
        self.governor_commands: list[dict[str, Any]] = []
        self._pids: set[int] = set()  # every actor pid of this run: their shm segments
        control_topics = [t for a in graph.actors.values() for p, t in a.outputs.items()
                          if p == "control"]
        self.control_sub = Subscriber(  # a CURVE publisher answers only a CURVE client
            self.ctx, [self.wiring.endpoint(t, r) for t in control_topics
                       for r in range(graph.actors[graph.producers()[t]].max_replicas)],
            control_topics, curve=curve_keys(self.wiring.curve, server=False)) \
            if control_topics else None
        self.peers, self._auth = None, None
        if graph.placement is not None:  # one graph across machines: show the other halves
            curve = self.wiring.curve
            if curve and curve.get("allowed"):
                self._auth = start_authenticator(self.ctx, curve["allowed"])
            self.peers = PeerStatus(self.ctx, graph.placement, graph.network.base_port, curve)
        announce_run(self.run_dir)

    # ------------------------------------------------------------------ lifecycle
    def _make_replica(self, a: ActorConfig, index: int) -> Replica:
        return Replica(actor=a, index=index,
                       spec_path=self.run_dir / "specs" / f"{a.name}.{index}.json",
                       log_path=self.run_dir / "logs" / f"{a.name}.{index}.log")

    def _spawn(self, r: Replica) -> None:
        rate_hz = self.rate_overrides.get(r.actor.name, r.actor.rate_hz)
        self.wiring.spec(r.actor, r.index, rate_hz).save(r.spec_path)
        logf = open(r.log_path, "ab")
        try:
            r.popen = subprocess.Popen(
                [sys.executable, "-m", "edgevla.actors.runtime.process", str(r.spec_path)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                cwd=os.getcwd())
        finally:
            logf.close()
        self._pids.add(r.popen.pid)
        r.state = ReplicaState.RUNNING
        r.started_at = time.monotonic()
        r.last_heartbeat_at = 0.0
        r.events.append(f"{self._t(r.started_at)} start pid {r.popen.pid}")

    def _t(self, now: float) -> str:
        """An event's time stamp: seconds since the run started."""
        return f"{now - self.started_at:.2f}s"

    def start(self) -> None:
        for name in self.graph.start_order():
            a = self.graph.actors[name]
            self.replicas[name] = [self._make_replica(a, i) for i in range(a.replicas)]
        self._start_ready()

    def _is_up(self, name: str) -> bool:
        return any(r.state == ReplicaState.RUNNING and r.last_heartbeat_at
                   for r in self.replicas[name])

    def _start_ready(self) -> None:
        """Start pending actors whose `after:` dependencies are up (setup done, heartbeating)."""
        for name in self.graph.start_order():
            for r in self.replicas[name]:
                if r.state == ReplicaState.PENDING and all(self._is_up(d) for d in r.actor.after):
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
        hung = r.state == ReplicaState.HUNG
        d = restart_policy.decide_on_exit(
            r.actor.restart, code=code, state=r.state, restarts=r.restarts,
            consecutive_failures=r.consecutive_failures, ran_for_s=now - r.started_at)
        if d.failed:
            r.last_error = tail_error(r.log_path) or (
                "no heartbeat: killed as hung" if hung else f"exit code {code}")
        r.events.append(f"{self._t(now)} exit {code}{' (hung)' if hung else ''}")
        r.state = d.state
        r.consecutive_failures = d.consecutive_failures
        if d.gave_up:
            r.events.append(f"{self._t(now)} gave up after {r.restarts} restarts")
            log.error("%s: gave up after %d restarts", r.key, r.restarts)
        elif d.delay_s is not None:
            r.next_start_at = now + d.delay_s
            r.events.append(f"{self._t(now)} restart in {d.delay_s:.3f}s")

    def _check_replica(self, r: Replica, now: float) -> None:
        """Notice an exit, kill a hung replica, restart one whose back-off is over."""
        if r.state in _PROCESS_STATES and r.popen is not None:
            code = r.popen.poll()
            if code is not None:
                self._on_exit(r, code, now)
                return
        if r.state == ReplicaState.RUNNING:
            silent_for = restart_policy.silence_s(now, r.started_at, r.last_heartbeat_at)
            if restart_policy.is_hung(silent_for, r.actor.heartbeat_timeout_s,
                                      had_heartbeat=bool(r.last_heartbeat_at)):
                log.error("%s: no heartbeat for %.1fs: killing it", r.key, silent_for)
                r.events.append(f"{self._t(now)} hung ({silent_for:.1f}s silent): SIGKILL")
                r.state = ReplicaState.HUNG
                kill(r.popen, signal.SIGKILL)
        elif r.state == ReplicaState.BACKOFF and restart_policy.restart_due(now, r.next_start_at):
            r.restarts += 1
            self._spawn(r)

    def poll_once(self, timeout_ms: int = 50) -> None:
        poller = zmq.Poller()
        poller.register(self.hb_sock, zmq.POLLIN)
        poller.register(self.ctl_sock, zmq.POLLIN)
        if self.control_sub:
            poller.register(self.control_sub.sock, zmq.POLLIN)
        if self.peers:
            poller.register(self.peers.sub, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        if self.peers:
            self.peers.drain()
            if self.peers.due():
                self.peers.publish(self._own_status())
        now = time.monotonic()
        if self.hb_sock in events:
            self._drain_heartbeats(now)
        if self.ctl_sock in events:
            serve_requests(self.ctl_sock, self.handle)
        if self.control_sub and self.control_sub.sock in events:
            for _, msg in self.control_sub.drain_all():
                if isinstance(msg, Command):
                    self._apply_governor(msg)
        if any(r.state == ReplicaState.PENDING for r in self.all_replicas()):
            self._start_ready()
        for r in self.all_replicas():
            self._check_replica(r, now)

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
            if not isinstance(hb, Heartbeat):  # a valid message, but not one of ours here
                self.malformed_heartbeats += 1
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
        if cmd.name == GovernorCommand.SET_RATE:
            result = self.scale(str(actor), hz=args.get("hz"))
        elif cmd.name == GovernorCommand.SET_PARAM:
            result = self.set_param(str(actor), str(args.get("name")), args.get("value"))
        else:
            result = {"ok": False, "error": f"unknown governor command {cmd.name!r}"}
        self.governor_commands.append({"t_s": round(time.monotonic() - self.started_at, 3),
                                       "from": cmd.producer, "name": cmd.name, "args": args,
                                       "ok": bool(result and result.get("ok"))})

    def actor_request(self, r: Replica, payload: dict[str, Any], timeout_ms: int = 500):
        return request(self.ctx, ep.control_endpoint(self.run_dir, r.actor.name, r.index),
                       payload, timeout_ms=timeout_ms)

    def _running(self, actor: str) -> list[Replica]:
        return [r for r in self.replicas[actor] if r.state == ReplicaState.RUNNING]

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
            replies = [self.actor_request(r, {"cmd": ActorCommand.SET_RATE, "hz": float(hz)})
                       for r in self._running(actor)]
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
        replies = [self.actor_request(r, {"cmd": ActorCommand.SET_PARAM, "name": name,
                                          "value": value})
                   for r in self._running(actor)]
        ok = bool(replies) and all(x and x.get("ok") for x in replies)
        errors = [x.get("error") for x in replies if x and not x.get("ok")]
        return {"ok": ok, "errors": errors} if errors else {"ok": ok}

    def restart(self, actor: str) -> dict[str, Any]:
        if actor not in self.replicas:
            return {"ok": False, "error": f"no actor {actor!r}"}
        for r in self.replicas[actor]:
            if r.popen is not None and r.popen.poll() is None:
                terminate(r.popen)
            self._reap_shm(r)
            r.restarts += 1
            self._spawn(r)
        return {"ok": True}

    def _replica_status(self, r: Replica) -> dict[str, Any]:
        s = r.last_stats or {}
        return {
            "actor": r.actor.name, "replica": r.index, "kind": r.actor.kind,
            "state": r.state, "pid": r.pid, "restarts": r.restarts,
            "rate_target_hz": self.rate_overrides.get(r.actor.name, r.actor.rate_hz),
            "rate_actual_hz": s.get("rate_actual_hz"), "loop_p50_ms": s.get("loop_p50_ms"),
            "loop_p99_ms": s.get("loop_p99_ms"), "malformed": s.get("malformed", 0),
            "skipped": s.get("skipped", 0), "dropped_send": s.get("dropped_send", 0),
            "rss_mb": s.get("rss_mb"), "rss_peak_mb": s.get("rss_peak_mb"), "cpu_s": s.get("cpu_s"),
            "steps": s.get("steps", 0),
            "actor_stats": s.get("actor_stats", {}), "bus": s.get("bus", {}),
            "outputs": sorted(set(r.actor.outputs.values())),
            "sent": sum((s.get("bus") or {}).get("sent", {}).values()),
            "last_exit": r.last_exit, "last_error": r.last_error,
            "healthy_once": r.healthy_once, "events": r.events[-20:],
        }

    def _own_status(self) -> dict[str, Any]:
        return {"graph": self.graph.name, "run_dir": str(self.run_dir), "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started_at, 2),
                "actors": [self._replica_status(r) for r in self.all_replicas()],
                "governor_commands": self.governor_commands[-50:]}

    def status(self) -> dict[str, Any]:
        """This machine's actors; with a graph across machines also ``machine`` and ``peers``
        (`PeerStatus.view`: the other halves as last heard)."""
        out = self._own_status()
        if self.peers:
            out["machine"], out["peers"] = self.graph.placement.machine, self.peers.view()
        return out

    def handle(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a map"}
        cmd = req.get("cmd")
        if cmd == SupervisorCommand.STATUS:
            return {"ok": True, **self.status()}
        if cmd == SupervisorCommand.SCALE:
            return self.scale(str(req.get("actor")), hz=req.get("hz"),
                              replicas=req.get("replicas"))
        if cmd == SupervisorCommand.SET_PARAM:
            return self.set_param(str(req.get("actor")), str(req.get("name")), req.get("value"))
        if cmd == SupervisorCommand.RESTART:
            return self.restart(str(req.get("actor")))
        if cmd == SupervisorCommand.STOP:
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
            r.state = ReplicaState.STOPPING
            terminate(r.popen, timeout_s)
        self._reap_shm(r)
        # the summary must still say how it ended
        if r.state not in (ReplicaState.FAILED, ReplicaState.EXITED):
            r.state = ReplicaState.STOPPED

    def stop(self) -> None:
        final = self.status()
        order = self.graph.start_order()
        for name in reversed(order):
            for r in self.replicas.get(name, []):
                # last stats before it goes, for the summary
                if r.state == ReplicaState.RUNNING:
                    reply = self.actor_request(r, {"cmd": ActorCommand.STATS}, timeout_ms=300)
                    if reply and reply.get("ok"):
                        r.last_stats = reply["stats"]
                self._stop_replica(r)
                if r.last_error is None:  # one that kept running may still have said why it
                    r.last_error = tail_error(r.log_path)  # produced nothing
        for pid in self._pids:  # every process of the run is gone: none of theirs may stay
            _shm.cleanup_pid(pid)
        self.final_status = {**final, **self.status()}
        (self.run_dir / SUPERVISOR_PID_FILE).unlink(missing_ok=True)
        write_json_whole(self.run_dir / "status.json", self.final_status)
        for s in (self.hb_sock, self.ctl_sock):
            s.close(linger=0)
        if self.control_sub:
            self.control_sub.close()
        if self.peers:
            self.peers.close()
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()
