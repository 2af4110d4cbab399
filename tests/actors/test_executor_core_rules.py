"""The executor core's bookkeeping rules, one deterministic case each: which chunks are kept,
refused or evicted, what a holding tick reports, and where the seam statistic is measured."""

from __future__ import annotations

import numpy as np
import pytest

from edgevla.actors.executor.blending import BlendConfig
from edgevla.actors.executor.core import DROP_REASONS, ExecutorConfig, ExecutorCore, SafetyLimits

MS = 1_000_000
TICK = 10 * MS


def core(strategy: str = "crossfade", max_chunks: int = 8, crossfade_ms: float = 100.0,
         vmax: float = 100.0, amax: float = 1e5) -> ExecutorCore:
    return ExecutorCore(ExecutorConfig(
        rate_hz=100.0, max_chunks=max_chunks, rebase_when_idle=False,
        blend=BlendConfig(strategy=strategy, crossfade_ms=crossfade_ms),
        limits=SafetyLimits(max_velocity_rad_s=np.array([vmax]),
                            max_accel_rad_s2=np.array([amax]),
                            hold_decel_rad_s2=np.array([amax]))))


def add(c: ExecutorCore, now_ms: int, values, obs_seq: int, seq: int, t0_ms: int | None = None,
        t_capture_ms: int = 0):
    a = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    return c.add_chunk(now_ns=now_ms * MS, t0_ns=(now_ms if t0_ms is None else t0_ms) * MS,
                       dt_ns=TICK, actions=a, obs_seq=obs_seq, seq=seq,
                       t_capture_ns=t_capture_ms * MS)


def test_graph_defaults_are_the_configs_defaults():
    got, want = ExecutorConfig.from_params({}), ExecutorConfig()
    for name in ("rate_hz", "link_latency_ms", "min_horizon_ms", "max_chunks",
                 "rebase_when_idle", "blend"):
        assert getattr(got, name) == getattr(want, name), name
    for name in ("joint_min", "joint_max", "max_velocity_rad_s", "max_accel_rad_s2",
                 "hold_decel_rad_s2"):
        assert np.array_equal(getattr(got.limits, name), getattr(want.limits, name)), name


@pytest.mark.parametrize("n_added, max_chunks, kept", [(2, 3, 2), (3, 3, 3), (5, 3, 3), (4, 1, 1)])
def test_at_most_max_chunks_are_kept_the_newest(n_added, max_chunks, kept):
    c = core(max_chunks=max_chunks)
    for k in range(n_added):
        assert add(c, k, [0.0] * 100, obs_seq=k, seq=k).accepted
    assert [ch.obs_seq for ch in c.chunks] == list(range(n_added - kept, n_added))
    assert c.evicted_chunks == n_added - kept
    assert c.newest_chunk().obs_seq == n_added - 1


def test_newest_chunk_is_none_before_any():
    c = core()
    assert c.newest_chunk() is None
    add(c, 0, [0.0] * 50, obs_seq=1, seq=1)
    add(c, 1, [1.0] * 50, obs_seq=2, seq=2)
    assert c.newest_chunk().seq == 2


@pytest.mark.parametrize("shape, accepted", [((1, 1), True), ((0, 1), False), ((3, 0), False),
                                             ((3,), False)])
def test_malformed_chunks_are_refused(shape, accepted):
    c = core()
    r = c.add_chunk(now_ns=0, t0_ns=0, dt_ns=100 * MS, actions=np.zeros(shape), obs_seq=1, seq=1)
    assert r.accepted is accepted
    assert c.dropped["malformed"] == (0 if accepted else 1)


def test_a_later_answer_to_the_same_observation_replaces_an_earlier_one_never_the_reverse():
    c = core()
    assert add(c, 0, [0.0] * 50, obs_seq=5, seq=3).accepted
    assert add(c, 1, [0.0] * 50, obs_seq=5, seq=2).reason == "duplicate"  # older answer
    assert add(c, 2, [0.0] * 50, obs_seq=5, seq=3).reason == "duplicate"  # the same again
    assert add(c, 3, [0.0] * 50, obs_seq=4, seq=9).reason == "older_observation"
    assert add(c, 4, [0.0] * 50, obs_seq=5, seq=4).accepted
    assert c.dropped["duplicate"] == 2 and c.dropped["older_observation"] == 1


