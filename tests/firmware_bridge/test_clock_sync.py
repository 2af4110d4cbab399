"""The clock model's rules, each at its boundary: which samples are used, when drift is fitted,
what the residual measures (the synthetic-link property test sits beside the Feetech tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.firmware_bridge.link.clock_sync import ClockEstimate, ClockSync

MS = 1_000_000
US = 1_000
T0 = 5_000_000 * MS  # host clock at the first sample


def ping(cs: ClockSync, mid_ns: int, rtt_ns: int, offset_ns: int, drift: float = 0.0,
         bias_ns: int = 0) -> None:
    """One PING/PONG whose MCU stamp lies ``bias_ns`` after the true MCU time at the midpoint
    of its round trip (an asymmetric delay); the MCU clock runs ``drift`` fast from T0."""
    mcu_ns = mid_ns + offset_ns + drift * (mid_ns - T0) + bias_ns
    cs.add(mid_ns - rtt_ns // 2, round(mcu_ns / US), mid_ns + rtt_ns - rtt_ns // 2)


@settings(max_examples=examples(100), deadline=None)
@given(offset_us=st.integers(-10**9, 10**9), drift_ppm=st.integers(20, 500),
       sign=st.sampled_from([-1, 1]), n=st.integers(6, 40), step_ms=st.integers(50, 500))
def test_a_line_through_exact_samples_is_found_with_no_misfit(offset_us, drift_ppm, sign, n,
                                                              step_ms):
    step_ms = max(step_ms, -(-2000 // (n - 1)))  # at least the 2 s span that drift needs
    drift = sign * drift_ppm * 1e-6
    cs = ClockSync()
    mids = [T0 + k * step_ms * MS for k in range(n)]
    for mid in mids:
        ping(cs, mid, 200 * US, offset_us * US, drift)
    est = cs.estimate()
    assert est.n_samples == n  # equal round trips: every sample is as good as the fastest
    assert est.drift_ppm == pytest.approx(drift * 1e6, abs=0.5)  # stamps are whole µs
    assert est.residual_ns <= 500  # only the µs rounding of the stamps is left
    true_us = [round((m + offset_us * US + drift * (m - T0)) / US) for m in mids]
    assert np.abs(est.host_to_mcu_us(np.array(mids)) - true_us).max() <= 1
    assert np.abs(est.mcu_to_host_ns(np.array(true_us)) - mids).max() <= 2 * US


def test_without_a_fit_the_offset_is_the_median_and_the_residual_its_rms_misfit():
    cs = ClockSync()
    for k, bias in enumerate((-3000, 0, 3000)):  # three samples 1 s apart: too few to fit
        ping(cs, T0 + k * 1000 * MS, 200 * US, 7_000 * US, bias_ns=bias)
    est = cs.estimate()
    assert est.drift == 0.0
    assert est.offset_ns == 7_000 * US
    assert est.residual_ns == pytest.approx(np.sqrt(2 * 3000.0 ** 2 / 3), rel=1e-9)
    assert est.ref_host_ns == T0 + 1000 * MS


@pytest.mark.parametrize("n, span_ns, fitted", [
    (6, 2_000_000_000, True),    # six samples over exactly min_span_s (2 s by default): fitted
    (5, 2_000_000_000, False),   # five are too few
    (6, 1_999_999_999, False),   # a span 1 ns short of min_span_s sees no drift
    (12, 1_999_000_000, False),
])
def test_drift_is_fitted_from_six_samples_over_min_span_s(n, span_ns, fitted):
    cs = ClockSync()
    for k in range(n):
        ping(cs, T0 + round(k * span_ns / (n - 1)), 200 * US, 0, drift=300e-6)
    est = cs.estimate()
    if fitted:
        assert est.drift_ppm == pytest.approx(300, abs=0.5)
    else:
        assert est.drift == 0.0


@pytest.mark.parametrize("n_fast, n, used", [
    (6, 20, 6),    # the fastest 30 %: exactly the six fast ones, enough to stand alone
    (8, 20, 8),    # more fast ones than 30 %: all of them (ties at the quantile included)
    (7, 21, 7),    # the 30 % quantile falls on a fast round trip itself: kept
    (5, 16, 16),   # five fast are too few: the faster half, here all (slow ones tie)
])
def test_only_the_fastest_round_trips_set_the_offset(n_fast, n, used):
    """Slow round trips carry an asymmetric delay (their midpoint is 400 µs off); the fast ones
    none. Fast and slow alternate over 4 s."""
    cs = ClockSync()
    fast = set(np.linspace(0, n - 1, n_fast).round().astype(int).tolist())
    assert len(fast) == n_fast
    for k in range(n):
        mid = T0 + k * 200 * MS
        if k in fast:
            ping(cs, mid, 100 * US, 2_000 * US)
        else:
            ping(cs, mid, 2_000 * US, 2_000 * US, bias_ns=400 * US)
    est = cs.estimate()
    assert est.n_samples == used
    assert est.rtt_min_ns == 100 * US
    assert est.rtt_p50_ns == float(np.median(cs.rtts_ns()))
    if used == n_fast:
        assert est.offset_ns == pytest.approx(2_000 * US, abs=1 * US)
        assert abs(est.drift_ppm) < 1
    else:
        assert est.offset_ns > 2_000 * US + 100 * US  # the slow ones pull it late


@pytest.mark.parametrize("rtts_us, used", [
    ((100, 900), 2),              # two samples: both, whatever their round trips
    ((100, 100, 900, 900), 2),    # four: the two fast ones
    ((100,), 1),
])
def test_few_samples_use_the_faster_half_and_never_fewer_than_two(rtts_us, used):
    cs = ClockSync()
    for k, rtt in enumerate(rtts_us):
        ping(cs, T0 + k * 100 * MS, rtt * US, 0)
    assert cs.estimate().n_samples == used


def test_samples_bookkeeping():
    cs = ClockSync(window=3)
    assert cs.estimate() is None and len(cs) == 0
    versions = [cs.version]
    for k in range(5):
        cs.add(T0 + k * MS, 0, T0 + k * MS + 300 * US)
        versions.append(cs.version)
    assert len(set(versions)) == 6  # every change is seen by a caller caching the estimate
    assert len(cs) == 3  # only the last `window` samples
    np.testing.assert_array_equal(cs.rtts_ns(), [300 * US] * 3)
    cs.add(T0, 0, T0)  # a round trip shorter than the host clock's tick: allowed
    with pytest.raises(ValueError, match="before send"):
        cs.add(T0 + 1, 0, T0)
    v = cs.version
    cs.clear()
    assert len(cs) == 0 and cs.version != v and cs.estimate() is None


def test_drift_ppm_is_parts_per_million():
    est = ClockEstimate(offset_ns=0.0, drift=2.5e-6, ref_host_ns=0, n_samples=1,
                        rtt_p50_ns=0.0, rtt_min_ns=0.0, residual_ns=0.0)
    assert est.drift_ppm == pytest.approx(2.5, rel=1e-12)


def test_a_burst_of_fast_pings_at_the_end_still_shows_the_drift():
    """Periodic pings over 3 s whose round trips were slow for the first 2 s (load), fast after,
    then 20 fast explicit ones (what `McuLink.sync_clock` adds): the fastest 30 % alone all lie
    in the last 1.4 s, too short a span to see drift; the fastest of each half see it."""
    cs = ClockSync()
    for k in range(150):
        ping(cs, T0 + k * 20 * MS, (900 if k < 100 else 100 + k) * US, 0, drift=250e-6)
    for k in range(20):
        ping(cs, T0 + 3_000 * MS + k * 20 * MS, 70 * US, 0, drift=250e-6)
    est = cs.estimate()
    assert est.drift_ppm == pytest.approx(250, abs=5)
    # fast ones spread over the window: used alone, as before
    spread = ClockSync()
    for k in range(40):
        ping(spread, T0 + k * 100 * MS, (70 if k % 3 == 0 else 900) * US, 0, drift=250e-6)
    assert spread.estimate().n_samples == 14
