"""Real-time chunking, the executor's side: what a request says the executor has committed to.

The commitment must be what the executor then commands (the denoiser is pulled towards it), it
must travel the bus intact, and a malformed one is ignored rather than steering anything."""

from __future__ import annotations

import numpy as np
import pytest

from edgevla.actors.executor.actor import COMMIT_LOOKBACK_NS, ExecutorActor
from edgevla.actors.executor.core import ExecutorConfig, ExecutorCore
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.codec import decode, encode
from edgevla.actors.wire.messages import ActionChunk, Commitment, Request, RobotState

MS = 1_000_000
DT = 33 * MS


def _chunk(t0: int, seq: int, h: int = 30, offset: float = 0.0) -> np.ndarray:
    t = (t0 + np.arange(h) * DT) / 1e9
    return np.stack([np.sin(t + j) + offset for j in range(6)], axis=1).astype(np.float32)


def test_commitment_travels_the_bus_and_bad_ones_are_ignored():
    c = Commitment(np.arange(12, dtype=np.float32).reshape(2, 6), 5 * MS, DT, 90 * MS)
    got = decode(encode("exec/requests", Request(seq=3, reason="x").commit(c)))[1]
    back = got.commitment
    assert back is not None and np.array_equal(back.actions, c.actions)
    assert (back.t0_ns, back.dt_ns, back.delay_ns) == (c.t0_ns, c.dt_ns, c.delay_ns)
    assert back.end_ns == 5 * MS + DT
    assert decode(encode("r", Request(reason="plain")))[1].commitment is None
    for actions, timing in [(np.zeros(6, np.float32), [0, DT, 0]),  # not [n, D]
                            (np.zeros((2, 6), np.float32), [0, 0, 0]),  # dt 0
                            (np.zeros((2, 6), np.float32), [0, DT, -1]),  # negative delay
                            (np.full((2, 6), np.nan, np.float32), [0, DT, 0]),
                            (np.zeros((2, 6), np.float32), [0, DT])]:
        r = Request(committed=actions, committed_timing=np.asarray(timing, np.int64))
        assert r.commitment is None, (actions.shape, timing)


def test_planned_is_what_the_executor_then_commands():
    """Two overlapping chunks, crossfading: the plan sampled at future times equals the blended
    target each later tick computes (no newer chunk arrived in between)."""
    core = ExecutorCore(ExecutorConfig.from_params({"strategy": "crossfade", "crossfade_ms": 300,
                                                    "max_velocity_rad_s": 100.0,
                                                    "max_accel_rad_s2": 1e5}))
    t = 1_000 * MS
    core.add_chunk(now_ns=t, t0_ns=t, dt_ns=DT, actions=_chunk(t, 1), obs_seq=1, seq=1)
    core.tick(t)
    t2 = t + 400 * MS
    core.add_chunk(now_ns=t2, t0_ns=t2 - 50 * MS, dt_ns=DT, actions=_chunk(t2, 2, offset=0.2),
                   obs_seq=2, seq=2)
    plan = core.planned(t2, 10 * MS, 60)
    assert plan is not None and plan.shape == (60, 6)
    for i in range(60):
        out = core.tick(t2 + i * 10 * MS)
        assert out is not None and not out.starved
        assert np.allclose(plan[i], out.desired, atol=1e-6), i
    assert core.planned(t2 + 10_000 * MS, DT, 5) is None  # nothing covers it any more
    assert ExecutorCore(ExecutorConfig()).planned(0, DT, 5) is None


def test_plan_stops_at_the_end_of_coverage_and_fills_the_evicted_past():
    core = ExecutorCore(ExecutorConfig())
    t = 1_000 * MS
    a = _chunk(t, 1, h=10)
    core.add_chunk(now_ns=t, t0_ns=t, dt_ns=DT, actions=a, obs_seq=1, seq=1)
    plan = core.planned(t - 2 * DT, DT, 100)  # starts before the chunk: held at its first
    assert plan.shape == (12, 6)
    assert np.allclose(plan[0], a[0]) and np.allclose(plan[1], a[0]) and np.allclose(plan[2:], a)


