"""Restart, back-off and hang decisions of the supervisor, as pure functions.

Times come in as arguments (monotonic seconds) and decisions go out as values: no clock is read
and no process is touched here, so the rules can be tested exhaustively without running any.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevla.actors.runtime.graph import RestartPolicy
from edgevla.actors.wire.control import ReplicaState

STARTUP_GRACE_S = 30.0  # model loading may take a while before the first heartbeat
# 2.0 ** 1023 is the largest power of two a float holds; past it the delay is backoff_max_s anyway
_MAX_DOUBLINGS = 1023


@dataclass(frozen=True)
class ExitDecision:
    """What becomes of a replica whose process exited."""

    state: ReplicaState
    failed: bool  # a non-zero exit, or killed as hung
    consecutive_failures: int
    delay_s: float | None = None  # set when ``state`` is BACKOFF: restart this much later
    gave_up: bool = False  # it would restart, but has used up ``max_restarts``


def backoff_delay_s(policy: RestartPolicy, consecutive_failures: int) -> float:
    """``backoff_s`` doubled per consecutive failure, capped at ``backoff_max_s``."""
    return min(policy.backoff_s * 2.0 ** min(consecutive_failures, _MAX_DOUBLINGS),
               policy.backoff_max_s)


def wants_restart(policy: RestartPolicy, failed: bool) -> bool:
    return policy.policy == "always" or (policy.policy == "on-failure" and failed)


def decide_on_exit(policy: RestartPolicy, *, code: int, state: ReplicaState, restarts: int,
                   consecutive_failures: int, ran_for_s: float) -> ExitDecision:
    """The replica's next state after its process exited with ``code`` while in ``state``,
    having been restarted ``restarts`` times and having run ``ran_for_s`` this time."""
    failed = code != 0 or state == ReplicaState.HUNG
    if state == ReplicaState.STOPPING:  # we stopped it: not a failure to act on
        return ExitDecision(ReplicaState.STOPPED, failed, consecutive_failures)
    if not wants_restart(policy, failed):
        return ExitDecision(ReplicaState.FAILED if failed else ReplicaState.EXITED, failed,
                            consecutive_failures)
    if restarts >= policy.max_restarts:
        return ExitDecision(ReplicaState.FAILED, failed, consecutive_failures, gave_up=True)
    if ran_for_s > policy.reset_after_s:  # it ran well for a while: this is a fresh failure
        consecutive_failures = 0
    return ExitDecision(ReplicaState.BACKOFF, failed, consecutive_failures + 1,
                        delay_s=backoff_delay_s(policy, consecutive_failures))


def silence_s(now: float, started_at: float, last_heartbeat_at: float) -> float:
    """How long a replica has been quiet: since its last heartbeat, or since its start if it has
    sent none yet (``last_heartbeat_at`` 0)."""
    return now - (last_heartbeat_at or started_at)


def heartbeat_limit_s(heartbeat_timeout_s: float, had_heartbeat: bool,
                      startup_grace_s: float = STARTUP_GRACE_S) -> float:
    """The silence allowed: before the first heartbeat, setup (model loading) gets the grace."""
    return heartbeat_timeout_s if had_heartbeat else max(startup_grace_s, heartbeat_timeout_s)


def is_hung(silent_for_s: float, heartbeat_timeout_s: float, had_heartbeat: bool,
            startup_grace_s: float = STARTUP_GRACE_S) -> bool:
    return silent_for_s > heartbeat_limit_s(heartbeat_timeout_s, had_heartbeat, startup_grace_s)


def restart_due(now: float, next_start_at: float) -> bool:
    """A replica in back-off starts again once its delay is over."""
    return now >= next_start_at
