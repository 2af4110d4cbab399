"""Replay: record a run, replay it stepwise with the executor live -> bit-identical commands;
swap in a different blending / model -> the comparison says by how much; timed replay over the
bus republishes the exact frames; the CLI drives all of it."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.actors.recording.mcap_reader import read_recording
from edgevla.actors.recording.replay_compare import compare_replay
from edgevla.actors.recording.replay_setup import load_recording
from edgevla.actors.recording.step_replay import replay_step
from edgevla.actors.recording.timed_replay import replay_timed
from edgevla.actors.runtime.inprocess import InProcessGraph
from edgevla.actors.wire.bus import Subscriber, make_run_dir
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.endpoints import topic_endpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_replay_standins import KINDS, pipeline_graph  # noqa: E402

LATENCY = {"vision": 20_000_000, "policy": 150_000_000}  # virtual compute time of the stages


def record_run(path: Path, seconds: float = 3.0, **graph_kw) -> Path:
    g = InProcessGraph(pipeline_graph(str(path), **graph_kw), clock=VirtualClock(10**12),
                       kinds=KINDS, latency_ns=LATENCY)
    g.run_for(int(seconds * 1e9))
    g.flush_collectors()
    g.close()
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return record_run(tmp_path_factory.mktemp("rec") / "run.mcap")


def test_step_replay_without_replacement_gives_bit_identical_commands(recording):
    msgs, traces = load_recording(recording)
    assert {m.topic for m in msgs} == {"cam/top", "features", "chunks", "robot/state",
                                       "commands"}
    res = replay_step(msgs, pipeline_graph(None), ["executor"], traces=traces, kinds=KINDS,
                      latency_ns=LATENCY)
    assert res.tick_source == {"executor": "step trace"}
    (diff,) = compare_replay(res)
    assert diff.topic == "commands" and diff.recorded > 250
    assert diff.bit_identical, diff.as_dict()
    assert diff.max_abs_diff == 0.0 and diff.mean_abs_diff == 0.0


def test_without_step_traces_the_output_times_reconstruct_the_steps(recording):
    msgs, _ = load_recording(recording)
    res = replay_step(msgs, pipeline_graph(None), ["executor"], traces={}, kinds=KINDS)
    assert res.tick_source == {"executor": "command t_target_ns - link_latency"}
    (diff,) = compare_replay(res)
    assert diff.bit_identical, diff.as_dict()


def test_replacing_the_blending_changes_commands_and_says_by_how_much(recording):
    msgs, traces = load_recording(recording)
    res = replay_step(msgs, pipeline_graph(None), ["executor"], traces=traces, kinds=KINDS,
                      overrides={"executor": {"blending": "average", "link_latency_ms": 40}})
    (diff,) = compare_replay(res)
    assert diff.recorded == diff.replayed == diff.compared
    assert diff.identical_frames == 0  # every command targets another time now
    # the target moved by 35 ms on a 0.5 rad, 4 s sine: up to ~0.5*2pi/4*0.035 = 0.027 rad
    assert 0.005 < diff.max_abs_diff < 0.05
    assert 0 < diff.mean_abs_diff < diff.max_abs_diff
    assert diff.per_field["positions"]["max_abs_diff"] == diff.max_abs_diff


def test_replacing_the_model_and_executor_together(recording):
    msgs, traces = load_recording(recording)
    res = replay_step(msgs, pipeline_graph(None), ["policy", "executor"], traces=traces,
                      kinds=KINDS, latency_ns=LATENCY,
                      overrides={"policy": {"horizon": 20, "fps": 30, "amplitude_rad": 0.6}})
    diffs = {d.topic: d for d in compare_replay(res)}
    assert set(diffs) == {"chunks", "commands"}
    # a 20% larger amplitude: chunk actions differ by up to 0.1 rad
    assert diffs["chunks"].max_abs_diff == pytest.approx(0.1, abs=0.002)
    assert diffs["commands"].max_abs_diff == pytest.approx(0.1, abs=0.01)
    assert diffs["chunks"].replayed == diffs["chunks"].recorded


def test_real_executor_replays_bit_identically_and_strategies_differ(tmp_path):
    graph = pipeline_graph(None, executor_kind="executor", policy_kind="noisy_policy",
                           executor_params={"strategy": "crossfade", "crossfade_ms": 150})
    rec = record_run(tmp_path / "exec.mcap", seconds=3.0, executor_kind="executor",
                     policy_kind="noisy_policy",
                     executor_params={"strategy": "crossfade", "crossfade_ms": 150})
    msgs, traces = load_recording(rec)
    res = replay_step(msgs, graph, ["executor"], traces=traces, kinds=KINDS, latency_ns=LATENCY)
    diffs = {d.topic: d for d in compare_replay(res)}
    assert diffs["commands"].recorded > 200
    assert diffs["commands"].bit_identical, diffs["commands"].as_dict()
    # the same recorded chunks through other strategies: the report says how far apart
    spread = {}
    for strategy in ("latest", "weighted_average", "ensemble"):
        res = replay_step(msgs, graph, ["executor"], traces=traces, kinds=KINDS,
                          latency_ns=LATENCY, overrides={"executor": {"strategy": strategy}})
        (d,) = compare_replay(res)
        assert d.compared == d.recorded
        assert d.identical_payload < d.compared
        assert 1e-4 < d.mean_abs_diff <= d.max_abs_diff < 0.2  # chunks disagree by <= 0.1 rad
        spread[strategy] = d.max_abs_diff
    assert len(set(spread.values())) == 3


# ------------------------------------------------------------------------------ CLI

GRAPH_YAML = """\
name: replay-test
actors:
  cam: {kind: synthetic_camera, outputs: {frames: cam/top}, rate_hz: 10,
        params: {camera: top, width: 32, height: 24}}
  vision: {kind: dummy_stage, inputs: {in: cam/top}, outputs: {out: features},
           params: {work_ms: 0}}
  policy: {kind: dummy_policy, inputs: {features: features}, outputs: {chunks: chunks},
           params: {horizon: 20, fps: 30}}
