"""The request policy's rules one case each, at their boundaries: configuration, the startup
period, fixed rate, starvation and its retry, the threshold and latency modes, the latency
window, the stats."""

from __future__ import annotations

import pytest

from edgevla.actors.executor.request_policy import REASONS, RequestConfig, RequestPolicy

MS = 1_000_000


def policy(**kw) -> RequestPolicy:
    return RequestPolicy(RequestConfig(**kw))


def test_graph_defaults_are_the_configs_defaults():
    assert RequestConfig.from_params({}) == RequestConfig()
    assert RequestConfig.from_params({"request_rate_hz": 4}).mode == "rate"
    assert RequestConfig.from_params({"request_rate_hz": None}).mode == "threshold"


@pytest.mark.parametrize("kw, match", [
    ({"mode": "sometimes"}, "request_mode must be one of"),
    ({"latency_margin": 0.99}, "request_latency_margin must be >= 1"),
    ({"latency_margin": float("inf")}, "request_latency_margin must be >= 1"),
    ({"min_left_ms": -0.1}, "request_min_left_ms must be >= 0"),
    ({"min_left_ms": float("nan")}, "request_min_left_ms must be >= 0"),
    ({"threshold": -0.01}, r"request_threshold must be in \[0, 1\]"),
    ({"threshold": 1.01}, r"request_threshold must be in \[0, 1\]"),
    ({"mode": "rate", "rate_hz": 0.0}, "request_rate_hz must be > 0"),
    ({"mode": "rate", "rate_hz": -1.0}, "request_rate_hz must be > 0"),
    ({"mode": "rate", "rate_hz": float("inf")}, "request_rate_hz must be > 0"),
    ({"timeout_ms": 0.0}, "must be > 0"),
    ({"timeout_ms": -1.0}, "must be > 0"),
    ({"startup_period_ms": 0.0}, "must be > 0"),
    ({"startup_period_ms": -1.0}, "must be > 0"),
])
def test_configuration_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        RequestConfig(**kw)


@pytest.mark.parametrize("kw", [{"latency_margin": 1.0}, {"min_left_ms": 0.0},
                                {"threshold": 0.0}, {"threshold": 1.0},
                                {"mode": "rate", "rate_hz": 0.5}, {"timeout_ms": 0.5},
                                {"startup_period_ms": 0.5}])
def test_configuration_boundaries_accepted(kw):
    RequestConfig(**kw)


def decide(p, t_ms, left_ms=500, horizon_ms=1000, have_chunk=True, starving=False):
    d = p.decide(t_ms * MS, horizon_left_ns=left_ms * MS, chunk_horizon_ns=horizon_ms * MS,
                 have_chunk=have_chunk, starving=starving)
    return None if d is None else d.reason


def test_startup_requests_every_period_until_the_first_chunk():
    p = policy(startup_period_ms=200.0)
    assert decide(p, 0, have_chunk=False) == "startup"
    assert decide(p, 199, have_chunk=False) is None
    assert decide(p, 200, have_chunk=False) == "startup"  # exactly one period later


def test_fixed_rate_requests_at_exactly_one_period():
    p = policy(mode="rate", rate_hz=4.0)
    assert decide(p, 0) == "fixed_rate"
    assert decide(p, 249) is None and decide(p, 250) == "fixed_rate"


def test_starving_requests_once_then_at_the_retry_timeout():
    p = policy(timeout_ms=1000.0)
    assert decide(p, 0, left_ms=900) is None  # well above the threshold
    assert decide(p, 10, starving=True) == "starving"  # starvation begins
    assert decide(p, 500, starving=True) is None  # still outstanding
    assert decide(p, 1010, starving=True) == "starving"  # exactly the timeout later
    p.on_chunk_received()
    assert decide(p, 1020, starving=True) == "starving"  # answered: a new one at once


def test_threshold_mode_requests_at_the_threshold_then_retries_after_the_timeout():
    p = policy(threshold=0.5, timeout_ms=1000.0)
    assert decide(p, 0, left_ms=501) is None
    assert decide(p, 1, left_ms=500) == "horizon_below_threshold"  # at the threshold
    assert decide(p, 1000, left_ms=300) is None  # outstanding, 999 ms since
    assert decide(p, 1001, left_ms=300) == "retry_timeout"
    assert p.counts == {**{r: 0 for r in REASONS}, "horizon_below_threshold": 1,
                        "retry_timeout": 1}


def test_latency_mode_requests_at_margin_times_the_slowest_recent_latency():
    p = policy(mode="latency", latency_margin=1.5, min_left_ms=100.0, threshold=0.1)
    # before any measurement it falls back on the threshold
    assert decide(p, 0, left_ms=101) is None and decide(p, 1, left_ms=100) == "horizon_below_threshold"
    p.on_chunk_received(now_ns=400 * MS, t_capture_ns=100 * MS)  # 300 ms from capture
    assert p.latency_estimate_ns == 300 * MS
    assert decide(p, 500, left_ms=451) is None and decide(p, 501, left_ms=450) is not None
    q = policy(mode="latency", latency_margin=1.5, min_left_ms=600.0)
    q.on_chunk_received(now_ns=400 * MS, t_capture_ns=100 * MS)
    assert decide(q, 500, left_ms=601) is None and decide(q, 501, left_ms=600) is not None


