"""Real-time chunking in the denoise stage: the chunk follows what the executor committed to.

The tiny SmolVLA bundle (random weights) is the hard case: its unguided chunks have nothing to
do with any commitment, so agreement can only come from the guidance."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.codec import decode, encode
from edgevla.actors.wire.messages import Commitment, Frame, Request, RobotState

pytestmark = pytest.mark.train
os.environ.setdefault("HF_HUB_OFFLINE", "1")
MS = 1_000_000
T_CAP = 2_000 * MS


@pytest.fixture(scope="module")
def bundle():
    pytest.importorskip("torch")
    from edgevla.deploy.export.smolvla_local import tiny_bundle

    return tiny_bundle("smolvla")[1]


@pytest.fixture(scope="module")
def prefix(bundle):
    from edgevla.actors.kinds.stages import PrefillActor, VisionActor

    clock = VirtualClock(0)
    params = {"model": str(bundle), "threads": 1}
    vision, prefill = VisionActor("vision"), PrefillActor("prefill")
    vision.setup(params)
    prefill.setup(params)
    m = vision.manifest
    rng = np.random.default_rng(0)
    frames = {c: Frame(camera=c, image=rng.integers(0, 255, (*m.image_hw, 3), dtype=np.uint8),
                       t_capture_ns=T_CAP) for c in m.cameras}
    state = RobotState(joints=np.zeros(6, np.float32), t_capture_ns=T_CAP)
    f = vision.step(clock, {**frames, "state": state, "request": Request()})["features"]
    return prefill.step(clock, {"features": f})["prefix"]


def _committed(manifest, delay_steps: int) -> Request:
    """A smooth committed path in servo radians, from 100 ms before the capture, on the
    model's grid offset by half a step (the stage must resample it)."""
    dt = manifest.dt_ns
    t0 = T_CAP - 100 * MS + dt // 2
    t = np.arange(manifest.chunk_size + 6)[:, None] * 0.03
    actions = (0.3 * np.sin(t + np.arange(manifest.action_dim)[None])).astype(np.float32)
    c = Commitment(actions, t0, dt, delay_steps * dt)
    return decode(encode("exec/requests", Request(reason="x").commit(c)))[1]


def _denoise(bundle, prefix, request, **params):
    from edgevla.actors.kinds.stages import DenoiseActor

    d = DenoiseActor("denoise")
    d.setup({"model": str(bundle), "seed": 5, "threads": 1, **params})
    out = d.step(VirtualClock(0), {"prefix": prefix, "request": request})
    return d, out["chunks"]


def _gap(chunk, request, steps: int) -> float:
    from edgevla.deploy.inference.rtc import committed_at

    c = request.commitment
    times = chunk.t0_ns + np.arange(steps) * chunk.dt_ns
    return float(np.mean(np.abs(chunk.actions[:steps] - committed_at(c.actions, c.t0_ns, c.dt_ns, times))))


def test_guided_chunk_follows_the_commitment_over_the_delay(bundle, prefix):
    from edgevla.deploy.bundle.manifest import load_manifest

    m = load_manifest(bundle)
    d = 5
    req = _committed(m, d)
    _, plain = _denoise(bundle, prefix, req)  # rtc off: the commitment is ignored
    actor, guided = _denoise(bundle, prefix, req, rtc=True)
    gap_plain, gap_rtc = _gap(plain, req, d), _gap(guided, req, d)
    assert gap_rtc < 0.05 * gap_plain, (gap_rtc, gap_plain)
    st = actor.stats()["rtc"]
    assert st["enabled"] and st["guided"] == 1 and st["delay_steps"] == d
    # the same chunk start and timing with or without guidance
    assert guided.t0_ns == plain.t0_ns == T_CAP
    # the later part (weights 0 after the execution horizon) is the model's own
    _, short = _denoise(bundle, prefix, req, rtc=True, rtc_horizon=d, rtc_schedule="zeros")
    tail = slice(d + 1, None)
    assert m.chunk_size > d + 2
    assert _gap(short, req, d) < 0.05 * gap_plain
    assert np.mean(np.abs(short.actions[tail] - guided.actions[tail])) > 1e-3


