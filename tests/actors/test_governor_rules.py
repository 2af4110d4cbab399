"""The governor's rules one case each, at their boundaries: knob validation, lowering and
raising (integer knobs rounded toward the limit), the cooldown, the calm count, the reasons and
the bounded history."""

from __future__ import annotations

import pytest

from edgevla.actors.executor.governor import MAX_RATIO, Governor, GovernorConfig, Knob

MS = 1_000_000


def knob(**p):
    return Knob.from_params(0, {"actor": "denoise", "param": "steps", "min": 2, "max": 10,
                                "step": 2, **p})


def gov(*knobs, **cfg):
    base = {"enabled": True, "high": 0.8, "low": 0.5, "ema_alpha": 1.0, "cooldown_ms": 100.0,
            "raise_after": 3}
    return Governor(GovernorConfig.from_params({**base, **cfg, "knobs": list(knobs)}))


STEPS = {"actor": "denoise", "param": "steps", "min": 2, "max": 10, "step": 2}


def test_graph_defaults_are_the_configs_defaults():
    got, want = GovernorConfig.from_params({}), GovernorConfig()
    assert (got.high, got.low, got.ema_alpha, got.cooldown_ms, got.raise_after) == \
        (want.high, want.low, want.ema_alpha, want.cooldown_ms, want.raise_after)
    assert got.enabled is False and GovernorConfig.from_params({"knobs": [STEPS]}).enabled


@pytest.mark.parametrize("p, match", [
    ({"min": 0, "max": 10}, None),                       # min 0 is allowed
    ({"min": -1, "max": 10}, "0 <= min < max"),
    ({"min": 5, "max": 5}, "0 <= min < max"),
    ({"min": 6, "max": 5}, "0 <= min < max"),
    ({"step": 0}, "exactly one of step"),
    ({"step": 0, "factor": 0.5}, None),
    ({"step": 0, "factor": 1.0}, "exactly one of step"),
    ({"step": 1, "factor": 0.5}, "exactly one of step"),
    ({"value": 10}, None), ({"value": 2}, None),           # either end is a value
    ({"value": 11}, "outside"), ({"value": 1}, "outside"),
])
def test_knob_validation(p, match):
    if match is None:
        assert knob(**p).value == p.get("value", p.get("max", 10))
    else:
        with pytest.raises(ValueError, match=match):
            knob(**p)


def test_integer_knobs_round_toward_their_limits():
    assert knob().integer and not knob(step=0.5).integer and not knob(step=0, factor=0.5).integer
    assert not Knob.from_params(0, {"actor": "cam", "rate_hz": True, "min": 2, "max": 30,
                                    "step": 2}).integer  # rates are not whole by default
    k = knob(step=0, factor=0.7, integer=True, value=9)
    assert k.lowered() == 6.0  # floor(6.3)
    k.value = 6
    assert k.raised() == 9.0  # ceil(8.57)
    k.value = 2.5
    assert k.lowered() == 2.0  # clamped to min, not floored below it
    k.value = 9.5
    assert k.raised() == 10.0
    f = knob(step=0, factor=0.7, value=9)  # not integer: exact
    assert f.lowered() == pytest.approx(6.3) and knob(value=10).raised() == 10.0


def test_negative_latency_is_ignored_zero_is_a_sample():
    g = gov(STEPS)
    assert g.observe(0, -1, 100 * MS) is None and g.samples == 0
    g.observe(0, 0, 100 * MS)
    assert g.samples == 1 and g.ratio_ema == 0.0


def test_a_gone_budget_counts_as_the_largest_ratio():
    g = gov(STEPS)
    d = g.observe(0, 5 * MS, 0)
    assert g.ratio_ema == MAX_RATIO == 10.0 and d.direction == "lower"


def test_lowering_above_high_then_cooldown_then_raising_after_calm_samples():
    g = gov(STEPS)
    d = g.observe(0, 90 * MS, 100 * MS)  # 0.9 > 0.8
    assert (d.name, d.value, d.direction) == ("steps", 8.0, "lower")
    assert d.reason == "latency 90 ms is 0.90 of the 100 ms horizon budget (> 0.8)"
    assert g.observe(99 * MS, 90 * MS, 100 * MS) is None  # within the 100 ms cooldown
    assert g.observe(100 * MS, 90 * MS, 100 * MS).value == 6.0  # exactly at its end: allowed
    assert g.observe(300 * MS, 80 * MS, 100 * MS) is None  # at high: not above it
    for t in (400, 500):
        assert g.observe(t * MS, 10 * MS, 100 * MS) is None  # calm 1, 2
    d = g.observe(600 * MS, 10 * MS, 100 * MS)  # calm 3 = raise_after
    assert (d.value, d.direction) == (8.0, "raise")
    assert d.reason == "latency 10 ms is 0.10 of the 100 ms horizon budget (< 0.5)"


def test_at_low_is_not_calm_and_a_change_resets_the_calm_count():
    g = gov(STEPS, raise_after=1)
    g.observe(0, 90 * MS, 100 * MS)  # lowered to 8
    assert g.observe(1000 * MS, 50 * MS, 100 * MS) is None  # 0.5 is not below low
    assert g.observe(2000 * MS, 10 * MS, 100 * MS).direction == "raise"
    assert g.observe(3000 * MS, 10 * MS, 100 * MS) is None  # at max: nothing to raise