def test_latency_is_measured_from_capture_else_from_the_outstanding_request():
    p = policy(mode="latency")
    decide(p, 1000, have_chunk=False)  # a request at 1.0 s
    p.on_chunk_received(now_ns=1_250 * MS)  # no capture time: from the request
    assert p.latency_estimate_ns == 250 * MS
    p.on_chunk_received(now_ns=1_300 * MS)  # nothing outstanding: not a latency
    assert p.latency_estimate_ns == 250 * MS
    p.on_chunk_received(now_ns=2_000 * MS, t_capture_ns=2_000 * MS + 5)  # clock skew: 0
    assert sorted(p._latencies_ns) == [0, 250 * MS]


def test_the_estimate_is_the_slowest_of_the_last_five():
    p = policy(mode="latency")
    for k, lat in enumerate([900, 60, 10, 20, 30, 40]):
        p.on_chunk_received(now_ns=(k + 1) * 10_000 * MS, t_capture_ns=(k + 1) * 10_000 * MS - lat * MS)
    assert p.latency_estimate_ns == 60 * MS  # 900 ms has left the window of five, 60 has not


def test_stats_and_knobs():
    p = policy()
    assert p.stats() == {"requests": {r: 0 for r in REASONS}, "request_mode": "threshold",
                         "latency_estimate_ms": None, "last_request_reason": None,
                         "last_request_horizon_left_ms": None}
    decide(p, 0, left_ms=250)
    p.on_chunk_received(now_ns=300 * MS, t_capture_ns=100 * MS)
    s = p.stats()
    assert s["latency_estimate_ms"] == 200.0 and s["last_request_reason"] == "horizon_below_threshold"
    assert s["last_request_horizon_left_ms"] == 250.0
    p.set_rate_hz(2.0)
    p.set_threshold(0.25)
    assert (p.cfg.mode, p.cfg.rate_hz, p.cfg.threshold) == ("rate", 2.0, 0.25)


def _at(p, t_ns, left_ns=500 * MS, have_chunk=True, starving=False):
    d = p.decide(t_ns, horizon_left_ns=left_ns, chunk_horizon_ns=1000 * MS,
                 have_chunk=have_chunk, starving=starving)
    return None if d is None else d.reason


def test_every_period_is_measured_to_the_nanosecond_and_late_calls_still_request():
    p = policy(startup_period_ms=200.0)
    _at(p, 0, have_chunk=False)
    assert _at(p, 200 * MS - 100, have_chunk=False) is None
    assert _at(p, 250 * MS, have_chunk=False) == "startup"  # late, not exactly on time
    r = policy(mode="rate", rate_hz=4.0)
    _at(r, 0)
    assert _at(r, 250 * MS - 100) is None and _at(r, 300 * MS) == "fixed_rate"
    s = policy(timeout_ms=1000.0)
    _at(s, 0, starving=True)
    assert _at(s, 1000 * MS - 100, starving=True) is None
    assert _at(s, 1500 * MS, starving=True) == "starving"
    t = policy(threshold=0.5, timeout_ms=1000.0)
    _at(t, 0, left_ns=400 * MS)
    assert _at(t, 1000 * MS - 100, left_ns=300 * MS) is None
    assert _at(t, 1500 * MS, left_ns=300 * MS) == "retry_timeout"


def test_latency_mode_floor_to_the_nanosecond_and_other_modes_ignore_the_estimate():
    q = policy(mode="latency", latency_margin=1.0, min_left_ms=600.0)
    q.on_chunk_received(now_ns=400 * MS, t_capture_ns=100 * MS)  # 300 ms: below the floor
    assert _at(q, 10_000 * MS, left_ns=600 * MS + 100) is None
    assert _at(q, 10_001 * MS, left_ns=600 * MS) == "horizon_below_threshold"
    th = policy(mode="threshold", threshold=0.5)
    th.on_chunk_received(now_ns=2000 * MS, t_capture_ns=100 * MS)  # a 1.9 s latency measured
    assert _at(th, 10_000 * MS, left_ns=600 * MS) is None  # the threshold rules: 0.5 of 1 s


def test_a_rate_given_alone_selects_the_rate_mode_only_when_positive():
    assert RequestConfig.from_params({"request_rate_hz": 0.5}).mode == "rate"
    assert RequestConfig.from_params({"request_rate_hz": -1}).mode == "threshold"


def test_a_fixed_rate_period_that_is_not_a_whole_nanosecond():
    p = policy(mode="rate", rate_hz=3.0)  # 333,333,333.3 ns
    _at(p, 0)
    assert _at(p, 333_333_333) is None and _at(p, 333_333_334) == "fixed_rate"
