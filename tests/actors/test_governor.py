"""Governor and request policy: pure decision logic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.actors.executor.governor import Governor, GovernorConfig
from edgevla.actors.executor.request_policy import RequestConfig, RequestPolicy

MS = 1_000_000
S = 1_000_000_000

KNOBS = [
    {"actor": "denoise", "param": "denoise_steps", "min": 4, "max": 10, "step": 2},
    {"actor": "cam_top", "rate_hz": True, "min": 5, "max": 30, "factor": 0.5},
]


def gov(**kw) -> Governor:
    return Governor(GovernorConfig.from_params({"knobs": KNOBS, "cooldown_ms": 500, **kw}))


def test_lowers_in_order_then_raises_in_reverse():
    g = gov(ema_alpha=1.0, raise_after=2)
    t = 0
    got = []
    for _ in range(8):  # latency 450 ms against a 500 ms budget: 0.9 > high
        t += 600 * MS
        d = g.observe(t, 450 * MS, 500 * MS)
        if d:
            got.append((d.actor, d.name, d.value, d.direction))
    assert got == [("denoise", "denoise_steps", 8, "lower"),
                   ("denoise", "denoise_steps", 6, "lower"),
                   ("denoise", "denoise_steps", 4, "lower"), ("cam_top", "rate_hz", 15, "lower"),
                   ("cam_top", "rate_hz", 7.5, "lower"), ("cam_top", "rate_hz", 5, "lower")]
    assert "0.90 of the 500 ms horizon budget" in g.decisions[0].reason
    got = []
    for _ in range(20):  # slack: 100 / 500 = 0.2 < low
        t += 600 * MS
        d = g.observe(t, 100 * MS, 500 * MS)
        if d:
            got.append((d.actor, d.value, d.direction))
    # the knob lowered last comes back first; everything ends at its maximum
    assert got[0] == ("cam_top", 10, "raise")
    assert [k.value for k in g.knobs] == [10, 30]
    assert all(direction == "raise" for _, _, direction in got)


def test_cooldown_and_hysteresis():
    g = gov(ema_alpha=1.0)
    assert g.observe(0, 450 * MS, 500 * MS) is not None
    assert g.observe(100 * MS, 450 * MS, 500 * MS) is None  # cooldown 500 ms
    assert g.observe(600 * MS, 450 * MS, 500 * MS) is not None
    # between low and high: nothing changes however long
    for k in range(10):
        assert g.observe((2 + k) * S, 300 * MS, 500 * MS) is None


def test_disabled_governor_only_measures():
    g = Governor(GovernorConfig.from_params({"enabled": False, "knobs": KNOBS}))
    assert g.observe(0, 900 * MS, 500 * MS) is None
    assert g.stats()["latency_ratio_ema"] == pytest.approx(1.8)


@settings(max_examples=examples(60), deadline=None)
@given(samples=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 1000)), max_size=60))
def test_knobs_stay_in_bounds(samples):
    g = gov()
    t = 0
    for lat, budget in samples:
        t += 700 * MS
        g.observe(t, lat * MS, budget * MS)
        for k in g.knobs:
            assert k.min <= k.value <= k.max


@pytest.mark.parametrize("bad", [
    {"knobs": [{"param": "x", "min": 1, "max": 2, "step": 1}]},
    {"knobs": [{"actor": "a", "min": 1, "max": 2, "step": 1}]},
    {"knobs": [{"actor": "a", "param": "x", "min": 3, "max": 2, "step": 1}]},
    {"knobs": [{"actor": "a", "param": "x", "min": 1, "max": 2}]},
    {"high": 0.4, "low": 0.5},
])
def test_bad_governor_config_names_the_field(bad):
    with pytest.raises(ValueError, match="governor"):
        Governor(GovernorConfig.from_params(bad))


def test_request_threshold_outstanding_and_retry():
    rp = RequestPolicy(RequestConfig(threshold=0.5, timeout_ms=300))
    h = 1000 * MS
    d = rp.decide(0, horizon_left_ns=0, chunk_horizon_ns=0, have_chunk=False, starving=False)
    assert d.reason == "startup"
    assert rp.decide(100 * MS, horizon_left_ns=0, chunk_horizon_ns=0, have_chunk=False,
                     starving=False) is None  # startup period 200 ms
    rp.on_chunk_received()
    assert rp.decide(300 * MS, horizon_left_ns=600 * MS, chunk_horizon_ns=h, have_chunk=True,
                     starving=False) is None
    d = rp.decide(400 * MS, horizon_left_ns=500 * MS, chunk_horizon_ns=h, have_chunk=True,
                  starving=False)
    assert d.reason == "horizon_below_threshold" and d.horizon_left_ns == 500 * MS
    # one outstanding request: no flood of requests every tick (unlike LeRobot's client)
    assert rp.decide(410 * MS, horizon_left_ns=490 * MS, chunk_horizon_ns=h, have_chunk=True,
                     starving=False) is None
    d = rp.decide(700 * MS, horizon_left_ns=200 * MS, chunk_horizon_ns=h, have_chunk=True,
                  starving=False)
    assert d.reason == "retry_timeout"
    d = rp.decide(1000 * MS, horizon_left_ns=0, chunk_horizon_ns=h, have_chunk=True,
                  starving=True)
    assert d.reason == "starving"
    assert rp.stats()["requests"] == {"startup": 1, "horizon_below_threshold": 1,
                                      "fixed_rate": 0, "retry_timeout": 1, "starving": 1}


def test_request_fixed_rate():
    rp = RequestPolicy(RequestConfig.from_params({"request_rate_hz": 4}))
    assert rp.cfg.mode == "rate"
    rp.decide(0, horizon_left_ns=0, chunk_horizon_ns=0, have_chunk=False, starving=False)
    times = [t for t in range(0, 2000, 10)
             if rp.decide(t * MS, horizon_left_ns=900 * MS, chunk_horizon_ns=S,
                          have_chunk=True, starving=False)]
    assert times == [250, 500, 750, 1000, 1250, 1500, 1750]  # 0 was the startup request


def test_request_config_errors():
    with pytest.raises(ValueError, match="request_threshold"):
        RequestConfig(threshold=1.5)
    with pytest.raises(ValueError, match="request_mode"):
        RequestConfig(mode="sometimes")
    with pytest.raises(ValueError, match="request_latency_margin"):
        RequestConfig.from_params({"request_mode": "latency", "request_latency_margin": 0.5})
    with pytest.raises(ValueError, match="request_min_left_ms"):
        RequestConfig.from_params({"request_mode": "latency", "request_min_left_ms": -1})


@pytest.mark.parametrize("latency_ms, want_left_ms", [(8, 200), (320, 480), (1500, 2250)])
def test_request_latency_mode_asks_at_margin_times_measured_latency(latency_ms, want_left_ms):
    """Latency mode: a fraction until a latency is measured, then margin x the slowest recent
    request -> chunk latency left (floor min_left_ms), whatever the chunk length."""
    rp = RequestPolicy(RequestConfig.from_params({"request_mode": "latency",
                                                  "request_threshold": 0.5}))
    h = 3300 * MS
    assert rp.decide(0, horizon_left_ns=0, chunk_horizon_ns=0, have_chunk=False,
                     starving=False).reason == "startup"
    rp.on_chunk_received(latency_ms * MS)
    assert rp.latency_estimate_ns == latency_ms * MS
    t0 = latency_ms * MS
    asked = None
    for left_ms in range(3300, 0, -10):  # the horizon runs down by 10 ms per tick
        d = rp.decide(t0 + (3300 - left_ms) * MS, horizon_left_ns=left_ms * MS,
                      chunk_horizon_ns=h, have_chunk=True, starving=False)
        if d is not None:
            asked = left_ms
            break
    assert asked == want_left_ms
    assert rp.stats()["latency_estimate_ms"] == latency_ms
    # the estimate is the slowest of the recent ones: one slow inference moves it up at once
    rp.on_chunk_received(t0 + (3300 - asked) * MS + 900 * MS)
    assert rp.latency_estimate_ns == max(latency_ms, 900) * MS


def test_request_latency_mode_without_measurement_uses_the_threshold():
    rp = RequestPolicy(RequestConfig(mode="latency", threshold=0.25))
    rp.decide(0, horizon_left_ns=0, chunk_horizon_ns=0, have_chunk=False, starving=False)
    rp.on_chunk_received()  # no time given: nothing measured
    assert rp.latency_estimate_ns is None
    assert rp.decide(300 * MS, horizon_left_ns=260 * MS, chunk_horizon_ns=S, have_chunk=True,
                     starving=False) is None
    assert rp.decide(310 * MS, horizon_left_ns=250 * MS, chunk_horizon_ns=S, have_chunk=True,
                     starving=False).reason == "horizon_below_threshold"


def test_no_horizon_left_counts_as_overload_not_as_no_sample():
    """An observation taken when the horizon was already used up must push the knobs down."""
    g = gov(ema_alpha=1.0)
    d = g.observe(600 * MS, 300 * MS, 0)
    assert g.samples == 1 and d is not None and d.direction == "lower"
    assert g.observe(1200 * MS, 300 * MS, -50 * MS).direction == "lower"


def test_latency_is_measured_from_the_chunks_capture_not_the_last_of_many_requests():
    # Startup requests go out every 200 ms until the first chunk: the chunk that answers one of
    # them arrives 1.5 s after its capture, 30 ms after the newest request. The latency that
    # matters for timing is capture -> arrival (1.5 s), not 30 ms: with 30 ms the next request
    # would go out with 0.2 s left and a 1.5 s stage would leave the arm starving.
    rp = RequestPolicy(RequestConfig(mode="latency", latency_margin=1.5))
    t = 0
    while t < 1530 * MS:
        rp.decide(t, horizon_left_ns=0, chunk_horizon_ns=0, have_chunk=False, starving=False)
        t += 10 * MS
    rp.on_chunk_received(1530 * MS, t_capture_ns=30 * MS)
    assert rp.latency_estimate_ns == 1500 * MS
    d = rp.decide(1540 * MS, horizon_left_ns=2200 * MS, chunk_horizon_ns=3300 * MS,
                  have_chunk=True, starving=False)
    assert d is not None and d.reason == "horizon_below_threshold"  # 2.2 s <= 1.5 x 1.5 s
