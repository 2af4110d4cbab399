"""Multi-process runtime: restarts, backoff, hang detection, rate changes, replicas, bad input.

Every test starts real actor processes over ipc in a private run directory and drives the
supervisor loop from the test (no threads). Timing asserts are about the runtime's own logic
(backoff delays, rate targets), with generous margins, never about machine speed.
"""

from __future__ import annotations

import os
import re
import signal
import stat

import numpy as np
import pytest
import zmq

from edgevla.actors.wire import endpoints as ep
from edgevla.actors.wire.bus import Publisher
from edgevla.actors.wire.messages import Frame
from runtime_helpers import actor_stats, replica, run_for, run_until, start_graph

pytestmark = [pytest.mark.timing, pytest.mark.timeout(120)]

PIPE = """\
name: pipe
defaults:
  heartbeat_timeout_s: 1.5
  restart: {policy: on-failure, max_restarts: 5, backoff_s: 0.1}
actors:
  cam:
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 30
  sink:
    kind: counter_sink
    inputs: {in: cam/top}
"""


def running(sup, name, i=0):
    return replica(sup, name, i).state == "running" and replica(sup, name, i).last_heartbeat_at


def test_pipeline_delivers_and_reports(run_base):
    sup = start_graph(PIPE, run_base)
    try:
        assert run_until(sup, lambda: running(sup, "cam") and running(sup, "sink"))
        run_for(sup, 1.0)
        st = actor_stats(sup, "sink")
        assert st["actor_stats"]["count"] > 5
        assert st["torch_loaded"] is False  # the board runtime never loads torch
        run_dir_mode = stat.S_IMODE(os.stat(sup.run_dir).st_mode)
        assert run_dir_mode == 0o700
        for name in os.listdir(sup.run_dir):
            if name.endswith(".sock"):
                mode = stat.S_IMODE(os.stat(sup.run_dir / name).st_mode)
                assert mode & 0o077 == 0, f"{name} is accessible to others: {oct(mode)}"
    finally:
        sup.stop()
    assert all(r.state == "stopped" for r in sup.all_replicas())


def test_restart_after_sigkill(run_base):
    sup = start_graph(PIPE, run_base)
    try:
        assert run_until(sup, lambda: running(sup, "sink"))
        old_pid = replica(sup, "sink").pid
        os.kill(old_pid, signal.SIGKILL)
        assert run_until(sup, lambda: replica(sup, "sink").restarts == 1
                         and running(sup, "sink"))
        assert replica(sup, "sink").pid != old_pid
        run_for(sup, 0.5)
        assert actor_stats(sup, "sink")["actor_stats"]["count"] > 0  # receives again
        assert replica(sup, "cam").restarts == 0
    finally:
        sup.stop()


def test_backoff_doubles_and_max_restarts_gives_up(run_base):
    graph = PIPE.replace("kind: counter_sink", "kind: counter_sink\n    params: {crash_after: 1}\n"
                         "    restart: {policy: on-failure, max_restarts: 3, backoff_s: 0.2, "
                         "backoff_max_s: 5}")
    sup = start_graph(graph, run_base)
    try:
        assert run_until(sup, lambda: replica(sup, "sink").state == "failed", timeout_s=40)
        r = replica(sup, "sink")
        assert r.restarts == 3
        delays = [float(m.group(1)) for e in r.events
                  if (m := re.search(r"restart in ([\d.]+)s", e))]
        assert delays == pytest.approx([0.2, 0.4, 0.8])
        starts = [float(e.split("s ")[0]) for e in r.events if " start pid " in e]
        exits = [float(e.split("s ")[0]) for e in r.events if " exit " in e]
        for exit_t, start_t, delay in zip(exits, starts[1:], delays):
            assert start_t - exit_t >= delay * 0.95  # waited at least the backoff
        assert replica(sup, "cam").state == "running"  # the rest of the graph keeps going
    finally:
        sup.stop()


def test_never_policy_does_not_restart(run_base):
    graph = PIPE.replace("kind: counter_sink", "kind: counter_sink\n    params: {crash_after: 1}\n"
                         "    restart: never")
    sup = start_graph(graph, run_base)
    try:
        assert run_until(sup, lambda: replica(sup, "sink").state == "failed")
        run_for(sup, 0.5)
        assert replica(sup, "sink").restarts == 0
    finally:
        sup.stop()


def test_hung_actor_detected_by_heartbeat(run_base):
    sup = start_graph(PIPE, run_base)
    try:
        assert run_until(sup, lambda: running(sup, "sink"))
        pid = replica(sup, "sink").pid
        os.kill(pid, signal.SIGSTOP)
        assert run_until(sup, lambda: any("hung" in e for e in replica(sup, "sink").events),
                         timeout_s=10)
        assert run_until(sup, lambda: replica(sup, "sink").restarts == 1 and running(sup, "sink"))
        assert replica(sup, "sink").pid != pid
    finally:
        sup.stop()


