"""Runtime safety checks reached one by one, without running a graph: scheduling requests met
or reported, work-queue drops counted, heartbeats that are not ours refused."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest
import zmq

from edgevla.actors.runtime.graph import parse_graph
from edgevla.actors.runtime.process import apply_scheduling
from edgevla.actors.runtime.supervisor import Supervisor
from edgevla.actors.wire import endpoints as ep
from edgevla.actors.wire.bus import Publisher
from edgevla.actors.wire.codec import encode
from edgevla.actors.wire.messages import Frame, Heartbeat


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "60"])
    yield p.pid
    p.kill()
    p.wait()


def test_pinning_renicing_and_fifo_are_applied_or_reported(sleeper):
    cpu = min(os.sched_getaffinity(0))
    notes = apply_scheduling([cpu], 7, 5, pid=sleeper)
    assert os.sched_getaffinity(sleeper) == {cpu}
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == 7
    fifo = os.sched_getscheduler(sleeper) == os.SCHED_FIFO
    # where SCHED_FIFO is not allowed (no CAP_SYS_NICE) the process runs on, and says so
    assert fifo or any("SCHED_FIFO priority 5 refused" in n for n in notes), notes
    assert len(notes) == (0 if fifo else 1)


def test_cpus_that_do_not_exist_are_reported_not_pinned(sleeper):
    before = os.sched_getaffinity(sleeper)
    notes = apply_scheduling([4096], 0, 0, pid=sleeper)
    assert notes == ["cpu_affinity [4096]: none of these CPUs exist here; not pinning"]
    assert os.sched_getaffinity(sleeper) == before


def test_a_work_queue_with_no_consumer_counts_every_drop(tmp_path):
    ctx = zmq.Context()
    pub = Publisher(ctx, f"ipc://{tmp_path}/q.sock", kind=zmq.PUSH, hwm=1, producer="p")
    try:
        sent = [pub.send("work", Frame(camera="c", image=np.zeros((2, 2, 3), np.uint8)))
                for _ in range(5)]
        assert sent == [False] * 5 and pub.counters.dropped_send["work"] == 5
        assert pub.counters.sent["work"] == 0
    finally:
        pub.close()
        ctx.term()


GRAPH = """\
name: hb
actors:
  cam: {kind: synthetic_camera, outputs: {frames: x}, rate_hz: 1}
  a: {kind: counter_sink, inputs: {in: x}}
"""


def test_heartbeats_that_are_not_a_replicas_own_are_counted_and_change_nothing(run_base):
    sup = Supervisor(parse_graph(GRAPH, "hb.yaml"), base_dir=run_base)
    r = sup._make_replica(sup.graph.actors["a"], 0)
    sup.replicas["a"] = [r]
    r.popen = subprocess.Popen(["sleep", "60"])  # as if spawned: a live pid
    push = sup.ctx.socket(zmq.PUSH)
    push.connect(ep.heartbeat_endpoint(sup.run_dir))
    try:
        garbage = [[b"hb", b"\xc1"], [b"hb"],
                   encode("heartbeat", Frame(camera="c", image=np.zeros((1, 1, 3), np.uint8)))]
        for frames in garbage:
            push.send_multipart(frames)
        # a well-formed heartbeat from another pid: a stale or spoofed process
        push.send_multipart(encode("heartbeat", Heartbeat(actor="a", pid=999, stats={})))
        deadline = time.monotonic() + 30
        while sup.malformed_heartbeats < len(garbage) and time.monotonic() < deadline:
            sup._drain_heartbeats(time.monotonic())
            time.sleep(0.01)
        sup._drain_heartbeats(time.monotonic())
        assert sup.malformed_heartbeats == len(garbage)
        assert not r.healthy_once and not r.last_heartbeat_at
        push.send_multipart(encode("heartbeat", Heartbeat(actor="a", pid=r.pid, stats={})))
        while not r.healthy_once and time.monotonic() < deadline:
            sup._drain_heartbeats(time.monotonic())
            time.sleep(0.01)
        assert r.healthy_once  # its own heartbeat is heard
    finally:
        push.close(linger=0)
        r.popen.kill()
        r.popen.wait()
        sup.stop()
