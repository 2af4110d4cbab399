"""Blending strategies: LeRobot's aggregate weights, ACT's temporal ensembling, crossfade shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.actors.executor.blending import (CROSSFADE_SHAPES, LEROBOT_WEIGHTS, BlendConfig,
                                     Contribution, blend, shape_weight)
from edgevla.actors.executor.core import ExecutorConfig, ExecutorCore, SafetyLimits

MS = 1_000_000
FAST = settings(max_examples=examples(80), deadline=None)


def loose_limits() -> SafetyLimits:
    big = np.array([1e6])
    return SafetyLimits(max_velocity_rad_s=big, max_accel_rad_s2=big * 1e3,
                        hold_decel_rad_s2=big)


@FAST
@given(shape=st.sampled_from(CROSSFADE_SHAPES), xs=st.lists(st.floats(-0.5, 1.5), min_size=2))
def test_shapes_are_monotone_ramps(shape, xs):
    assert shape_weight(shape, 0.0) == 0.0 and shape_weight(shape, 1.0) == 1.0
    xs = sorted(xs)
    ws = [shape_weight(shape, x) for x in xs]
    assert all(0.0 <= w <= 1.0 for w in ws)
    assert all(a <= b + 1e-12 for a, b in zip(ws, ws[1:]))


@FAST
@given(old=st.floats(-2, 2), new=st.floats(-2, 2), shape=st.sampled_from(CROSSFADE_SHAPES),
       window_ms=st.integers(10, 400))
def test_crossfade_starts_at_old_value_and_ends_at_new(old, new, shape, window_ms):
    cfg = BlendConfig(strategy="crossfade", crossfade_ms=window_ms, crossfade_shape=shape)
    c_old = Contribution(np.array([old]), 0, 10**12)
    c_new = Contribution(np.array([new]), 1000 * MS, 10**12)
    at = lambda t: blend(cfg, [c_old, c_new], t)[0]  # noqa: E731
    assert at(1000 * MS) == pytest.approx(old)  # no step at the seam
    assert at((1000 + window_ms) * MS) == pytest.approx(new)
    # the largest change per ms is bounded by the shape's slope over the window
    slope = {"linear": 1.0, "cosine": np.pi / 2, "minjerk": 1.875}[shape]
    ts = np.arange(1000, 1000 + window_ms + 1) * MS
    vals = np.array([at(int(t)) for t in ts])
    assert np.max(np.abs(np.diff(vals))) <= abs(new - old) * slope / window_ms + 1e-9


@pytest.mark.train
def test_weights_are_lerobots_aggregate_functions():
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()
    import torch
    from lerobot.async_inference.configs import AGGREGATE_FUNCTIONS

    rng = np.random.default_rng(0)
    for name, (w_old, w_new) in LEROBOT_WEIGHTS.items():
        fn = AGGREGATE_FUNCTIONS[name]
        vals = [rng.normal(size=6) for _ in range(4)]
        # LeRobot merges each arriving chunk into what is queued for the same timestep
        queued = torch.tensor(vals[0])
        for v in vals[1:]:
            queued = fn(queued, torch.tensor(v))
        ours = blend(BlendConfig(strategy=name),
                     [Contribution(v, 0, 0) for v in vals], 0)
        np.testing.assert_allclose(ours, queued.numpy(), rtol=1e-12, atol=1e-12)
        assert fn(torch.tensor(1.0), torch.tensor(0.0)).item() == pytest.approx(w_old)


@pytest.mark.train
@pytest.mark.parametrize("m", [0.01, 0.5, -0.2])
def test_ensemble_matches_act_temporal_ensembler(m):
    """A chunk per step, ticking at the chunk dt: the executor's `ensemble` gives exactly
    lerobot's ACTTemporalEnsembler output (weights exp(-m*i), i = 0 the oldest prediction)."""
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()
    import torch
    from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

    h, d, steps, dt = 6, 3, 20, 20 * MS
    rng = np.random.default_rng(1)
    chunks = rng.normal(size=(steps, h, d)).astype(np.float32)
    ens = ACTTemporalEnsembler(m, h)
    core = ExecutorCore(ExecutorConfig(rate_hz=50.0, min_horizon_ms=0.0, max_chunks=h + 1,
                                       blend=BlendConfig(strategy="ensemble", ensemble_m=m),
                                       limits=loose_limits()))
    for n in range(steps):
        expected = ens.update(torch.from_numpy(chunks[n].astype(np.float64))[None])[0].numpy()
        r = core.add_chunk(now_ns=n * dt, t0_ns=n * dt, dt_ns=dt, actions=chunks[n],
                           obs_seq=n, seq=n)
        assert r.accepted
        out = core.tick(n * dt)
        np.testing.assert_allclose(out.desired, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["latest", "weighted_average", "average", "crossfade",
                                      "ensemble"])
def test_every_strategy_reproduces_a_single_chunk(strategy):
    core = ExecutorCore(ExecutorConfig(blend=BlendConfig(strategy=strategy),
                                       limits=loose_limits()))
    acts = np.linspace(0, 1, 11, dtype=np.float32).reshape(11, 1)
    core.add_chunk(now_ns=0, t0_ns=0, dt_ns=10 * MS, actions=acts, obs_seq=0, seq=0)
    for k in range(11):
        o = core.tick(k * 10 * MS)
        assert o.desired[0] == pytest.approx(acts[k, 0])