def test_the_knob_lowered_last_is_raised_first_and_leaves_the_list_at_its_max():
    cam = {"actor": "cam", "rate_hz": True, "min": 10, "max": 30, "step": 10}
    g = gov(dict(STEPS, min=8), cam, raise_after=1)
    names = [g.observe(t * 1000 * MS, 95 * MS, 100 * MS).name for t in range(3)]
    assert names == ["steps", "rate_hz", "rate_hz"]  # steps at its min: the next knob
    raised = [g.observe((10 + t) * 1000 * MS, 1 * MS, 100 * MS) for t in range(4)]
    assert [(d.name, d.value) for d in raised[:3]] == [("rate_hz", 20.0), ("rate_hz", 30.0),
                                                       ("steps", 10.0)]
    assert raised[3] is None and g._lowered == []


def test_the_decision_history_keeps_the_last_32():
    g = gov(dict(STEPS, min=0, max=100, step=1), cooldown_ms=0.0)
    for t in range(40):
        g.observe(t * MS, 95 * MS, 100 * MS)
    assert len(g.decisions) == 32 and g.decisions[-1].value == 60.0
    assert g.stats()["knobs"] == {"denoise.steps": 60.0}


def test_knob_keys_left_out():
    k = Knob.from_params(0, {"actor": "a", "param": "p", "max": 4, "factor": 0.5})  # no step, no min
    assert (k.min, k.step, k.factor, k.value) == (0.0, 0.0, 0.5, 4.0) and not k.integer
    with pytest.raises(ValueError, match="0 <= min < max"):
        Knob.from_params(0, {"actor": "a", "param": "p", "step": 1})  # no max
    assert Knob.from_params(0, {"actor": "a", "param": "p", "max": 4, "step": 1}).integer


@pytest.mark.parametrize("p", [{"step": -1}, {"step": 0, "factor": -0.5},
                               {"step": 0, "factor": 1.5}])
def test_steps_must_be_positive_and_factors_below_one(p):
    with pytest.raises(ValueError, match="exactly one of step > 0 or 0 < factor < 1"):
        knob(**p)


def test_the_latency_ratio_is_an_exponential_average():
    g = gov(STEPS, ema_alpha=0.5, high=0.99)
    g.observe(0, 20 * MS, 100 * MS)
    g.observe(1, 60 * MS, 100 * MS)
    assert g.ratio_ema == pytest.approx(0.5 * 0.6 + 0.5 * 0.2)
    assert g.last_latency_ns == 60 * MS and g.samples == 2


@pytest.mark.parametrize("cfg, match", [
    ({"low": 0.0, "high": 0.8}, "0 < low < high"),
    ({"low": 0.8, "high": 0.8}, "0 < low < high"),
    ({"ema_alpha": 0.0}, r"ema_alpha must be in \(0, 1\]"),
    ({"ema_alpha": 1.01}, r"ema_alpha must be in \(0, 1\]"),
])
def test_governor_configuration_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        GovernorConfig(**cfg)
    GovernorConfig(low=0.01, high=0.02, ema_alpha=1.0)  # the boundaries that are allowed


def test_a_fresh_governor_is_off_and_has_seen_nothing():
    assert GovernorConfig().enabled is False
    s = Governor(GovernorConfig()).stats()
    assert (s["enabled"], s["latency_ratio_ema"], s["last_latency_ms"], s["samples"]) == \
        (False, None, 0.0, 0)
    assert Governor(GovernorConfig(knobs=(STEPS,))).observe(0, 10 * MS, 1 * MS) is None  # off


def test_a_factor_knob_that_is_not_integer_is_raised_exactly():
    f = knob(step=0, factor=0.7, value=5)
    assert f.raised() == pytest.approx(5 / 0.7) and f.lowered() == pytest.approx(3.5)


T0 = 50_000 * MS  # the governor's clock is the host's: not zero


def test_the_cooldown_counts_from_the_last_change_not_from_zero():
    g = gov(STEPS, cooldown_ms=100.0)
    assert g.observe(T0, 90 * MS, 100 * MS).value == 8.0
    assert g.observe(T0 + 99 * MS, 90 * MS, 100 * MS) is None
    assert g.observe(T0 + 100 * MS - 50, 90 * MS, 100 * MS) is None  # 50 ns short
    assert g.observe(T0 + 100 * MS, 90 * MS, 100 * MS).value == 6.0
    assert g.stats()["last_latency_ms"] == 90.0


def test_calm_samples_during_the_cooldown_count_and_the_count_restarts_after_a_change():
    g = gov(dict(STEPS, value=6), raise_after=2, cooldown_ms=1000.0)
    assert g.observe(T0, 10 * MS, 100 * MS) is None  # one calm sample: not yet 2
    d = g.observe(T0 + 1, 10 * MS, 100 * MS)
    assert (d.direction, d.value) == ("raise", 8.0)
    for k in range(2, 5):  # three calm samples inside the cooldown
        assert g.observe(T0 + k * MS, 10 * MS, 100 * MS) is None
    assert g.observe(T0 + 1 + 1000 * MS, 10 * MS, 100 * MS).value == 10.0  # calm 4 >= 2
    h = gov(dict(STEPS, value=4), raise_after=2, cooldown_ms=0.0)
    assert h.observe(T0, 10 * MS, 100 * MS) is None
    assert h.observe(T0 + 1, 10 * MS, 100 * MS).value == 6.0
    assert h.observe(T0 + 2, 10 * MS, 100 * MS) is None  # the count began again at the change
    assert h.observe(T0 + 3, 10 * MS, 100 * MS).value == 8.0


@pytest.mark.parametrize("cfg", [{"low": 0.9, "high": 0.8}, {"low": -0.1}, {"ema_alpha": -0.5}])
def test_inverted_thresholds_and_a_negative_alpha_are_refused(cfg):
    with pytest.raises(ValueError):
        GovernorConfig(**cfg)