def test_a_holding_tick_names_no_chunk_and_no_capture_time():
    c = core()
    c.set_measured(np.zeros(1))
    add(c, 0, [0.2] * 5, obs_seq=1, seq=7, t_capture_ms=3)
    out = c.tick(10 * MS)
    assert (out.starved, out.chunk_seq, out.t_capture_ns) == (False, 7, 3 * MS)
    out = c.tick(100 * MS)  # the 50 ms chunk is over
    assert (out.starved, out.chunk_seq, out.t_capture_ns, out.desired) == (True, -1, 0, None)
    assert c.chunks == []  # a chunk that ended before this tick is gone, not only one ending at it
    assert c.tick(90 * MS) is None and c.tick(100 * MS) is None  # no command for a past target


def test_the_seam_statistic_covers_the_crossfade_after_a_new_chunk_only():
    """A new chunk's crossfade is a seam; the steepest step of the run comes later, inside one
    chunk's own motion, and is not a seam."""
    c = core(crossfade_ms=100.0)
    c.set_measured(np.zeros(1))
    add(c, 0, [0.0] * 100, obs_seq=1, seq=1)
    for t in range(0, 300, 10):
        c.tick(t * MS)
    motion = [0.1] * 50 + [0.1 + 0.05 * k for k in range(1, 40)]  # 5 rad/s from 0.8 s on
    add(c, 300, motion, obs_seq=2, seq=2)
    y_prev, seam_steps = c.tick(300 * MS).positions[0], []
    for t in range(310, 1100, 10):
        y = c.tick(t * MS).positions[0]
        if t <= 400:  # the 100 ms crossfade that began at 300 ms
            seam_steps.append(abs(y - y_prev))
        y_prev = y
    assert 0.01 < max(seam_steps) < 0.04
    assert c.max_seam_jump_rad == pytest.approx(max(seam_steps), abs=1e-6)
    assert c.max_step_rad == pytest.approx(0.05, abs=1e-6)


def test_average_blends_every_covering_chunk_even_one_fully_faded_in():
    """Only ``crossfade`` may skip chunks older than one that has fully faded in."""
    c = core(strategy="average", crossfade_ms=10.0)
    c.set_measured(np.zeros(1))
    add(c, 0, [0.0] * 100, obs_seq=1, seq=1)
    add(c, 0, [1.0] * 100, obs_seq=2, seq=2, t0_ms=-500)  # from the past: faded in at once
    out = c.tick(200 * MS)
    assert out.desired[0] == pytest.approx(0.5)


def test_a_fresh_core_counts_nothing():
    stats = ExecutorCore(ExecutorConfig()).stats()
    assert stats.pop("dropped_chunks") == {r: 0 for r in DROP_REASONS}
    assert set(stats.values()) == {0}


@pytest.mark.parametrize("param", ["max_velocity_rad_s", "max_accel_rad_s2", "hold_decel_rad_s2"])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_limits_must_be_positive(param, value):
    with pytest.raises(ValueError, match=f"{param} must be > 0"):
        ExecutorConfig.from_params({param: value})


@pytest.mark.parametrize("n", [1, 3])
def test_a_chunk_with_another_joint_count_is_refused(n):
    c = core()
    assert c.add_chunk(now_ns=0, t0_ns=0, dt_ns=TICK, actions=np.zeros((50, 2)), obs_seq=1,
                       seq=1).accepted
    r = c.add_chunk(now_ns=0, t0_ns=0, dt_ns=TICK, actions=np.zeros((50, n)), obs_seq=2, seq=2)
    assert r.reason == "wrong_dof" and c.dropped["wrong_dof"] == 1


def test_joint_range_and_chunk_count_rules():
    lim = ExecutorConfig.from_params({"joint_min": [0.5, -1.0], "joint_max": [0.5, 1.0]}).limits
    assert lim.joint_min.tolist() == [0.5, -1.0]  # min == max: a joint held in place
    with pytest.raises(ValueError, match="joint_min .* must be <= joint_max"):
        ExecutorConfig.from_params({"joint_min": [0.6, -1.0], "joint_max": [0.5, 1.0]})
    with pytest.raises(ValueError, match="max_chunks must be >= 1, got 0"):
        ExecutorConfig(max_chunks=0)
    assert ExecutorConfig(max_chunks=1).max_chunks == 1


