"""Hypothesis properties of the firmware's 1 kHz loop, run through the real C core.

Each example builds a link session (frames encoded by the Python codec) and replays it tick
by tick in mcu/build/host-asan/ctl_replay (ASan/UBSan): limits, random waypoint streams (out
of order, duplicated, late, beyond the position limits), then silence. Properties: the
command stays inside the position limits, never moves faster than max velocity, holds after
the watchdog fires, and the queue's time ordering makes arrival order irrelevant.
"""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.firmware_bridge.link import codec as p
from edgevla.firmware_bridge.firmware.build import ensure_tool

SAN_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")


@pytest.fixture(scope="module")
def replay():
    exe = ensure_tool("host-asan") / "ctl_replay"

    def run(script: list[str]) -> tuple[np.ndarray, list[str]]:
        r = subprocess.run([str(exe)], input="\n".join(script) + "\n", capture_output=True,
                           text=True, env=SAN_ENV, timeout=60)
        assert r.returncode == 0, r.stderr
        ticks = [ln[2:].split() for ln in r.stdout.splitlines() if ln.startswith("K ")]
        out = [ln[2:] for ln in r.stdout.splitlines() if ln.startswith("O ")]
        return np.array(ticks, dtype=np.float64), out

    return run


def frame(msg, seq: int) -> str:
    return "F " + p.encode_frame(msg, seq).hex()


@dataclass
class Session:
    limits: list[p.JointLimits]
    watchdog_ms: int
    batches: list[tuple[int, list[p.Waypoint]]]  # (send time us, waypoints)
    end_us: int


joint_limits = st.builds(
    p.JointLimits,
    st.floats(-3.0, -0.0625, width=32), st.floats(0.0625, 3.0, width=32),
    st.floats(0.25, 8.0, width=32), st.floats(2.0, 200.0, width=32))


@st.composite
def sessions(draw):
    limits = draw(st.lists(joint_limits, min_size=6, max_size=6))
    watchdog_ms = draw(st.integers(60, 400))
    n = draw(st.integers(1, 40))
    dts = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))
    pos = draw(st.lists(st.tuples(*[st.floats(-4.0, 4.0, width=32)] * 6), min_size=n,
                        max_size=n))
    flags = draw(st.lists(st.sampled_from([0, p.WP_LINEAR, p.WP_END, p.WP_LINEAR | p.WP_END]),
                          min_size=n, max_size=n))
    start = 20_000
    t = start + np.cumsum(np.array(dts) * 1000)
    pts = [p.Waypoint(int(t[i]), pos[i], flags[i]) for i in range(n)]
    # send in a few batches, each shortly before its first point is due
    cut = sorted(set(draw(st.lists(st.integers(1, n), max_size=3))) | {n})
    batches, lo = [], 0
    for hi in cut:
        chunk = pts[lo:hi]
        send_t = max(10_000, chunk[0].t_us - draw(st.integers(2_000, 30_000)))
        batches.append((send_t, chunk))
        lo = hi
    batches.sort(key=lambda b: b[0])
    end = int(t[-1]) + watchdog_ms * 1000 + 600_000
    return Session(limits, watchdog_ms, batches, end)


def script_for(s: Session, shuffle_seed: int | None = None, extra: list | None = None):
    seq = 0
    lines = [frame(p.Limits(s.limits), 0), frame(p.Config(s.watchdog_ms, 0), 1),
             frame(p.Enable(), 2), "T 5000"]
    seq = 3
    for send_t, chunk in s.batches:
        lines.append(f"T {send_t}")
        chunk = list(chunk)
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(chunk)
        for i in range(0, len(chunk), 14):
            lines.append(frame(p.Waypoints(chunk[i:i + 14]), seq))
            seq += 1
    for e in extra or []:
        lines.append(e)
    lines.append(f"T {s.end_us}")
    lines.append(frame(p.GetState(), seq))
    return lines