def test_crossfade_seam_is_smaller_than_lerobot_weighted_average():
    """Two chunks that disagree by 0.2 rad: `latest` steps 0.2, weighted_average 0.14 (70 %),
    crossfade over 200 ms never more than ~1/50 of it per 10 ms tick (pre-safety target)."""
    jumps = {}
    for strategy in ("latest", "weighted_average", "crossfade"):
        core = ExecutorCore(ExecutorConfig(blend=BlendConfig(strategy=strategy,
                                                             crossfade_ms=200.0),
                                           limits=loose_limits()))
        core.add_chunk(now_ns=0, t0_ns=0, dt_ns=10 * MS, actions=np.zeros((100, 1), np.float32),
                       obs_seq=0, seq=0)
        prev, worst = None, 0.0
        for k in range(80):
            if k == 30:
                core.add_chunk(now_ns=k * 10 * MS, t0_ns=250 * MS, dt_ns=10 * MS,
                               actions=np.full((100, 1), 0.2, np.float32), obs_seq=1, seq=1)
            o = core.tick(k * 10 * MS)
            if prev is not None:
                worst = max(worst, abs(float(o.desired[0] - prev)))
            prev = o.desired[0]
        jumps[strategy] = worst
    assert jumps["latest"] == pytest.approx(0.2, abs=1e-6)
    assert jumps["weighted_average"] == pytest.approx(0.14, abs=1e-6)
    assert jumps["crossfade"] <= 0.2 * 1.875 * 10 / 200 + 1e-6


@pytest.mark.parametrize("strategy", ["latest", "crossfade"])
def test_skipping_chunks_without_weight_changes_nothing(strategy):
    """The core evaluates only chunks that still carry weight; the result must be bit-identical
    to blending every covering chunk."""
    rng = np.random.default_rng(5)
    core = ExecutorCore(ExecutorConfig(blend=BlendConfig(strategy=strategy, crossfade_ms=120.0),
                                       limits=loose_limits()))
    for k in range(400):
        now = k * 10 * MS
        if k % 7 == 0:
            core.add_chunk(now_ns=now, t0_ns=now - int(rng.integers(0, 60)) * MS, dt_ns=20 * MS,
                           actions=rng.normal(size=(30, 3)).astype(np.float32), obs_seq=k, seq=k)
        covering = [c for c in core.chunks if c.t0_ns <= now < c.end_ns]
        o = core.tick(now)
        if covering:
            full = blend(core.cfg.blend, [Contribution(c.value_at(now), c.fade_start_ns,
                                                       c.fade_end_ns) for c in covering], now)
            assert o.desired.tobytes() == full.astype(np.float32).tobytes()


def test_a_zero_crossfade_is_a_switch_at_the_new_chunks_start():
    from edgevla.actors.executor.blending import crossfade_weight

    cfg = BlendConfig(crossfade_ms=0.0)  # allowed: a hard switch
    assert [crossfade_weight(cfg, 100, 500, t) for t in (99, 100, 101, 10_000)] == [0, 1, 1, 1]
    # a window that closes as it opens, or before (the older chunk ended before the new one
    # starts), is the same switch: the new chunk takes over at its start
    cfg = BlendConfig(crossfade_ms=200.0)
    assert [crossfade_weight(cfg, 100, 100, t) for t in (99, 100, 101)] == [0, 1, 1]
    assert [crossfade_weight(cfg, 100, 50, t) for t in (99, 100, 101)] == [0, 1, 1]


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
def test_a_crossfade_length_below_zero_or_not_finite_is_refused(bad):
    with pytest.raises(ValueError, match="crossfade_ms must be >= 0"):
        BlendConfig(crossfade_ms=bad)


def test_each_shape_has_its_own_curve():
    """The slope bound above holds for a gentler ramp too; these values tell the shapes apart
    (min-jerk is the quintic 10x^3 - 15x^4 + 6x^5)."""
    x = 0.25
    assert shape_weight("linear", x) == pytest.approx(0.25)
    assert shape_weight("cosine", x) == pytest.approx(0.5 - 0.5 * np.cos(np.pi / 4))
    assert shape_weight("minjerk", x) == pytest.approx(10 * x**3 - 15 * x**4 + 6 * x**5)
    assert BlendConfig().crossfade_shape == "minjerk"  # the default: no jerk at either end


def test_a_crossfade_ends_where_the_older_chunk_ends_when_that_comes_first():
    from edgevla.actors.executor.blending import crossfade_weight

    cfg = BlendConfig(crossfade_ms=200.0, crossfade_shape="linear")
    # the older chunk runs out 100 ms after the new one starts: the fade is done by then
    assert crossfade_weight(cfg, 1000 * MS, 1100 * MS, 1050 * MS) == pytest.approx(0.5)
    assert crossfade_weight(cfg, 1000 * MS, 1100 * MS, 1100 * MS) == 1.0
