"""The supervisor's restart, back-off and hang rules, without processes or clocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgevla.actors.runtime.graph import RestartPolicy
from edgevla.actors.runtime.restart_policy import (STARTUP_GRACE_S, backoff_delay_s, decide_on_exit,
                                                   heartbeat_limit_s, is_hung, restart_due, silence_s,
                                                   wants_restart)
from edgevla.actors.wire.control import ReplicaState

seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
policies = st.builds(RestartPolicy, policy=st.sampled_from(["never", "on-failure", "always"]),
                     max_restarts=st.integers(0, 50), backoff_s=st.floats(0.0, 10.0),
                     backoff_max_s=st.floats(0.0, 100.0), reset_after_s=seconds)
live_states = st.sampled_from([ReplicaState.RUNNING, ReplicaState.HUNG])


def _exit(policy, code=1, state=ReplicaState.RUNNING, restarts=0, failures=0, ran_for_s=0.0):
    return decide_on_exit(policy, code=code, state=state, restarts=restarts,
                          consecutive_failures=failures, ran_for_s=ran_for_s)


def test_backoff_doubles_from_backoff_s_up_to_the_cap():
    p = RestartPolicy(backoff_s=0.2, backoff_max_s=1.0)
    assert [backoff_delay_s(p, n) for n in range(5)] == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])


@given(policies, st.integers(0, 5000))
def test_backoff_never_exceeds_the_cap_and_never_shrinks(p, n):
    assert 0.0 <= backoff_delay_s(p, n) <= p.backoff_max_s
    assert backoff_delay_s(p, n + 1) >= backoff_delay_s(p, n)


@pytest.mark.parametrize("policy,code,state,expected", [
    ("never", 1, ReplicaState.RUNNING, ReplicaState.FAILED),
    ("never", 0, ReplicaState.RUNNING, ReplicaState.EXITED),
    ("on-failure", 0, ReplicaState.RUNNING, ReplicaState.EXITED),
    ("on-failure", 1, ReplicaState.RUNNING, ReplicaState.BACKOFF),
    ("on-failure", 0, ReplicaState.HUNG, ReplicaState.BACKOFF),  # killed as hung is a failure
    ("always", 0, ReplicaState.RUNNING, ReplicaState.BACKOFF),
    ("always", 1, ReplicaState.STOPPING, ReplicaState.STOPPED),
])
def test_the_policy_decides_what_an_exit_leads_to(policy, code, state, expected):
    assert _exit(RestartPolicy(policy=policy), code=code, state=state).state == expected


@given(policies, st.integers(-15, 3), live_states, st.integers(0, 60), st.integers(0, 60), seconds)
def test_an_exit_restarts_exactly_when_the_policy_wants_it_and_restarts_are_left(
        p, code, state, restarts, failures, ran_for_s):
    d = _exit(p, code, state, restarts, failures, ran_for_s)
    assert d.failed == (code != 0 or state == ReplicaState.HUNG)
    restart = wants_restart(p, d.failed) and restarts < p.max_restarts
    assert (d.state == ReplicaState.BACKOFF) == restart
    assert d.gave_up == (wants_restart(p, d.failed) and not restart)
    if restart:
        base = 0 if ran_for_s > p.reset_after_s else failures
        assert d.consecutive_failures == base + 1
        assert d.delay_s == backoff_delay_s(p, base)
    else:
        assert d.delay_s is None and d.consecutive_failures == failures
        assert d.state in (ReplicaState.FAILED, ReplicaState.EXITED)
        assert (d.state == ReplicaState.FAILED) == d.failed or d.gave_up


@given(policies, st.integers(-15, 3), st.integers(0, 60), st.integers(0, 60), seconds)
def test_a_replica_being_stopped_ends_stopped_whatever_its_exit(p, code, restarts, failures, ran):
    d = _exit(p, code, ReplicaState.STOPPING, restarts, failures, ran)
    assert d.state == ReplicaState.STOPPED and d.delay_s is None and not d.gave_up
    assert d.consecutive_failures == failures


def test_a_long_healthy_run_resets_the_backoff():
    p = RestartPolicy(backoff_s=0.5, backoff_max_s=60.0, reset_after_s=30.0)
    crashed_fast = _exit(p, failures=3, ran_for_s=1.0)
    crashed_late = _exit(p, failures=3, ran_for_s=31.0)
    assert crashed_fast.delay_s == pytest.approx(4.0) and crashed_fast.consecutive_failures == 4
    assert crashed_late.delay_s == pytest.approx(0.5) and crashed_late.consecutive_failures == 1
    # "a while" is longer than reset_after_s: exactly that long still counts as crashing fast
    assert _exit(p, failures=3, ran_for_s=30.0).consecutive_failures == 4


def test_max_restarts_used_up_gives_up():
    d = _exit(RestartPolicy(max_restarts=3), restarts=3)
    assert d.state == ReplicaState.FAILED and d.gave_up and d.delay_s is None


@given(seconds, seconds, seconds)
def test_silence_counts_from_the_last_heartbeat_or_else_the_start(now, started, beat):
    assert silence_s(now, started, 0.0) == now - started
    if beat:
        assert silence_s(now, started, beat) == now - beat


@given(st.floats(0.01, 100.0), st.floats(0.0, 100.0))
def test_the_first_heartbeat_gets_the_startup_grace(timeout, grace):
    assert heartbeat_limit_s(timeout, True, grace) == timeout
    assert heartbeat_limit_s(timeout, False, grace) == max(timeout, grace)


@given(st.floats(0.0, 200.0), st.floats(0.01, 100.0), st.booleans())
def test_hung_means_silent_past_the_limit(silent, timeout, had_heartbeat):
    limit = heartbeat_limit_s(timeout, had_heartbeat)
    assert is_hung(silent, timeout, had_heartbeat) == (silent > limit)


def test_a_slow_starting_actor_is_not_hung_within_the_grace():
    assert not is_hung(STARTUP_GRACE_S - 1, 3.0, had_heartbeat=False)
    assert is_hung(STARTUP_GRACE_S + 1, 3.0, had_heartbeat=False)
    assert is_hung(3.5, 3.0, had_heartbeat=True)


@given(seconds, seconds)
def test_a_restart_is_due_once_its_time_has_come(now, at):
    assert restart_due(now, at) == (now >= at)


@given(policies, st.sampled_from(list(ReplicaState)), st.integers(0, 5))
def test_only_a_non_zero_exit_or_a_hang_is_a_failure_whatever_the_state(p, state, restarts):
    d = decide_on_exit(p, code=0, state=state, restarts=restarts, consecutive_failures=0,
                       ran_for_s=1.0)
    assert d.failed == (state == ReplicaState.HUNG)
    assert (d.state == ReplicaState.STOPPED) == (state == ReplicaState.STOPPING)


def test_a_decision_cannot_be_changed_after_it_is_made():
    import dataclasses

    d = _exit(RestartPolicy(policy="always"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.delay_s = 0.0  # type: ignore[misc]
