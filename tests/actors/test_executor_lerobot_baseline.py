"""The LeRobot baseline is LeRobot's behaviour: checked against lerobot 0.4.4's own RobotClient
methods, and the bench's comparison on a short run."""

from __future__ import annotations

import threading
from queue import Queue

import numpy as np
import pytest

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def lr():
    from edgevla.actors.bench.lerobot_baseline import import_lerobot

    return import_lerobot()


def real_client(aggregate_name: str):
    """A lerobot RobotClient with only the state its queue methods touch (no robot, no gRPC)."""
    from lerobot.async_inference.configs import get_aggregate_function
    from lerobot.async_inference.robot_client import RobotClient

    c = RobotClient.__new__(RobotClient)
    c.action_queue = Queue()
    c.action_queue_lock = threading.Lock()
    c.latest_action_lock = threading.Lock()
    c.latest_action = -1
    c.action_chunk_size = -1
    c._chunk_size_threshold = 0.5
    return c, get_aggregate_function(aggregate_name)


@pytest.mark.parametrize("aggregate", ["weighted_average", "average", "latest_only"])
def test_queue_semantics_match_lerobot_robot_client(lr, aggregate):
    from edgevla.actors.bench.lerobot_baseline import LeRobotAsync

    TimedAction = lr["TimedAction"]
    real, fn = real_client(aggregate)
    ours = LeRobotAsync(fps=30, actions_per_chunk=20, aggregate_fn_name=aggregate, lerobot=lr)
    rng = np.random.default_rng(7)
    for _ in range(300):
        if rng.uniform() < 0.3:
            # a chunk for an observation at some recent timestep
            t0 = max(0, real.latest_action - int(rng.integers(0, 8)))
            h = int(rng.integers(1, 20))
            acts = rng.normal(size=(h, 3)).astype(np.float32)
            chunk = [TimedAction(timestamp=0.1 * (t0 + i), timestep=t0 + i, action=acts[i])
                     for i in range(h)]
            real.action_chunk_size = max(real.action_chunk_size, len(chunk))
            real._aggregate_action_queues(chunk, fn)
            ours._receive(chunk)
        elif not real.action_queue.empty():
            a = real.action_queue.get_nowait()
            real.latest_action = a.get_timestep()
            b = ours.action_queue.get_nowait()
            ours.latest_action = b.get_timestep()
            assert a.get_timestep() == b.get_timestep()
            np.testing.assert_array_equal(np.asarray(a.get_action()), np.asarray(b.get_action()))
        got = [(x.get_timestep(), np.asarray(x.get_action()).tobytes())
               for x in ours.action_queue.queue]
        want = [(x.get_timestep(), np.asarray(x.get_action()).tobytes())
                for x in real.action_queue.queue]
        assert got == want
        if real.action_chunk_size > 0:
            assert ours._ready_to_send_observation() == real._ready_to_send_observation()


def test_observation_filter_and_must_go(lr):
    from edgevla.actors.bench.lerobot_baseline import LeRobotAsync

    c = LeRobotAsync(fps=10, actions_per_chunk=10, lerobot=lr)
    calls = []

    def policy(state, t_capture_s, timestep):
        calls.append((t_capture_s, timestep))
        return np.zeros((10, 2), np.float32), 0.25

    still = np.zeros(2)
    ticks = [c.tick(k * 0.1, still, policy) for k in range(12)]
    # queue empty at start: the first observation is must-go; later ones from a robot that has
    # not moved (< 1 degree) are filtered by the server while it has nothing new to say
    assert ticks[0].must_go and ticks[0].observation_sent
    assert c.observations_filtered > 0
    assert calls[0] == (0.0, 0)
    # actions arrive after the inference latency and are executed one per tick
    executed = [t.timestep for t in ticks if t.action is not None]
    # latest_action starts at -1, so the first chunk's timestep 0 still runs (after 0.25 s)
    assert executed[:3] == [0, 1, 2]
    assert next(i for i, t in enumerate(ticks) if t.action is not None) == 3


def test_bench_short_run_beats_lerobot_at_seams(lr, tmp_path):
    from edgevla.actors.bench.executor_plot import plot_seam
    from edgevla.actors.bench.executor_runs import metrics, run_edgevla, run_lerobot
    from edgevla.actors.bench.executor_world import NoisyPolicy

    policy = NoisyPolicy(latency_ms=300, seed=3)
    base_run = run_lerobot(policy, 8.0, lr)
    base = metrics(base_run)
    fade_run = run_edgevla("crossfade", policy, 8.0)
    fade = metrics(fade_run)
    assert fade["starved_ms"] == 0 and base["starved_ms"] == 0
    assert fade_run["stats"]["dropped_chunks"] == {k: 0 for k in fade_run["stats"]
                                                   ["dropped_chunks"]}
    assert fade["max_seam_jump_rad"] * 2 <= base["max_seam_jump_rad"]
    assert fade["rms_jerk_rad_s3"] < base["rms_jerk_rad_s3"]
    # both track the reference to within the policy's own error
    assert base["tracking_rms_rad"] < 0.1 and fade["tracking_rms_rad"] < 0.1
    png = plot_seam({"lerobot": base_run, "crossfade": fade_run}, base["seam_at_s"], 300,
                     tmp_path / "seam.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wall_clock_jitter_probe_reports_its_numbers():
    from edgevla.actors.bench.executor_jitter import measure_jitter

    j = measure_jitter(0.3, load=False)
    assert j["priority"] == "normal"
    assert {"jitter_p50_ms", "jitter_p99_ms", "overruns", "step_cpu_p99_us"} <= set(j)
    assert j["jitter_p50_ms"] <= j["jitter_p99_ms"] <= j["jitter_max_ms"]
