"""The executor actor: action chunks in, one timestamped joint command per control tick out.

The runtime calls ``step`` at the graph's ``rate_hz`` (default 100 Hz): that is the control
clock. Each step takes the newest chunk and robot state, runs `ExecutorCore` for
``now + link_latency``, decides whether to request a new inference (`RequestPolicy`), feeds the
measured inference latency to the `Governor`, and publishes:

* ``commands`` – `JointCommand` (t_target_ns, positions, starved, chunk_seq) every tick;
* ``requests`` – `Request` (reason, horizon_left_ns) when the policy should run again;
* ``control``  – governor decisions as `Command` ``set_rate`` / ``set_param`` for the supervisor;
* ``robot_state`` – with an M7 link, its STATE reports (measured joints) as `RobotState`.

With ``mcu_port`` set, every command is also forwarded to the Cortex-M7 as a waypoint through
`edgevla.firmware_bridge.link.connection.McuLink(port).send_waypoints(t_host_ns, positions)`; without it
the commands are only published (and logged at debug level).

Graph params (all optional)::

    strategy: crossfade            # latest | weighted_average | average | crossfade | ensemble
    crossfade_ms: 200              # window; crossfade_shape: linear | cosine | minjerk
    ensemble_m: 0.01               # ACT temporal ensembling coefficient
    link_latency_ms: 5             # commands are computed for now + this
    min_horizon_ms: 20             # chunks with less future left on arrival are dropped
    request_mode: threshold        # threshold | rate | latency (actors/executor/request_policy.py)
    request_threshold: 0.5         # request when horizon left <= this fraction of a chunk
    request_latency_margin: 1.5    # latency mode: request at this many measured latencies left
    request_min_left_ms: 200       # latency mode: and at least this long before the end
    chunk_timing: capture          # capture: action i runs at t0 + i*dt (stale ones skipped);
                                   # arrival: the chunk starts when it arrives (sync baseline)
    rebase_when_idle: true         # a chunk captured while the arm held still starts at its
                                   # arrival (nothing in it is stale); false: by time as above
    request_rate_hz: 0             # > 0: request at a fixed rate instead
    request_timeout_ms: 1000       # re-request if nothing newer arrived by then
    joint_min: [-3.1, ...]         # rad, scalar or per joint; joint_max likewise
    max_velocity_rad_s: 3.0        # scalar or per joint
    max_accel_rad_s2: 40.0
    hold_decel_rad_s2: 40.0        # deceleration while starved
    rate_hz: 100                   # nominal control rate (first tick only; dt is measured)
    mcu_port: /dev/ttyRPMSG30      # forward waypoints to the M7
    calibration: follower.json     # the arm's LeRobot calibration: the M7's position limits
                                   # become each joint's calibrated range (sent at link-up)
    governor: {enabled: true, high: 0.8, low: 0.5, cooldown_ms: 1000, knobs: [...]}
    rtc: false                     # true: each request carries the commitment (real-time
                                   # chunking, `Commitment`): the targets from 100 ms before the
                                   # request to the end of coverage, at the newest chunk's dt,
                                   # and the expected delay; the denoise stage guides towards it
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable

import numpy as np

from edgevla.actors.executor.core import ExecutorConfig, ExecutorCore
from edgevla.actors.executor.governor import Governor, GovernorConfig, GovernorDecision
from edgevla.actors.executor.request_policy import RequestConfig, RequestPolicy
from edgevla.actors.runtime.actor import Actor, Outputs
from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.control import GovernorCommand
from edgevla.actors.wire.messages import (ActionChunk, Command, Commitment, JointCommand, Message, Request,
                                          RobotState)
from edgevla.firmware_bridge.link.codec import MODE_NAMES, faults_str
from edgevla.firmware_bridge.link.connection import McuLink
from edgevla.firmware_bridge.servos.joint_units import SO101_JOINTS, JointUnits, load_calibration

log = logging.getLogger("edgevla.executor")

# A commitment starts this long before its request: the observation the request gets may have
# been captured up to a camera period earlier, and the new chunk starts at that capture.
COMMIT_LOOKBACK_NS = 100_000_000

KNOWN_PARAMS = frozenset({
    "strategy", "crossfade_ms", "crossfade_shape", "ensemble_m", "link_latency_ms",
    "min_horizon_ms", "max_chunks", "request_mode", "request_threshold", "request_rate_hz",
    "request_timeout_ms", "request_startup_period_ms", "request_latency_margin",
    "request_min_left_ms", "joint_min", "joint_max", "calibration",
    "max_velocity_rad_s", "max_accel_rad_s2", "hold_decel_rad_s2", "rate_hz", "mcu_port",
    "governor", "chunk_timing", "rebase_when_idle", "rtc",
})
# changeable at run time through set_param (edgevla's control channel / the governor)
RUNTIME_PARAMS = KNOWN_PARAMS - {"mcu_port", "governor", "joint_min", "joint_max", "calibration"}


def _default_link_factory(port: str) -> Any:
    link = McuLink(port).start()
    try:  # estimate the M7 clock now, so the first tick does not wait for ping round trips
        link.sync_clock()
    except Exception as exc:  # noqa: BLE001 - the link retries on its own; keep going
        log.warning("M7 clock sync on %s failed (%s); retrying on first send", port, exc)
    return link


class ExecutorActor(Actor):
    inputs = ("chunks", "state")
    outputs = ("commands", "requests", "control", "robot_state")

    def __init__(self, name: str = "executor",
                 link_factory: Callable[[str], Any] | None = None) -> None:
        super().__init__(name)
        self._link_factory = link_factory or _default_link_factory
        self.link: Any = None

    # ------------------------------------------------------------------ lifecycle
    def setup(self, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - KNOWN_PARAMS)
        if unknown:
            raise ValueError(f"executor {self.name!r}: unknown params {unknown}; "
                             f"known: {', '.join(sorted(KNOWN_PARAMS))}")
        if params.get("chunk_timing", "capture") not in ("capture", "arrival"):
            raise ValueError(f"executor {self.name!r}: params.chunk_timing must be 'capture' "
                             f"or 'arrival', got {params.get('chunk_timing')!r}")
        self._params = dict(params)
        self.core = ExecutorCore(ExecutorConfig.from_params(self._params))
        self.requests = RequestPolicy(RequestConfig.from_params(self._params))
        self.governor = Governor(GovernorConfig.from_params(self._params.get("governor")))
        self._seq = 0
        self._request_seq = 0
        self._control_seq = 0
        self._chunk_horizon_ns = 0
        self._chunk_dt_ns = 0
        self.commitments_sent = 0
        self._request_log: deque[tuple[int, int]] = deque(maxlen=32)  # (t_request, left)
        self.commands_sent = 0
        self.waypoints_forwarded = 0
        self.link_errors = 0
        self.last_link_error = ""
        self.latency_ms_last: float | None = None
        self._last_mcu_state_ns = 0
        self._mcu_arm: dict[str, str] = {}  # the M7's mode and faults, from its newest STATE
        self._bus_state = False
        arm = None
        if self._params.get("calibration"):  # read before any link opens: a bad file stops here
            cal_path = str(self._params["calibration"])
            arm = JointUnits.from_calibration(load_calibration(cal_path), SO101_JOINTS,
                                              ["radians"] * len(SO101_JOINTS), source=cal_path)
        port = self._params.get("mcu_port")
        if port:
            self.link = self._link_factory(str(port))
            log.info("%s: forwarding waypoints to the M7 on %s", self.name, port)
            if arm is not None:
                self._send_calibrated_limits(arm)
        else:
            log.info("%s: no mcu_port; commands are published on 'commands' only", self.name)

    def _send_calibrated_limits(self, arm: JointUnits) -> None:
        lo, hi = arm.limits_rad()
        lim = self.core.cfg.limits
        self.link.set_limits(lo, hi, lim.max_velocity_rad_s, lim.max_accel_rad_s2)
        log.info("%s: M7 position limits from the calibration: %s", self.name,
                 ", ".join(f"{n} {a:.3f}..{b:.3f} rad" for n, a, b in zip(arm.names, lo, hi)))

    def close(self) -> None:
        if self.link is not None and hasattr(self.link, "close"):
            self.link.close()
        self.link = None

    def set_param(self, name: str, value: Any) -> None:
        if name not in RUNTIME_PARAMS:
            raise KeyError(f"{self.name}: no runtime parameter {name!r} "
                           f"(has: {', '.join(sorted(RUNTIME_PARAMS))})")
        params = dict(self._params, **{name: value})
        cfg = ExecutorConfig.from_params(params)  # validates before anything changes
        req = RequestConfig.from_params(params)
        self._params = params
        self.core.cfg = cfg
        self.requests.cfg = req

    # ------------------------------------------------------------------ the tick
    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        now = clock.now_ns()
        out: dict[str, Message | list[Message]] = {}
        state = inputs.get("state")
        if isinstance(state, RobotState):
            self.core.set_measured(state.joints)
            self._bus_state = True
        mcu_state = self._mcu_state()
        if mcu_state is not None:
            out["robot_state"] = mcu_state
            # Once a state input arrives it is the one source of the measured joints: the M7's
            # reports are not on the bus, and a replay, which has no M7, must see what the
            # executor saw.
            if not self._bus_state:
                self.core.set_measured(mcu_state.joints)
        chunk = inputs.get("chunks")
        if isinstance(chunk, ActionChunk):
            control = self._on_chunk(now, chunk)
            if control is not None:
                out["control"] = control
        tick = self.core.tick(now)
        if tick is not None:
            self._seq += 1
            cmd = JointCommand(seq=self._seq, t_capture_ns=tick.t_capture_ns,
                               t_pub_ns=now, producer=self.name, t_target_ns=tick.t_target_ns,
                               positions=tick.positions, starved=tick.starved,
                               chunk_seq=tick.chunk_seq)
            out["commands"] = cmd
            self.commands_sent += 1
            self._forward(cmd)
        request = self._maybe_request(now, starving=bool(tick and tick.starved))
        if request is not None:
            out["requests"] = request
        return out or None

    def _mcu_state(self) -> RobotState | None:
        """The M7's newest STATE report as a RobotState, once per report.

        On a board the measured joints come from the servos through the M7; publishing them
        here (port ``robot_state``) lets the vision stage and the recorder see them.
        """
        if self.link is None or not hasattr(self.link, "latest_state"):
            return None
        st = self.link.latest_state()
        if st is None or st.t_host_ns == self._last_mcu_state_ns:
            return None
        self._last_mcu_state_ns = st.t_host_ns
        self._mcu_arm = {"mode": MODE_NAMES.get(st.mode, str(st.mode)), "faults": faults_str(st.faults)}
        return RobotState(joints=np.asarray(st.measured, np.float32),
                          commanded=np.asarray(st.commanded, np.float32), faults=int(st.faults),
                          t_capture_ns=int(st.t_host_ns), producer=self.name)

    def _on_chunk(self, now: int, chunk: ActionChunk) -> Command | None:
        t0_ns = chunk.t0_ns
        if self._params.get("chunk_timing", "capture") == "arrival":
            # Synchronous execution (the baseline async is compared with): the whole chunk runs
            # from its arrival, as if the world had waited for the inference.
            t0_ns = now + int(self.core.cfg.link_latency_ms * 1e6)
        r = self.core.add_chunk(now_ns=now, t0_ns=t0_ns, dt_ns=chunk.dt_ns,
                                actions=chunk.actions, obs_seq=chunk.obs_seq, seq=chunk.seq,
                                t_capture_ns=chunk.t_capture_ns)
        self.requests.on_chunk_received(now, chunk.t_capture_ns)
        if not r.accepted:
            log.debug("%s: dropped chunk seq=%d obs=%d (%s, %.1f ms left)", self.name,
                      chunk.seq, chunk.obs_seq, r.reason, r.horizon_left_ns / 1e6)
            return None
        self._chunk_horizon_ns = int(np.asarray(chunk.actions).shape[0]) * int(chunk.dt_ns)
        self._chunk_dt_ns = int(chunk.dt_ns)
        if chunk.t_capture_ns <= 0:
            return None
        # capture to arrival, both on this machine's clock (the capture time travels with the
        # data): the network is in it, and no clock of another machine is ever compared
        latency = now - chunk.t_capture_ns
        self.latency_ms_last = latency / 1e6
        decision = self.governor.observe(now, latency, self._budget_ns(chunk.t_capture_ns))
        return None if decision is None else self._command(decision)

    def _budget_ns(self, t_capture_ns: int) -> int:
        """The horizon the inference for an observation captured at ``t_capture`` had to fit:
        what was left when it was requested, minus the wait from request to capture."""
        for t_req, left in reversed(self._request_log):
            if t_req <= t_capture_ns:
                return left - (t_capture_ns - t_req)
        return int(self.requests.cfg.threshold * self._chunk_horizon_ns)

    def _command(self, d: GovernorDecision) -> Command:
        self._control_seq += 1
        if d.kind == "rate":
            name, args = GovernorCommand.SET_RATE, {"actor": d.actor, "hz": d.value}
        else:
            name = GovernorCommand.SET_PARAM
            args = {"actor": d.actor, "name": d.name, "value": d.value}
        log.info("%s governor: %s %s.%s -> %g (%s)", self.name, d.direction, d.actor, d.name,
                 d.value, d.reason)
        return Command(seq=self._control_seq, producer=self.name, name=name, args=args)

    def _maybe_request(self, now: int, starving: bool) -> Request | None:
        end = self.core.coverage_end_ns()
        left = 0 if end is None else max(0, end - (now + self.core.cfg.link_latency_ns))
        d = self.requests.decide(now, horizon_left_ns=left,
                                 chunk_horizon_ns=self._chunk_horizon_ns,
                                 have_chunk=self.core.accepted_chunks > 0, starving=starving)
        if d is None:
            return None
        self._request_seq += 1
        self._request_log.append((now, d.horizon_left_ns))
        request = Request(seq=self._request_seq, t_pub_ns=now, producer=self.name,
                          reason=d.reason, horizon_left_ns=d.horizon_left_ns)
        commitment = self._commitment(now) if self.core.cfg.rtc else None
        if commitment is not None:
            request.commit(commitment)
            self.commitments_sent += 1
        return request

    def _commitment(self, now: int) -> Commitment | None:
        """What the executor will command from just before ``now`` on, if no newer chunk comes."""
        dt = self._chunk_dt_ns
        if dt <= 0 or self._chunk_horizon_ns <= 0:
            return None
        t0 = now + self.core.cfg.link_latency_ns - COMMIT_LOOKBACK_NS
        n = (COMMIT_LOOKBACK_NS + self._chunk_horizon_ns) // dt + 1
        actions = self.core.planned(t0, dt, n)
        if actions is None:
            return None
        latency = self.requests.latency_estimate_ns
        delay = (latency if latency is not None else 0) + self.core.cfg.link_latency_ns
        return Commitment(actions, t0, dt, int(delay))

    def _forward(self, cmd: JointCommand) -> None:
        if self.link is None:
            if log.isEnabledFor(logging.DEBUG):  # formatting costs more than the whole tick
                log.debug("%s: t=%d %s%s", self.name, cmd.t_target_ns,
                          np.array2string(cmd.positions, precision=4),
                          " (hold)" if cmd.starved else "")
            return
        try:
            ok = self.link.send_waypoints([cmd.t_target_ns], cmd.positions.reshape(1, -1))
        except Exception as exc:  # noqa: BLE001 - a link fault must not stop the control clock
            ok = False
            self.last_link_error = f"{type(exc).__name__}: {exc}"
        if ok is False:
            self.link_errors += 1
            if self.link_errors in (1, 10, 100) or self.link_errors % 1000 == 0:
                log.warning("%s: M7 link write failed (%d so far) %s", self.name,
                            self.link_errors, self.last_link_error)
        else:
            self.waypoints_forwarded += 1

    def stats(self) -> dict[str, Any]:
        s = self.core.stats()
        s.update(self.requests.stats())
        s["strategy"] = self.core.cfg.blend.strategy
        s["commands_sent"] = self.commands_sent
        s["commitments_sent"] = self.commitments_sent
        s["inference_latency_ms_last"] = self.latency_ms_last
        s["governor"] = self.governor.stats()
        s["mcu"] = {"port": self._params.get("mcu_port"), "forwarded": self.waypoints_forwarded,
                    "errors": self.link_errors, "last_error": self.last_link_error, **self._mcu_arm}
        return s
