"""Stage actors stepped directly with a VirtualClock on tiny exported bundles."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.codec import decode, encode
from edgevla.actors.wire.messages import ActionChunk, Features, Frame, Prefix, Request, RobotState

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CAMS = ("top", "gripper", "left")


@pytest.fixture(scope="module")
def bundles():
    pytest.importorskip("torch")
    from edgevla.deploy.export.smolvla_local import tiny_bundle

    return {k: tiny_bundle(k) for k in ("act", "smolvla")}


def _frames(policy_bundle, t0: int, seed: int = 0) -> dict[str, Frame]:
    from edgevla.deploy.bundle.manifest import load_manifest

    m = load_manifest(policy_bundle[1])
    rng = np.random.default_rng(seed)
    h, w = m.image_hw
    return {c: Frame(camera=c, image=rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                     seq=i + 1, t_capture_ns=t0 + 1000 * i) for i, c in enumerate(CAMS)}


def _state(seed=0):
    return RobotState(joints=np.random.default_rng(seed).uniform(-1, 1, 6).astype(np.float32),
                      t_capture_ns=5)


def _wire(msg, topic="t"):
    """Through the one codec, as the runtime would carry it between processes."""
    return decode(encode(topic, msg))[1]


def _make(cls, name, params):
    a = cls(name)
    a.setup(params)
    return a


@pytest.mark.train
def test_vision_actor_waits_for_request_and_inputs(bundles):
    from edgevla.actors.kinds.stages import VisionActor

    _, path = bundles["smolvla"]
    clock = VirtualClock(1_000_000)
    v = _make(VisionActor, "vision", {"model": str(path), "threads": 1})
    assert v.trigger == "request"
    frames = _frames(bundles["smolvla"], 100)
    assert v.step(clock, {"top": frames["top"]}) is None            # no request: only caches
    assert v.step(clock, {"request": Request(reason="t")}) is None  # request, inputs incomplete
    assert v.stats()["skipped"] == 1
    out = v.step(clock, {"gripper": frames["gripper"], "left": frames["left"], "state": _state(),
                         "request": Request(reason="t")})
    f = out["features"]
    assert isinstance(f, Features)
    assert set(f.tensors) == {*CAMS, "state"}
    assert f.t_capture_ns == 100           # oldest frame used
    assert f.seq == 1
    m = v.model.manifest
    np.testing.assert_allclose(f.tensors["state"], m.state_norm.normalize(_state().joints), rtol=1e-6)
    out2 = v.step(clock, {"request": Request(reason="t")})  # cached frames reused, new obs seq
    assert out2["features"].seq == 2


@pytest.mark.train
def test_smolvla_stage_chain_over_the_wire_equals_pipeline(bundles):
    from edgevla.actors.kinds.stages import DenoiseActor, PolicyActor, PrefillActor, VisionActor
    from edgevla.deploy.inference.pipeline import StageModel

    _, path = bundles["smolvla"]
    clock = VirtualClock(0)
    params = {"model": str(path), "threads": 1}
    vision = _make(VisionActor, "vision", params)
    prefill = _make(PrefillActor, "prefill", params)
    denoise = _make(DenoiseActor, "denoise", dict(params, seed=3))
    frames = _frames(bundles["smolvla"], 7_000)
    f = vision.step(clock, {**frames, "state": _state(), "request": Request()})["features"]
    p = prefill.step(clock, {"features": _wire(f)})["prefix"]
    assert isinstance(p, Prefix) and p.seq == f.seq and p.t_capture_ns == 7_000
    c = denoise.step(clock, {"prefix": _wire(p)})["chunks"]
    assert isinstance(c, ActionChunk)
    m = denoise.model.manifest
    assert c.actions.shape == (m.chunk_size, m.action_dim) and c.actions.dtype == np.float32
    assert c.t0_ns == 7_000 and c.dt_ns == round(1e9 / m.fps)
    assert c.obs_seq == f.seq and c.model_id == "tiny-smolvla"
    # same noise draw -> the single-call pipeline gives the same chunk
    ref_model = StageModel(path)
    noise = ref_model.sample_noise(np.random.default_rng(3))
    ref = ref_model.predict({k: fr.image for k, fr in frames.items()}, _state().joints, noise=noise)
    np.testing.assert_allclose(c.actions, ref, atol=1e-5)
    # merged actor, same seed -> same chunk
    pol = _make(PolicyActor, "policy", dict(params, seed=3))
    c2 = pol.step(clock, {**frames, "state": _state(), "request": Request()})["chunks"]
    np.testing.assert_allclose(c2.actions, c.actions, atol=1e-5)
    assert set(pol.stats()) >= {"runs", "vision_ms", "prefill_ms", "denoise_ms", "denoise_steps"}


@pytest.mark.train
def test_denoise_steps_runtime_param(bundles):
    from edgevla.actors.kinds.stages import DenoiseActor, PrefillActor, VisionActor

    _, path = bundles["smolvla"]
    clock = VirtualClock(0)
    vision = _make(VisionActor, "v", {"model": str(path)})
    prefill = _make(PrefillActor, "p", {"model": str(path)})
    f = vision.step(clock, {**_frames(bundles["smolvla"], 1), "state": _state(), "request": Request()})
    p = prefill.step(clock, f)["prefix"]
    outs = {}
    for steps in (10, 2):
        d = _make(DenoiseActor, "d", {"model": str(path), "seed": 1})
        d.set_param("denoise_steps", steps)
        assert d.stats()["denoise_steps"] == steps
        outs[steps] = d.step(clock, {"prefix": p})["chunks"].actions
    assert np.max(np.abs(outs[10] - outs[2])) > 1e-4  # fewer Euler steps, a different chunk
    with pytest.raises(ValueError, match="denoise_steps"):
        d.set_param("denoise_steps", 0)
    with pytest.raises(KeyError, match="no runtime parameter"):
        d.set_param("temperature", 1)
    with pytest.raises(KeyError):
        vision.set_param("denoise_steps", 3)  # vision has no denoiser


@pytest.mark.train
def test_act_actors_match_lerobot(bundles):
    from edgevla.actors.kinds.stages import ActDecoderActor, PolicyActor, VisionActor
    from edgevla.deploy.export.exporter import Sample
    from edgevla.deploy.export.parity import lerobot_chunk
    from edgevla.deploy.export.smolvla_local import tiny_stats

    policy, path = bundles["act"]
    clock = VirtualClock(0)
    frames = _frames(bundles["act"], 50)
    vision = _make(VisionActor, "v", {"model": str(path), "precision": "fp32"})
    dec = _make(ActDecoderActor, "d", {"model": str(path), "opt_level": "extended"})
    f = vision.step(clock, {**frames, "state": _state(), "request": Request()})["features"]
    c = dec.step(clock, {"features": _wire(f)})["chunks"]
    ref = lerobot_chunk(policy, tiny_stats(policy),
                        Sample({k: v.image for k, v in frames.items()}, _state().joints), "")
    np.testing.assert_allclose(c.actions, ref, atol=1e-4)
    lite = _make(PolicyActor, "pol", {"model": str(path), "backend": {"vision": "litert"},
                                      "precision": {"decoder": "fp32"}})
    assert lite.model.files["vision"].endswith(".tflite")
    c2 = lite.step(clock, {**frames, "state": _state(), "request": Request()})["chunks"]
    np.testing.assert_allclose(c2.actions, ref, atol=1e-4)


@pytest.mark.train
def test_act_with_servo_goal_reads_it_from_the_robot_state(bundles):
    # a model whose observation.state is joints + servo goal gets RobotState.commanded as the
    # goal, matches lerobot on that 12-value state, and never runs on a state without a goal
    from edgevla.actors.kinds.stages import ActDecoderActor, VisionActor
    from edgevla.deploy.export.exporter import Sample
    from edgevla.deploy.export.parity import lerobot_chunk
    from edgevla.deploy.export.smolvla_local import tiny_bundle, tiny_stats

    policy, path = tiny_bundle("act-goal")
    clock = VirtualClock(0)
    frames = _frames((policy, path), 50)
    vision = _make(VisionActor, "v", {"model": str(path), "precision": "fp32"})
    dec = _make(ActDecoderActor, "d", {"model": str(path)})
    assert vision.manifest.state_dim == 12
    goal = np.linspace(-0.5, 0.5, 6).astype(np.float32)
    no_goal = _state()
    assert vision.step(clock, {**frames, "state": no_goal, "request": Request()}) is None
    assert vision.stats()["states_without_goal"] == 1
    with_goal = RobotState(joints=no_goal.joints, commanded=goal, t_capture_ns=5)
    f = vision.step(clock, {"state": _wire(with_goal), "request": Request()})["features"]
    state = np.concatenate([no_goal.joints, goal])
    np.testing.assert_allclose(f.tensors["state"], vision.manifest.state_norm.normalize(state),
                               rtol=1e-6)
    c = dec.step(clock, {"features": _wire(f)})["chunks"]
    ref = lerobot_chunk(policy, tiny_stats(policy),
                        Sample({k: v.image for k, v in frames.items()}, state), "")
    np.testing.assert_allclose(c.actions, ref, atol=1e-4)


@pytest.mark.train
def test_simulated_latency_holds_the_chunk_until_capture_plus_latency(bundles):
    from edgevla.actors.kinds.stages import ActDecoderActor, VisionActor

    _, path = bundles["act"]
    vision = _make(VisionActor, "v", {"model": str(path)})
    dec = _make(ActDecoderActor, "d", {"model": str(path), "simulated_latency_ms": 1500})
    clock = VirtualClock(10_000_000)
    frames = _frames(bundles["act"], 9_000_000)
    f = vision.step(clock, {**frames, "state": _state(), "request": Request()})["features"]
    c = dec.step(clock, {"features": f})["chunks"]
    assert clock.now_ns() == 9_000_000 + 1_500_000_000  # busy until capture + latency
    assert c.t0_ns == 9_000_000  # still timed from the capture
    dec.set_param("simulated_latency_ms", 0)
    dec.step(clock, {"features": f})
    assert clock.now_ns() == 9_000_000 + 1_500_000_000  # no wait: already past
    with pytest.raises(ValueError, match="simulated_latency_ms"):
        dec.set_param("simulated_latency_ms", -1)
    # a capture stamped by another machine's clock (far ahead of this one): busy for the
    # latency from now at most, never until a time of a clock it cannot compare with
    dec.set_param("simulated_latency_ms", 200)
    f.t_capture_ns = clock.now_ns() + 10**15
    before = clock.now_ns()
    dec.step(clock, {"features": f})
    assert clock.now_ns() == before + 200_000_000


@pytest.mark.train
def test_actor_param_errors(bundles, tmp_path):
    from edgevla.actors.kinds.stages import ActDecoderActor, DenoiseActor, PolicyActor

    _, act_path = bundles["act"]
    with pytest.raises(FileNotFoundError, match="not a model bundle"):
        _make(PolicyActor, "p", {"model": str(tmp_path)})
    with pytest.raises(ValueError, match="params.model"):
        _make(PolicyActor, "p", {})
    with pytest.raises(ValueError, match="unknown params"):
        _make(PolicyActor, "p", {"model": str(act_path), "thread": 2})
    with pytest.raises(ValueError, match="smolvla bundles"):
        _make(DenoiseActor, "d", {"model": str(act_path)})
    with pytest.raises(ValueError, match="unknown stage"):
        _make(PolicyActor, "p", {"model": str(act_path), "precision": {"denoise": "fp32"}})
    with pytest.raises(Exception, match="no variant"):
        _make(ActDecoderActor, "d", {"model": str(act_path), "precision": "int4"})
    # relative model path resolved against graph_dir
    a = _make(ActDecoderActor, "d", {"model": act_path.name, "graph_dir": str(act_path.parent)})
    assert a.model_id == "tiny-act"


@pytest.mark.train
def test_board_runtime_never_imports_torch(bundles):
    """The stage actors run a bundle with numpy + ONNX Runtime/LiteRT only."""
    _, path = bundles["act"]
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from edgevla.actors.wire.clock import VirtualClock
        from edgevla.actors.wire.messages import Frame, Request, RobotState
        from edgevla.actors.kinds.stages import PolicyActor
        a = PolicyActor("p"); a.setup({{"model": {str(path)!r}, "threads": 1}})
        fr = {{c: Frame(camera=c, image=np.zeros((64, 64, 3), np.uint8)) for c in ("top", "gripper", "left")}}
        out = a.step(VirtualClock(), {{**fr, "state": RobotState(joints=np.zeros(6, np.float32)),
                                       "request": Request()}})
        assert out["chunks"].actions.shape == (20, 6)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lerobot", "transformers"))
        print("HEAVY", bad)
        sys.exit(1 if bad else 0)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