def test_limited_ticks_count_the_ticks_the_velocity_limit_shaped():
    c = core(vmax=1.0)
    c.set_measured(np.zeros(1))
    add(c, 0, [0.1] * 100, obs_seq=1, seq=1)
    y_prev, at_vmax = 0.0, 0
    for t in range(0, 400, 10):
        y = float(c.tick(t * MS).positions[0])
        at_vmax += abs(abs(y - y_prev) - 0.01) < 1e-6  # 1 rad/s for one 10 ms tick
        y_prev = y
    assert y_prev == pytest.approx(0.1)
    assert at_vmax >= 5 and c.limited_ticks == at_vmax


def test_a_chunk_ending_exactly_now_does_not_count_as_driving_the_arm():
    """Rebase while holding: a stored chunk whose last action ended at the new chunk's target
    time covers nothing there (coverage is [t0, end)), so the new chunk is rebased."""
    c = ExecutorCore(ExecutorConfig(rate_hz=100.0, rebase_when_idle=True))
    c.set_measured(np.zeros(1))
    assert add(c, 0, [0.0] * 5, obs_seq=1, seq=1, t0_ms=100).accepted  # covers [100, 150) ms
    r = add(c, 150, [0.3] * 50, obs_seq=2, seq=2, t0_ms=120, t_capture_ms=120)
    assert r.accepted and c.rebased_chunks == 1
    assert c.newest_chunk().t0_ns == 150 * MS


@pytest.mark.parametrize("value", [[[1.0, 2.0]], float("nan"), [1.0, float("inf")]])
def test_limit_values_must_be_finite_numbers_or_a_flat_list(value):
    with pytest.raises(ValueError, match="max_velocity_rad_s must be a finite number or a list"):
        ExecutorConfig.from_params({"max_velocity_rad_s": value})


def test_per_joint_limits_need_one_value_or_one_per_joint():
    for ok in ([0.5], [0.5] * 6):
        assert SafetyLimits.from_params({"max_velocity_rad_s": ok}, n_joints=6) is not None
    with pytest.raises(ValueError, match="max_velocity_rad_s has 5 entries, expected 1 or 6"):
        SafetyLimits.from_params({"max_velocity_rad_s": [0.5] * 5}, n_joints=6)


@pytest.mark.parametrize("name", ["link_latency_ms", "min_horizon_ms"])
def test_latency_and_horizon_may_be_zero_never_negative(name):
    assert getattr(ExecutorConfig(**{name: 0.0}), name) == 0.0
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"{name} must be >= 0"):
            ExecutorConfig(**{name: bad})
    with pytest.raises(ValueError, match="rate_hz must be > 0"):
        ExecutorConfig(rate_hz=0.0)


def test_a_chunk_ending_at_its_target_time_has_expired_one_ending_later_is_kept():
    c = ExecutorCore(ExecutorConfig(rate_hz=100.0, min_horizon_ms=0.0, rebase_when_idle=False))
    r = c.add_chunk(now_ns=50 * MS, t0_ns=0, dt_ns=TICK, actions=np.zeros((5, 1)), obs_seq=1, seq=1)
    assert (r.accepted, r.reason, r.horizon_left_ns) == (False, "expired", 0)
    r = c.add_chunk(now_ns=50 * MS - 1, t0_ns=0, dt_ns=TICK, actions=np.zeros((5, 1)), obs_seq=2,
                    seq=2)
    assert (r.accepted, r.horizon_left_ns) == (True, 1)


def test_a_moving_target_is_tracked_without_lag():
    """The braking envelope adds the target's own speed: at 1 rad/s and 40 rad/s^2 a pure
    stopping-distance bound would trail by v^2 / 2a = 12.5 mrad."""
    c = core(vmax=3.0, amax=40.0)
    c.set_measured(np.zeros(1))
    add(c, 0, [0.01 * k for k in range(200)], obs_seq=1, seq=1)  # 1 rad/s
    lag = []
    for t in range(0, 1500, 10):
        out = c.tick(t * MS)
        if t >= 500:
            lag.append(abs(float(out.desired[0]) - float(out.positions[0])))
    assert max(lag) < 0.002