"""


def test_cli_step_replay_compare_and_out(recording, tmp_path, capsys):
    from edgevla.actors.cli.main import main

    g = tmp_path / "g.yaml"
    g.write_text(GRAPH_YAML)
    out_json = tmp_path / "same.json"
    assert main(["replay", str(recording), "--step", "--graph", str(g), "--replace", "policy",
                 "--compare", "--json", str(out_json), "--delivery-us", "1"]) == 0
    rep = json.loads(out_json.read_text())
    (chunks,) = rep["topics"]
    # the policy is trigger-driven; the recording modelled 150 ms of inference that the live one
    # does not have, so stamps differ but every chunk's content is the same
    assert chunks["recorded"] == chunks["replayed"] == chunks["identical_payload"] == 30
    assert chunks["max_abs_diff"] == 0.0
    out_json2 = tmp_path / "other.json"
    assert main(["replay", str(recording), "--step", "--graph", str(g), "--replace", "policy",
                 "--set", "policy.amplitude_rad=0.7", "--compare", "--json", str(out_json2),
                 "--out", str(tmp_path / "replayed.mcap")]) == 0
    rep2 = json.loads(out_json2.read_text())
    assert rep2["topics"][0]["max_abs_diff"] == pytest.approx(0.2, abs=0.005)
    assert rep2["bit_identical"] is False
    text = capsys.readouterr().out
    assert "live outputs vs recording" in text and "chunks" in text
    replayed = read_recording(tmp_path / "replayed.mcap")
    assert sum(m.topic == "chunks" for m in replayed) == 30
    assert main(["replay", str(recording), "--step", "--replace", "policy"]) == 2  # no graph
    assert main(["replay", str(recording), "--step", "--graph", str(g), "--replace",
                 "nosuch"]) == 2
    assert "no such actor" in capsys.readouterr().err


# ------------------------------------------------------------------------------ timed mode

def test_timed_replay_republishes_the_exact_frames_at_speed(recording, run_base):
    msgs, _ = load_recording(recording, topics=["cam/top", "chunks"])
    msgs = [m for m in msgs if m.publish_time_ns - msgs[0].publish_time_ns < 1_000_000_000]
    run_dir = make_run_dir(run_base, name="replay")
    ctx = zmq.Context()
    sub = Subscriber(ctx, [topic_endpoint(run_dir, t, 0) for t in ("cam/top", "chunks")],
                     ["cam/top", "chunks"], hwm=10_000)
    got: list = []
    stats = {}

    def run():
        stats["s"] = replay_timed(msgs, run_dir, speed=4.0, warmup_s=0.5)

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 20
    while (th.is_alive() or len(got) < len(msgs)) and time.monotonic() < deadline:
        raw = []
        if sub.sock.poll(50):
            raw = sub.sock.recv_multipart()
        if raw:
            got.append(raw)
    th.join()
    sub.close()
    ctx.term()
    s = stats["s"]
    assert sum(s.dropped.values()) == 0
    assert len(got) == len(msgs)
    for frames, m in zip(got, msgs):
        assert frames == [bytes(memoryview(f).cast("B")) for f in m.frames]
    # paced: a replay at x4 of ~1 s of recording cannot finish in less than ~0.25 s
    assert s.wall_s >= 0.9 * s.recording_s / 4.0


def test_timed_replay_runs_replaced_actors_live(recording, run_base, tmp_path):
    msgs, _ = load_recording(recording)
    msgs = [m for m in msgs if m.publish_time_ns - msgs[0].publish_time_ns < 1_000_000_000]
    g = tmp_path / "g.yaml"
    g.write_text(GRAPH_YAML)
    from edgevla.actors.runtime.graph import load_graph

    s = replay_timed(msgs, make_run_dir(run_base, name="replay"), speed=8.0,
                     graph=load_graph(g), replace=["policy"], warmup_s=0.0)
    n_features = sum(m.topic == "features" for m in msgs)
    assert s.live_outputs == {"chunks": n_features}
    assert s.published["chunks"] == n_features  # only the live ones: recorded chunks suppressed


def test_compare_pairs_in_order_and_counts_missing():
    from edgevla.actors.recording.replay_compare import compare_topic
    from edgevla.actors.wire.codec import encode
    from edgevla.actors.wire.messages import JointCommand

    def cmd(i, x):
        return encode("c", JointCommand(t_target_ns=i, positions=np.full(6, x, np.float32),
                                        seq=i, t_pub_ns=i))

    rec = [cmd(1, 0.0), cmd(2, 1.0), cmd(3, 2.0)]
    rep = [cmd(1, 0.0), cmd(2, 1.5)]
    d = compare_topic("c", rec, rep)
    assert (d.recorded, d.replayed, d.compared, d.identical_frames) == (3, 2, 2, 1)
    assert d.max_abs_diff == 0.5 and d.mean_abs_diff == pytest.approx(0.25)
    assert (d.first_diff, d.last_diff) == (1, 1)
    assert not d.bit_identical


def test_inputs_missing_from_the_recording_are_reported(recording):
    msgs, traces = load_recording(recording, topics=["chunks", "commands"])
    res = replay_step(msgs, pipeline_graph(None), ["executor"], traces=traces, kinds=KINDS)
    assert res.missing_inputs == {"executor": ["robot/state"]}
    full, traces = load_recording(recording)
    assert replay_step(full, pipeline_graph(None), ["executor"], traces=traces,
                       kinds=KINDS).missing_inputs == {}


@settings(max_examples=examples(12), deadline=None)
@given(cam_hz=st.floats(2.0, 25.0), policy_ms=st.integers(0, 400),
       exec_hz=st.sampled_from([50.0, 77.0, 100.0, 333.0]), delivery_ns=st.integers(1, 3_000_000),
       link_ms=st.sampled_from([0, 5, 12.5]), use_traces=st.booleans())
def test_step_replay_is_exact_for_any_timing(tmp_path_factory, cam_hz, policy_ms, exec_hz,
                                             delivery_ns, link_ms, use_traces):
    """Any rates, latencies and bus delay (ticks and arrivals colliding included): the replay
    reproduces every command bit for bit, from step traces or from the commands alone."""
    path = tmp_path_factory.mktemp("prop") / "p.mcap"
    graph = pipeline_graph(str(path), cam_hz=cam_hz, executor_params={"link_latency_ms": link_ms})
    graph["executor"]["rate_hz"] = exec_hz
    latency = {"policy": policy_ms * 1_000_000}
    g = InProcessGraph(graph, clock=VirtualClock(10**12), kinds=KINDS, latency_ns=latency,
                       delivery_ns=delivery_ns)
    g.run_for(1_500_000_000)
    g.flush_collectors()
    g.close()
    msgs, traces = load_recording(path)
    res = replay_step(msgs, pipeline_graph(None, executor_params={"link_latency_ms": link_ms}),
                      ["executor"], traces=traces if use_traces else {}, kinds=KINDS,
                      latency_ns=latency, delivery_ns=delivery_ns)
    (diff,) = compare_replay(res)
    if diff.recorded == 0:  # the first chunk arrived after the run: nothing to compare
        assert diff.replayed == 0
        return
    assert diff.recorded == diff.replayed == diff.identical_frames, diff.as_dict()


def test_a_version_1_recording_compares_equal_to_its_version_2_replay():
    """Recordings made before the positional header (schema version 2) stay comparable."""
    import msgpack

    from edgevla.actors.recording.replay_compare import compare_topic
    from edgevla.actors.wire.codec import decode_header, encode
    from edgevla.actors.wire.messages import ActionChunk

    def wire(frames):
        return [bytes(f) if not isinstance(f, np.ndarray) else f.tobytes() for f in frames]

    chunk = ActionChunk(t0_ns=5, dt_ns=33, actions=np.ones((4, 6), np.float32), obs_seq=2)
    new = wire(encode("actions", chunk))
    h = decode_header(new[1])
    h["v"] = 1
    h["f"]["policy_note"] = None  # version 1 carried dict markers; they are not fields
    old = [new[0], msgpack.packb(h), *new[2:]]
    assert compare_topic("actions", [old], [new]).identical_payload == 1
    changed = wire(encode("actions", ActionChunk(t0_ns=6, dt_ns=33, actions=chunk.actions,
                                                 obs_seq=2)))
    assert compare_topic("actions", [old], [changed]).identical_payload == 0


def test_set_values_parse_as_yaml_and_bad_ones_name_the_flag():
    from edgevla.actors.recording.replay_setup import parse_sets

    assert parse_sets(["executor.strategy=latest", "executor.max_velocity_rad_s=2.5"]) == \
        {"executor": {"strategy": "latest", "max_velocity_rad_s": 2.5}}
    for bad, why in [("executor=latest", "expected ACTOR.PARAM=VALUE"),
                     ("executor.x==", "not valid YAML"), ("executor.x=!!int y", "not valid YAML")]:
        with pytest.raises(ValueError, match=why) as info:
            parse_sets([bad])
        assert repr(bad) in str(info.value)