def last_state(out: list[str]) -> dict:
    st_line = [o for o in out if o.startswith("STATE")][-1]
    return {k: v for k, v in (kv.split("=", 1) for kv in st_line.split()[2:]) if "," not in v}


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=sessions())
def test_limits_velocity_and_watchdog_hold(replay, s):
    ticks, out = replay(script_for(s))
    t = ticks[:, 0]
    cmd = ticks[:, 1:7]
    mode = ticks[:, 7]
    lo = np.array([j.min_rad for j in s.limits], dtype=np.float32).astype(np.float64)
    hi = np.array([j.max_rad for j in s.limits], dtype=np.float32).astype(np.float64)
    vmax = np.array([j.max_vel_rad_s for j in s.limits], dtype=np.float32).astype(np.float64)
    amax = np.array([j.max_acc_rad_s2 for j in s.limits], dtype=np.float32).astype(np.float64)
    # 1. position limits, every tick
    assert np.all(cmd >= lo - 1e-6) and np.all(cmd <= hi + 1e-6)
    # 2. never faster than max velocity (1 ms ticks)
    step = np.abs(np.diff(cmd, axis=0))
    assert np.all(step <= vmax * 1e-3 * (1 + 1e-4) + 1e-6), step.max(axis=0) / 1e-3
    # 3. the watchdog: after the last frame + watchdog, the firmware holds and comes to rest
    last_frame_t = s.batches[-1][0]
    fire = last_frame_t + s.watchdog_ms * 1000
    after = t > fire + 1000
    assert np.all(mode[after] == p.MODE_HOLDING)
    assert any(o.startswith("ERROR") and f"code={p.ERR_WATCHDOG}" in o for o in out)
    rest_t = fire + 1000 + 1e6 * float(np.max(2 * vmax / amax)) + 50_000
    still = t > rest_t
    if still.sum() > 2:
        assert np.ptp(cmd[still], axis=0).max() < 1e-6
    st_ = last_state(out)
    assert int(st_["faults"]) & p.FAULT_WATCHDOG


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=sessions(), seed=st.integers(0, 2**31))
def test_arrival_order_within_a_batch_does_not_matter(replay, s, seed):
    ticks_a, _ = replay(script_for(s))
    ticks_b, _ = replay(script_for(s, shuffle_seed=seed))
    np.testing.assert_array_equal(ticks_a, ticks_b)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=sessions(), n_late=st.integers(1, 5), n_dup=st.integers(1, 5))
def test_late_and_duplicate_waypoints_are_counted_and_harmless(replay, s, n_late, n_dup):
    """Late points (time already passed) are dropped, duplicates replace their twin; both
    are counted and the trajectory is the same as without them (duplicates carry the same
    positions)."""
    ticks_ref, _ = replay(script_for(s))
    send_t, chunk = s.batches[-1]
    late = [p.Waypoint(max(1, send_t - 1000 * (k + 1)), (0.3,) * 6, 0) for k in range(n_late)]
    dups = [chunk[k % len(chunk)] for k in range(n_dup)]
    # the last batch goes out before its first point is due: every duplicate is still queued
    assert all(w.t_us > send_t for w in dups)
    # inject right after the last batch, at the same MCU time
    extra = [frame(p.Waypoints(late), 900), frame(p.Waypoints(dups), 901)]
    s2 = Session(s.limits, s.watchdog_ms, s.batches, s.end_us)
    ticks, out = replay(script_for(s2, extra=None)[:-2] + extra +
                        [f"T {s.end_us}", frame(p.GetState(), 902)])
    st_ = last_state(out)
    assert int(st_["late"]) == n_late
    assert int(st_["duplicates"]) == n_dup
    np.testing.assert_allclose(ticks[:, 1:7], ticks_ref[:, 1:7], atol=0)


def test_hold_decelerates_within_the_acceleration_limit(replay):
    lim = [p.JointLimits(-3.0, 3.0, 2.0, 10.0)] * 6
    pts = [p.Waypoint(20_000 + 1000 * k, (min(2.5, 0.002 * k),) * 6, p.WP_LINEAR)
           for k in range(1, 14)]
    far = [p.Waypoint(1_500_000, (2.5,) * 6, p.WP_LINEAR | p.WP_END)]
    lines = [frame(p.Limits(lim), 0), frame(p.Config(0, 0), 1), frame(p.Enable(), 2),
             "T 10000", frame(p.Waypoints(pts + far), 3), "T 800000", frame(p.Hold(), 4),
             "T 2000000", frame(p.GetState(), 5)]
    ticks, out = replay(lines)
    cmd = ticks[:, 1]
    vel = np.diff(cmd) / 1e-3
    acc = np.diff(vel) / 1e-3
    hold_i = int(np.searchsorted(ticks[:, 0], 800_000))
    assert abs(vel[hold_i - 5]) > 1.0  # it was moving when HOLD arrived
    # float32 positions near 2 rad have ~2.4e-7 rad resolution: +-0.5 rad/s^2 of noise here
    assert np.all(np.abs(acc[hold_i:]) <= 10.0 + 1.0), np.abs(acc[hold_i:]).max()
    assert np.ptp(cmd[-200:]) < 1e-6  # and came to rest
    assert ticks[-1, 7] == p.MODE_HOLDING
    assert ticks[-1, 8] == 0  # queue dropped


def test_underrun_counted_only_without_end_flag(replay):
    lines = [frame(p.Enable(), 0), "T 5000",
             frame(p.Waypoints([p.Waypoint(50_000, (0.1,) * 6, 0)]), 1), "T 100000",
             frame(p.Waypoints([p.Waypoint(150_000, (0.2,) * 6, p.WP_END)]), 2), "T 300000",
             frame(p.GetState(), 3)]
    _, out = replay(lines)
    assert last_state(out)["underruns"] == "1"


def test_waypoints_while_disabled_are_refused(replay):
    lines = [frame(p.Waypoints([p.Waypoint(50_000, (0.1,) * 6, 0)]), 0), "T 60000",
             frame(p.GetState(), 1)]
    ticks, out = replay(lines)
    assert any(o.startswith("ERROR") and f"code={p.ERR_NOT_ENABLED}" in o for o in out)
    assert np.all(ticks[:, 1:7] == 0)
