"""Hypothesis properties of the executor core (issue 5's acceptance, the heart of it).

Each example builds an arbitrary chunk stream (arrival times, inference latencies, chunk sizes,
dt, jitter, out-of-order and duplicate deliveries), drives `ExecutorCore` on a virtual timeline
at its control rate and checks the timing properties on every command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.actors.executor.blending import STRATEGIES, BlendConfig
from edgevla.actors.executor.core import ExecutorConfig, ExecutorCore, SafetyLimits

MS = 1_000_000
PROPS = settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Chunk:
    arrival_ns: int
    t0_ns: int
    dt_ns: int
    actions: np.ndarray
    obs_seq: int
    seq: int

    @property
    def end_ns(self) -> int:
        return self.t0_ns + self.actions.shape[0] * self.dt_ns


def make_core(strategy: str, rate_hz: float, latency_ms: float, vmax: float, amax: float,
              hold: float, min_horizon_ms: float = 10.0, joint_limits: float | None = None,
              crossfade_ms: float = 150.0, rebase_when_idle: bool = False) -> ExecutorCore:
    # The properties below are those of the time model itself (action i at t0 + i*dt); the
    # rebase of chunks captured while the arm held still has its own tests at the end.
    limits = SafetyLimits(
        joint_min=None if joint_limits is None else np.array([-joint_limits]),
        joint_max=None if joint_limits is None else np.array([joint_limits]),
        max_velocity_rad_s=np.array([vmax]), max_accel_rad_s2=np.array([amax]),
        hold_decel_rad_s2=np.array([hold]))
    return ExecutorCore(ExecutorConfig(rate_hz=rate_hz, link_latency_ms=latency_ms,
                                       min_horizon_ms=min_horizon_ms,
                                       rebase_when_idle=rebase_when_idle,
                                       blend=BlendConfig(strategy=strategy,
                                                         crossfade_ms=crossfade_ms),
                                       limits=limits))


def run(core: ExecutorCore, chunks: list[Chunk], t_end_ns: int):
    """Tick from 0 to t_end; deliver every chunk that arrived since the last tick, in order."""
    tick = core.cfg.tick_ns
    pending = sorted(chunks, key=lambda c: c.arrival_ns)
    out = []
    j = 0
    for k in range(t_end_ns // tick + 1):
        now = k * tick
        while j < len(pending) and pending[j].arrival_ns <= now:
            c = pending[j]
            core.add_chunk(now_ns=now, t0_ns=c.t0_ns, dt_ns=c.dt_ns, actions=c.actions,
                           obs_seq=c.obs_seq, seq=c.seq)
            j += 1
        o = core.tick(now)
        if o is not None:
            out.append((now, o))
    return out


@st.composite
def chunk_streams(draw, n_joints: int = 3):
    """Arbitrary streams: irregular arrivals, latencies, sizes, dt, out-of-order obs."""
    n = draw(st.integers(1, 7))
    chunks = []
    t = draw(st.integers(0, 200)) * MS
    for k in range(n):
        t += draw(st.integers(0, 600)) * MS
        latency = draw(st.integers(0, 500)) * MS
        dt = draw(st.integers(5, 60)) * MS
        h = draw(st.integers(1, 40))
        jitter = draw(st.integers(-20, 20)) * MS
        values = draw(st.lists(st.floats(-2.0, 2.0, allow_nan=False), min_size=h * n_joints,
                               max_size=h * n_joints))
        obs_seq = k if draw(st.integers(0, 5)) else max(0, k - draw(st.integers(1, 3)))
        chunks.append(Chunk(t, t - latency + jitter, dt,
                            np.array(values, dtype=np.float32).reshape(h, n_joints), obs_seq, k))
    return chunks


common = dict(
    strategy=st.sampled_from(STRATEGIES),
    rate_hz=st.sampled_from([50.0, 100.0, 200.0, 333.0]),
    latency_ms=st.integers(0, 40),
    vmax=st.floats(0.2, 8.0),
    amax=st.floats(2.0, 200.0),
    hold=st.floats(2.0, 200.0),
)


@PROPS
@given(stream=chunk_streams(), **common)
def test_step_velocity_targets_in_future_and_deterministic(stream, strategy, rate_hz, latency_ms,
                                                           vmax, amax, hold):
    t_end = max(c.end_ns for c in stream) + 300 * MS
    core = make_core(strategy, rate_hz, latency_ms, vmax, amax, hold)
    out = run(core, stream, t_end)
    lat_ns = int(round(latency_ms * MS))
    prev = None
    for now, o in out:
        # never a command for a time already past at send time
        assert o.t_target_ns == now + lat_ns
        assert o.positions.dtype == np.float32 and np.all(np.isfinite(o.positions))
        if prev is not None:
            assert o.t_target_ns > prev.t_target_ns
            dt_s = (o.t_target_ns - prev.t_target_ns) / 1e9
            step = np.max(np.abs(o.positions.astype(np.float64) - prev.positions))
            assert step <= vmax * dt_s * (1 + 1e-6) + 1e-6, (step, vmax * dt_s)
        prev = o
    # identical inputs on the virtual clock -> bit-identical outputs
    twin = make_core(strategy, rate_hz, latency_ms, vmax, amax, hold)
    again = run(twin, stream, t_end)
    assert len(again) == len(out)
    for (n1, a), (n2, b) in zip(out, again):
        assert n1 == n2 and a.t_target_ns == b.t_target_ns and a.starved == b.starved
        assert a.positions.tobytes() == b.positions.tobytes()
    assert core.stats() == twin.stats()  # stats are output too


def reference_value(c: Chunk, t: int) -> np.ndarray:
    """Independent re-statement of the chunk model: linear between waypoints, last held."""
    x = (t - c.t0_ns) / c.dt_ns
    h = c.actions.shape[0]
    a = c.actions.astype(np.float64)
    i = math.floor(x)
    if i >= h - 1:
        return a[-1]
    return a[i] + (x - i) * (a[i + 1] - a[i])


@PROPS
@given(stream=chunk_streams(), rate_hz=common["rate_hz"], latency_ms=common["latency_ms"])
def test_latest_executes_the_newest_chunk_at_the_target_time(stream, rate_hz, latency_ms):
    """With `latest`, the pre-safety target is exactly the newest accepted observation's chunk
    evaluated at now + link_latency: nothing from the past, nothing from an older observation."""
    core = make_core("latest", rate_hz, latency_ms, 8.0, 200.0, 200.0)
    t_end = max(c.end_ns for c in stream) + 100 * MS
    by_seq = {c.seq: c for c in stream}
    newest_obs = -1
    accepted_obs: dict[int, int] = {}
    tick = core.cfg.tick_ns
    pending = sorted(stream, key=lambda c: c.arrival_ns)
    j = 0
    for k in range(t_end // tick + 1):
        now = k * tick
        while j < len(pending) and pending[j].arrival_ns <= now:
            c = pending[j]
            r = core.add_chunk(now_ns=now, t0_ns=c.t0_ns, dt_ns=c.dt_ns, actions=c.actions,
                               obs_seq=c.obs_seq, seq=c.seq)
            if r.accepted:
                assert c.obs_seq >= newest_obs
                newest_obs = c.obs_seq
                accepted_obs[c.seq] = c.obs_seq
            j += 1
        o = core.tick(now)
        if o is None or o.starved:
            continue
        c = by_seq[o.chunk_seq]
        t = o.t_target_ns
        assert c.t0_ns <= t < c.end_ns
        # no newer accepted chunk covers this time (latest wins)
        for s, obs in accepted_obs.items():
            d = by_seq[s]
            if (obs, s) > (c.obs_seq, c.seq) and d.t0_ns <= t < d.end_ns:
                raise AssertionError(f"chunk {s} is newer and covers t, but {c.seq} ran")
        np.testing.assert_allclose(o.desired, reference_value(c, t).astype(np.float32),
                                   rtol=0, atol=1e-6)


@st.composite
def punctual_streams(draw):
    """Every chunk arrives before the previous one's horizon ends (minus link latency) and
    starts at or before its own arrival (t0 from the observation's capture time)."""
    latency_ms = draw(st.integers(0, 40))
    rate_hz = draw(st.sampled_from([50.0, 100.0, 200.0]))
    tick = int(round(1e9 / rate_hz))
    min_h = 10 * MS
    n = draw(st.integers(1, 8))
    chunks: list[Chunk] = []
    prev_end = None
    arrival = draw(st.integers(0, 100)) * MS
    for k in range(n):
        inference = draw(st.integers(0, 500)) * MS
        if prev_end is not None:
            slack = prev_end - latency_ms * MS - chunks[-1].arrival_ns
            arrival = chunks[-1].arrival_ns + draw(st.integers(0, max(0, slack // MS))) * MS
            arrival = min(arrival, prev_end - latency_ms * MS)
        dt = draw(st.integers(5, 50)) * MS
        need = inference + latency_ms * MS + min_h + tick + dt  # survives min_horizon
        h = max(-(-need // dt), draw(st.integers(1, 60)))
        values = draw(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=h * 2,
                               max_size=h * 2))
        c = Chunk(arrival, arrival - inference, dt,
                  np.array(values, dtype=np.float32).reshape(h, 2), k, k)
        chunks.append(c)
        prev_end = c.end_ns
    return latency_ms, rate_hz, chunks


@PROPS
@given(case=punctual_streams(), strategy=common["strategy"], vmax=common["vmax"],
       amax=common["amax"])
def test_zero_starvation_when_every_chunk_arrives_in_time(case, strategy, vmax, amax):
    latency_ms, rate_hz, chunks = case
    core = make_core(strategy, rate_hz, latency_ms, vmax, amax, amax)
    t_last = chunks[-1].end_ns - latency_ms * MS - 1  # every tick whose target is covered
    out = run(core, chunks, t_last)
    assert core.dropped == {r: 0 for r in core.dropped}
    assert out, "the first chunk covers its own arrival tick"
    assert [o for _, o in out if o.starved] == []
    assert core.stats()["starvation_ticks"] == 0


@PROPS
@given(stream=chunk_streams(n_joints=2), **common)
def test_hold_is_bounded_and_smooth(stream, strategy, rate_hz, latency_ms, vmax, amax, hold):
    """While starved every joint only decelerates (at most hold_decel) to a stop; the distance
    travelled in one hold is at most v0^2 / (2 * hold_decel) + v0 * tick."""
    core = make_core(strategy, rate_hz, latency_ms, vmax, amax, hold)
    out = run(core, stream, max(c.end_ns for c in stream) + 500 * MS)
    dt = core.cfg.tick_ns / 1e9
    prev_v = None
    prev = None
    start_pos = None
    v0 = None
    for _, o in out:
        if prev is not None:
            v = (o.positions.astype(np.float64) - prev.positions) / dt
            if o.starved:
                if start_pos is None:  # first hold tick of an episode
                    start_pos, v0 = prev.positions.astype(np.float64), np.abs(prev_v)
                tol = 1e-3 + 1e-4 * np.abs(prev_v)
                assert np.all(np.abs(v) <= np.abs(prev_v) + tol), "hold never speeds up"
                assert np.all(np.abs(v - prev_v) <= hold * dt * (1 + 1e-6) + tol)
                travel = np.abs(o.positions - start_pos)
                bound = v0 ** 2 / (2 * hold) + v0 * dt + 1e-4
                assert np.all(travel <= bound), (travel, bound)
            else:
                start_pos = None
            prev_v = v
        else:
            prev_v = np.zeros(o.positions.shape)
        prev = o
    # after a long hold everything has stopped
    trailing = 0
    for _, o in reversed(out):
        if not o.starved:
            break
        trailing += 1
    if trailing * dt > vmax / hold + 2 * dt:
        assert np.all(np.abs(core.velocity) < 1e-9)


@PROPS
@given(stream=chunk_streams(n_joints=2), strategy=common["strategy"],
       amax=common["amax"], limit=st.floats(0.1, 1.5))
def test_joint_limits_and_acceleration(stream, strategy, amax, limit):
    core = make_core(strategy, 100.0, 5.0, 4.0, amax, amax, joint_limits=limit)
    out = run(core, stream, max(c.end_ns for c in stream) + 200 * MS)
    dt = core.cfg.tick_ns / 1e9
    vs, at_limit = [], []
    for i, (_, o) in enumerate(out):
        assert np.all(np.abs(o.positions) <= limit + 1e-6)
        if i:
            vs.append((o.positions.astype(np.float64) - out[i - 1][1].positions) / dt)
            at_limit.append(np.abs(o.positions) >= limit - 1e-6)
    for a, b, lim in zip(vs, vs[1:], at_limit[1:]):
        # acceleration is bounded except where a joint runs into its hard limit
        ok = (np.abs(b - a) <= amax * dt * (1 + 1e-5) + 1e-3) | lim
        assert np.all(ok)


def test_staleness_by_time_and_drop_reasons():
    core = make_core("latest", 100.0, 20.0, 100.0, 1e4, 1e4, min_horizon_ms=50.0)
    acts = np.arange(10, dtype=np.float32).reshape(10, 1)
    # chunk from an observation 25 ms ago, dt 10 ms: actions at 975, 985, ... 1065 ms; the
    # target time is now + 20 ms = 1020 ms, so the 5 actions before it are skipped by time
    r = core.add_chunk(now_ns=1000 * MS, t0_ns=975 * MS, dt_ns=10 * MS, actions=acts,
                       obs_seq=5, seq=1)
    assert r.accepted and r.skipped_stale == 5 and r.horizon_left_ns == 55 * MS
    o = core.tick(1000 * MS)
    assert o.t_target_ns == 1020 * MS
    assert o.desired[0] == pytest.approx(4.5)  # halfway between action 4 (1015) and 5 (1025)
    # an older observation's chunk never overrides the newer one
    r = core.add_chunk(now_ns=1000 * MS, t0_ns=1000 * MS, dt_ns=10 * MS, actions=acts,
                       obs_seq=4, seq=2)
    assert not r.accepted and r.reason == "older_observation"
    r = core.add_chunk(now_ns=1000 * MS, t0_ns=1000 * MS, dt_ns=10 * MS, actions=acts,
                       obs_seq=5, seq=1)
    assert r.reason == "duplicate"
    # remaining horizon 30 ms < min_horizon 50 ms
    r = core.add_chunk(now_ns=1000 * MS, t0_ns=960 * MS, dt_ns=10 * MS, actions=acts,
                       obs_seq=6, seq=3)
    assert r.reason == "short_horizon"
    r = core.add_chunk(now_ns=1000 * MS, t0_ns=800 * MS, dt_ns=10 * MS, actions=acts,
                       obs_seq=7, seq=4)
    assert r.reason == "expired"
    r = core.add_chunk(now_ns=1000 * MS, t0_ns=1000 * MS, dt_ns=10 * MS,
                       actions=np.ones((3, 2), np.float32), obs_seq=8, seq=5)
    assert r.reason == "wrong_dof"
    r = core.add_chunk(now_ns=1000 * MS, t0_ns=1000 * MS, dt_ns=0, actions=acts,
                       obs_seq=9, seq=6)
    assert r.reason == "malformed"
    nan = acts.copy()
    nan[3, 0] = np.nan
    assert core.add_chunk(now_ns=1000 * MS, t0_ns=1000 * MS, dt_ns=10 * MS, actions=nan,
                          obs_seq=9, seq=7).reason == "malformed"
    s = core.stats()
    assert s["dropped_chunks"] == {"malformed": 2, "wrong_dof": 1, "older_observation": 1,
                                   "duplicate": 1, "expired": 1, "short_horizon": 1}
    assert s["skipped_stale_actions"] == 5


def test_starvation_counts_and_resumes_smoothly():
    core = make_core("crossfade", 100.0, 0.0, 2.0, 20.0, 10.0)
    ramp = np.linspace(0, 0.5, 50, dtype=np.float32).reshape(50, 1)  # 1 rad/s for 0.5 s
    core.add_chunk(now_ns=0, t0_ns=0, dt_ns=10 * MS, actions=ramp, obs_seq=0, seq=0)
    outs = [core.tick(k * 10 * MS) for k in range(80)]  # chunk ends at 500 ms
    starved = [o.starved for o in outs]
    assert starved[:50] == [False] * 50 and all(starved[50:])
    assert core.starvation_ticks == 30 and core.starvation_episodes == 1
    # hold: from 1 rad/s, decelerating at 10 rad/s^2 -> stops after ~0.1 s, ~5 cm further
    last = outs[-1].positions[0]
    assert 0.5 < last <= 0.5 + 1.0 / (2 * 10) + 0.011
    assert np.all(core.velocity == 0)
    # a chunk far away: resume slews within the limits, no jump
    core.add_chunk(now_ns=800 * MS, t0_ns=800 * MS, dt_ns=10 * MS,
                   actions=np.full((100, 1), -0.5, np.float32), obs_seq=1, seq=1)
    prev = outs[-1].positions[0]
    for k in range(80, 180):
        o = core.tick(k * 10 * MS)
        assert not o.starved
        assert abs(o.positions[0] - prev) <= 2.0 * 0.01 + 1e-6
        prev = o.positions[0]
    assert prev == pytest.approx(-0.5, abs=1e-3)  # arrived, no oscillation left


# ------------------------------------------------------------------ rebase when idle

def _ramp(h: int, start: float, step: float) -> np.ndarray:
    return (start + step * np.arange(h, dtype=np.float64))[:, None].repeat(2, axis=1)


@PROPS
@given(latency_ms=st.integers(1, 3000), dt_ms=st.integers(5, 50), h=st.integers(2, 120),
       rate_hz=st.sampled_from([30.0, 50.0, 100.0]))
def test_chunk_observed_while_holding_starts_at_its_first_action(latency_ms, dt_ms, h, rate_hz):
    """The arm held still from before the capture to the arrival: action 0 runs first, nothing
    is skipped as stale (without the rebase the chunk would start `latency` into its motion)."""
    core = make_core("crossfade", rate_hz, 0.0, vmax=1e3, amax=1e6, hold=1e3, min_horizon_ms=0.0,
                     rebase_when_idle=True)
    a = _ramp(h, 0.5, 0.01)
    arrival = (latency_ms + 7) * MS
    r = core.add_chunk(now_ns=arrival, t0_ns=arrival - latency_ms * MS, dt_ns=dt_ms * MS,
                       actions=a, obs_seq=1, seq=1)
    assert r.accepted and r.skipped_stale == 0
    out = core.tick(arrival)
    np.testing.assert_allclose(out.desired, a[0], atol=1e-6)
    assert core.rebased_chunks == 1 and core.skipped_stale_actions == 0
    # ...and then runs on its own time base: action i at arrival + i*dt
    t = arrival + (h - 1) * dt_ms * MS
    np.testing.assert_allclose(core.tick(t).desired, a[h - 1], atol=1e-6)


@PROPS
@given(latency_ms=st.integers(20, 800), gap_ms=st.integers(0, 400))
def test_only_chunks_observed_after_the_hold_began_are_rebased(latency_ms, gap_ms):
    """A: first chunk (rebased). B: observed while A drives the arm -> by time. After A and B
    run out the arm holds; C observed before the hold began -> by time; D observed after -> rebased."""
    dt = 20 * MS
    core = make_core("latest", 100.0, 0.0, vmax=1e3, amax=1e6, hold=1e3, min_horizon_ms=0.0,
                     rebase_when_idle=True)
    a = _ramp(50, 0.0, 0.001)  # 1 s
    core.add_chunk(now_ns=0, t0_ns=-latency_ms * MS, dt_ns=dt, actions=a, obs_seq=1, seq=1)
    assert core.rebased_chunks == 1
    t = 0
    while t < 300 * MS:
        core.tick(t)
        t += 10 * MS
    b_obs = t - 100 * MS  # A was driving the arm then
    core.add_chunk(now_ns=t, t0_ns=b_obs, dt_ns=dt, actions=_ramp(50, 0.2, 0.001), obs_seq=2,
                   seq=2)
    assert core.rebased_chunks == 1  # B is stale by time
    end_b = b_obs + 50 * dt
    while t < end_b + (gap_ms + 50) * MS:  # B runs out; the arm holds
        core.tick(t)
        t += 10 * MS
    assert core.starvation_ticks > 0
    c_obs = end_b - 30 * MS  # before the hold began: B was still moving the arm
    r = core.add_chunk(now_ns=t, t0_ns=c_obs, dt_ns=dt, actions=_ramp(200, 0.4, 0.001),
                       obs_seq=3, seq=3)
    if r.accepted:
        assert core.rebased_chunks == 1
        out = core.tick(t)
        np.testing.assert_allclose(out.desired, core.chunks[-1].value_at(t), atol=1e-9)
    # the hold goes on while nothing covers; D was observed during it
    core2 = make_core("latest", 100.0, 0.0, vmax=1e3, amax=1e6, hold=1e3, min_horizon_ms=0.0,
                      rebase_when_idle=True)
    core2.add_chunk(now_ns=0, t0_ns=0, dt_ns=dt, actions=a, obs_seq=1, seq=1)
    t = 0
    while t < 1000 * MS + (gap_ms + 20) * MS:
        core2.tick(t)
        t += 10 * MS
    d_obs = t - 10 * MS
    d = _ramp(50, 0.6, 0.001)
    core2.add_chunk(now_ns=t + latency_ms * MS, t0_ns=d_obs, dt_ns=dt, actions=d, obs_seq=2,
                    seq=2)
    assert core2.rebased_chunks == 1  # (its first chunk had nothing stale: t0 = arrival)
    np.testing.assert_allclose(core2.tick(t + latency_ms * MS).desired, d[0], atol=1e-9)


def test_rebase_can_be_turned_off_and_bad_flags_are_refused():
    core = make_core("crossfade", 100.0, 0.0, vmax=1e3, amax=1e6, hold=1e3, min_horizon_ms=0.0)
    a = _ramp(30, 0.0, 0.01)
    core.add_chunk(now_ns=100 * MS, t0_ns=0, dt_ns=10 * MS, actions=a, obs_seq=1, seq=1)
    np.testing.assert_allclose(core.tick(100 * MS).desired, a[10], atol=1e-9)
    assert core.rebased_chunks == 0
    with pytest.raises(ValueError, match="rebase_when_idle must be true or false"):
        ExecutorConfig.from_params({"rebase_when_idle": "no"})