def test_rate_change_at_run_time(run_base):
    sup = start_graph(PIPE, run_base)
    try:
        assert run_until(sup, lambda: running(sup, "cam"))
        run_for(sup, 2.5)
        assert actor_stats(sup, "cam")["rate_actual_hz"] == pytest.approx(30, rel=0.1)
        reply = sup.scale("cam", hz=10)
        assert reply["ok"] and reply["applied"] == 1
        run_for(sup, 2.5)  # the rate window is 2 s
        st = actor_stats(sup, "cam")
        assert st["rate_target_hz"] == 10
        assert st["rate_actual_hz"] == pytest.approx(10, rel=0.1)
    finally:
        sup.stop()


def test_replicas_share_work(run_base):
    graph = """\
name: rep
defaults: {heartbeat_timeout_s: 2}
actors:
  cam:
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 60
  stage:
    kind: dummy_stage
    inputs: {in: cam/top}
    outputs: {out: feat}
    replicas: 2
    max_replicas: 3
    params: {work_ms: 20}
  sink:
    kind: counter_sink
    inputs: {in: feat}
"""
    sup = start_graph(graph, run_base)
    try:
        assert run_until(sup, lambda: all(running(sup, "stage", i) for i in range(2))
                         and running(sup, "sink"))
        run_for(sup, 2.0)
        handled = [actor_stats(sup, "stage", i)["actor_stats"]["handled"] for i in range(2)]
        # 60 Hz of 20 ms work is more than one replica can do (50 Hz): both must carry load
        assert min(handled) > 0.25 * sum(handled), handled
        by_producer = actor_stats(sup, "sink")["actor_stats"]["by_producer"]
        assert set(by_producer) == {"stage.0", "stage.1"}
        assert sup.scale("stage", replicas=3)["ok"]
        assert run_until(sup, lambda: running(sup, "stage", 2))
        run_for(sup, 1.5)
        assert actor_stats(sup, "stage", 2)["actor_stats"]["handled"] > 0
        assert not sup.scale("stage", replicas=4)["ok"]  # above max_replicas
        # scale down: the removed replicas' processes end, the one left carries on alone
        gone = sup.replicas["stage"][1:]
        assert sup.scale("stage", replicas=1)["ok"]
        assert [r.index for r in sup.replicas["stage"]] == [0]
        assert all(r.popen.poll() is not None for r in gone)
        assert not sup.scale("stage", replicas=0)["ok"]  # at least one
        before = actor_stats(sup, "stage", 0)["actor_stats"]["handled"]
        assert run_until(sup, lambda: actor_stats(sup, "stage", 0)["actor_stats"]["handled"]
                         > before + 10 and running(sup, "stage", 0))
    finally:
        sup.stop()


def test_malformed_input_never_kills_an_actor(run_base):
    graph = """\
name: inj
external_topics: [inj]
defaults: {heartbeat_timeout_s: 2}
actors:
  sink:
    kind: counter_sink
    inputs: {in: inj}
"""
    sup = start_graph(graph, run_base)
    ctx = zmq.Context()
    pub = Publisher(ctx, ep.topic_endpoint(sup.run_dir, "inj", 0), producer="test")
    try:
        assert run_until(sup, lambda: running(sup, "sink"))
        run_for(sup, 0.5)  # let the subscription reach the publisher
        good = Frame(camera="x", image=np.zeros((2, 2, 3), np.uint8))
        garbage = [[b"inj"], [b"inj", b"\xc1"], [b"inj", b"\x80", b"x"],
                   [b"inj", b"\x92\x01\x02"], [b"inj", os.urandom(4096)],
                   [b"inj", os.urandom(64), os.urandom(10_000_000)]]  # oversized
        sent_good = 0
        for i in range(30):
            pub.send_raw(garbage[i % len(garbage)])
            pub.send("inj", Frame(camera="x", image=good.image))
            sent_good += 1
            run_for(sup, 0.02)
        assert run_until(sup, lambda: (replica(sup, "sink").last_stats.get("bus", {})
                                       .get("received", {}).get("inj", 0)) == sent_good,
                         timeout_s=10)
        st = actor_stats(sup, "sink")
        # latest-value input: what arrived between two steps is counted as skipped, not lost
        assert st["actor_stats"]["count"] + st["skipped"] == sent_good
        assert st["malformed"] == 30
        assert set(st["bus"]["malformed"]["inj"]) >= {"frame_count", "bad_header"}
        assert replica(sup, "sink").restarts == 0 and replica(sup, "sink").state == "running"
    finally:
        pub.close()
        ctx.term()
        sup.stop()