def _executor(**params) -> ExecutorActor:
    ex = ExecutorActor("executor")
    ex.setup({"request_mode": "latency", "max_velocity_rad_s": 100.0, "max_accel_rad_s2": 1e5,
              "link_latency_ms": 5, **params})
    return ex


def _drive(ex: ExecutorActor, ticks: int, chunk_every: int = 40, latency_ms: int = 120):
    """100 Hz ticks; a chunk captured at each request arrives latency_ms later."""
    clock = VirtualClock(1_000 * MS)
    pending: list[ActionChunk] = []
    requests: list[tuple[int, Request]] = []
    commands: dict[int, np.ndarray] = {}
    seq = 0
    for k in range(ticks):
        now = 1_000 * MS + k * 10 * MS
        clock.set_ns(now)
        inputs = {"state": RobotState(joints=np.zeros(6, np.float32))} if k == 0 else {}
        due = [c for c in pending if c.t_pub_ns <= now]
        if due:
            inputs["chunks"] = due[-1]
            pending = [c for c in pending if c.t_pub_ns > now]
        out = ex.step(clock, inputs) or {}
        if "requests" in out:
            seq += 1
            requests.append((now, out["requests"]))
            pending.append(ActionChunk(t0_ns=now, dt_ns=DT, actions=_chunk(now, seq), obs_seq=seq,
                                       seq=seq, t_capture_ns=now, t_pub_ns=now + latency_ms * MS))
        if "commands" in out:
            commands[out["commands"].t_target_ns] = out["commands"].positions
    return requests, commands


def test_requests_carry_the_commitment_only_with_rtc_on():
    requests, _ = _drive(_executor(rtc=True), 400)
    committed = [(t, r.commitment) for t, r in requests if r.commitment is not None]
    assert len(committed) >= 3
    assert requests[0][1].commitment is None  # before the first chunk nothing is committed
    for t, c in committed:
        assert c.dt_ns == DT and c.t0_ns == t + 5 * MS - COMMIT_LOOKBACK_NS
        # the slowest recent capture -> arrival (120 ms) plus the link latency
        assert c.delay_ns == 125 * MS
    plain, _ = _drive(_executor(rtc=False), 400)
    assert all(r.commitment is None for _, r in plain)
    ex = _executor(rtc=False)
    ex.set_param("rtc", True)
    assert ex.core.cfg.rtc
    with pytest.raises(ValueError, match="rtc must be true or false"):
        ex.set_param("rtc", "yes")


def test_commitment_matches_the_commands_that_follow_it():
    """Between a request and the next chunk's arrival the executor commands exactly what it
    committed to (limits wide open, so the blended target is the command)."""
    requests, commands = _drive(_executor(rtc=True, strategy="latest"), 600)
    checked = 0
    for t, r in requests:
        c = r.commitment
        if c is None:
            continue
        # targets are for now + 5 ms; the next chunk arrives 120 ms after the request
        for t_target in range(t + 5 * MS, t + 120 * MS, 10 * MS):
            i = (t_target - c.t0_ns) / c.dt_ns
            lo = int(np.floor(i))
            if t_target not in commands or lo + 1 >= len(c.actions):
                continue
            f = i - lo
            expect = c.actions[lo] * (1 - f) + c.actions[lo + 1] * f
            assert np.allclose(commands[t_target], expect, atol=2e-3), (t, t_target)
            checked += 1
    assert checked >= 20


def test_latency_is_measured_on_the_executors_clock_alone():
    """A chunk published by another machine carries that machine's t_pub_ns: the executor's
    latency is its arrival minus the capture time (the robot's clock both), never t_pub."""
    ex = _executor()
    clock = VirtualClock(5_000 * MS)
    ex.step(clock, {"state": RobotState(joints=np.zeros(6, np.float32))})
    clock.set_ns(5_400 * MS)
    chunk = ActionChunk(t0_ns=5_000 * MS, dt_ns=DT, actions=_chunk(5_000 * MS, 1), obs_seq=1, seq=1,
                        t_capture_ns=5_000 * MS, t_pub_ns=10**15)  # the server's clock
    ex.step(clock, {"chunks": chunk})
    assert ex.stats()["inference_latency_ms_last"] == pytest.approx(400.0)
