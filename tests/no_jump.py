"""The no-jump verdict of the reliability suite, for any run that recorded robot/state: neither
the servo goal the firmware wrote nor the arm itself moved further than the velocity limit
allows, over every 100 ms window (tests/system/test_reliability.py, test_sim_split_graph.py)."""

from __future__ import annotations

import numpy as np


def assert_no_jump(msgs: list, max_vel: float, kills: dict[str, tuple[float, float]],
                   until_s: float = np.inf) -> None:
    """``msgs``: recorded robot/state messages in time order; ``kills``: fault windows
    (name -> (start, end), host monotonic seconds) named in a failure; states after
    ``until_s`` are not judged (a restarted plant starts a new episode)."""
    assert len(msgs) > 500, f"only {len(msgs)} robot/state messages"
    # t_capture_ns is the host time the physics was advanced to for that reading; publish time
    # lags it by whatever the sim spent rendering frames in the same step
    t = np.array([m.t_capture_ns for m in msgs]) / 1e9
    # arm joints only: the simulated fingers are light position servos that snap to their
    # goal within a few ms whatever the command does (a sim artefact, not a command jump)
    q = np.stack([m.decode().joints[:5] for m in msgs])

    # No jumps, twice. (a) The servo goal the firmware wrote onto the bus (`commanded`, read by
    # the plant at each step): the whole command chain executor -> link -> M7 -> servo bus, in
    # host time, so it does not care whether the plant process was scheduled. Over any window it
    # moves no more than the velocity limit allows for the time that actually passed, with margin
    # for the bus latency jitter. A real jump (torque-on driving a joint to 0 rad, a restarted
    # executor starting from a stale pose) is far beyond it.
    window_s = 0.1
    j = np.searchsorted(t, t + window_s)
    valid = (j < len(t)) & (t + window_s < until_s)
    i_idx = np.flatnonzero(valid)
    assert len(i_idx) > 300, f"only {len(i_idx)} state windows before the sim was killed"
    dt = t[j[i_idx]] - t[i_idx]
    goal = np.stack([m.decode().commanded[:5] for m in msgs])
    excess = np.abs(goal[j[i_idx]] - goal[i_idx]).max(axis=1) - (1.5 * max_vel * dt + 0.05)
    k = int(np.argmax(excess))
    where = {n: (round(a - t[i_idx[k]], 2), round(b - t[i_idx[k]], 2)) for n, (a, b) in kills.items()}
    assert excess[k] < 0, (f"the servo goal jumped {excess[k]:.3f} rad beyond the velocity bound "
                           f"over {dt[k] * 1e3:.0f} ms at t={t[i_idx[k]] - t[0]:.2f}s; fault windows "
                           f"relative to it: {where}")

    # (b) The arm itself: over each window it travels no further than the velocity limit allows
    # for the time that passed (1.5x: the position servo closes each 10 ms goal step faster than
    # the average speed) plus the lag it had to close (|goal - arm| per joint at the window's start).
    # The lag term is for a plant process that was not scheduled for a while: its sim time jumps
    # (max_catchup_s) and the arm, left behind a goal that moved on, closes the gap in a burst once
    # it runs again (CI: 0.645 rad in 100 ms while a restarting executor loaded the 2 cores) -- a
    # simulator artefact, not a command. A jump of the arm itself (a plant that teleports, a joint
    # that drops while its goal stays) is explained by neither term.
    lag = np.abs(goal - q)[i_idx]
    moves = np.abs(q[j[i_idx]] - q[i_idx])
    allowed = 1.5 * max_vel * dt[:, None] + 0.05 + lag
    excess = (moves - allowed).max(axis=1)
    k = int(np.argmax(excess))
    kj = int(np.argmax(moves[k] - allowed[k]))
    where = {n: (round(a - t[i_idx[k]], 2), round(b - t[i_idx[k]], 2)) for n, (a, b) in kills.items()}
    assert excess[k] < 0, (f"the arm moved {moves[k, kj]:.3f} rad in {dt[k] * 1e3:.0f} ms (bound "
                           f"{allowed[k, kj]:.3f}, of which lag behind its goal {lag[k, kj]:.3f}) "
                           f"at t={t[i_idx[k]] - t[0]:.2f}s; fault windows relative to it: {where}")