def test_settings_change_at_run_time_and_bad_ones_are_refused(bundle, prefix):
    from edgevla.deploy.bundle.manifest import load_manifest

    m = load_manifest(bundle)
    req = _committed(m, 4)
    actor, first = _denoise(bundle, prefix, req)
    actor.set_param("rtc", True)
    actor.set_param("rtc_schedule", "exp")
    actor.set_param("rtc_max_guidance", 5.0)
    actor.set_param("rtc_horizon", 20)
    st = actor.stats()["rtc"]
    assert (st["enabled"], st["schedule"], st["max_guidance"], st["horizon"]) == (True, "exp", 5.0, 20)
    out = actor.step(VirtualClock(0), {"prefix": prefix})["chunks"]  # the kept commitment
    assert _gap(out, req, 4) < 0.1 * _gap(first, req, 4)
    for name, value, match in [("rtc", "on", "true or false"), ("rtc_schedule", "cosine", "one of"),
                               ("rtc_max_guidance", -1, ">= 0"), ("rtc_horizon", 0, ">= 1")]:
        with pytest.raises(ValueError, match=match):
            actor.set_param(name, value)
    assert actor.stats()["rtc"]["schedule"] == "exp"  # a refused value changes nothing
    actor.set_param("rtc", False)
    again = actor.step(VirtualClock(0), {"prefix": prefix})["chunks"]
    assert _gap(again, req, 4) > 5 * _gap(out, req, 4)


def test_without_a_covering_commitment_the_stage_runs_unguided(bundle, prefix):
    from edgevla.actors.kinds.stages import PrefillActor
    from edgevla.deploy.bundle.manifest import load_manifest

    m = load_manifest(bundle)
    old = Commitment(np.zeros((3, m.action_dim), np.float32), 0, m.dt_ns, 0)  # ended long ago
    actor, _ = _denoise(bundle, prefix, Request().commit(old), rtc=True)
    assert actor.stats()["rtc"]["unguided"] == 1 and actor.stats()["rtc"]["guided"] == 0
    wrong = Commitment(np.zeros((80, 3), np.float32), T_CAP, m.dt_ns, 0)  # 3 joints, model has 6
    actor, _ = _denoise(bundle, prefix, Request().commit(wrong), rtc=True)
    assert actor.stats()["rtc"]["wrong_shape"] == 1
    with pytest.raises(ValueError, match="guide the denoise stage"):
        PrefillActor("prefill").setup({"model": str(bundle), "rtc": True})


def test_full_correction_runs_on_the_bundles_vjp_graph_and_needs_it(bundle, prefix, tmp_path):
    import json
    import shutil

    from edgevla.deploy.bundle.manifest import load_manifest

    m = load_manifest(bundle)
    req = _committed(m, 5)
    _, plain = _denoise(bundle, prefix, req)
    actor, full = _denoise(bundle, prefix, req, rtc=True, rtc_correction="full")
    _, lerobot = _denoise(bundle, prefix, req, rtc=True)
    assert actor.stats()["rtc"]["correction"] == "full"
    assert _gap(full, req, 5) < 0.05 * _gap(plain, req, 5)
    assert np.max(np.abs(full.actions - lerobot.actions)) > 1e-4  # the Jacobian term is used
    # a bundle without the graph: refused at setup and at run time, one line saying how to get it
    copy = tmp_path / "no-vjp"
    shutil.copytree(bundle, copy)
    man = json.loads((copy / "manifest.json").read_text())
    del man["extra"]["denoise_vjp"]
    (copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="--rtc-vjp"):
        _denoise(copy, prefix, req, rtc=True, rtc_correction="full")
    other, _ = _denoise(copy, prefix, req, rtc=True)
    with pytest.raises(ValueError, match="--rtc-vjp"):
        other.set_param("rtc_correction", "full")
    assert other.stats()["rtc"]["correction"] == "lerobot"
