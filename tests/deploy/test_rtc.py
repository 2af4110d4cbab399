"""Real-time chunking's guidance (`deploy/inference/rtc.py`) against lerobot 0.4.4's
``RTCProcessor`` in PyTorch, on random inputs, for each prefix schedule."""

from __future__ import annotations

import numpy as np
import pytest

from edgevla.deploy.inference.rtc import SCHEDULES, guidance_weight, guided_velocity, prefix_weights

pytestmark = pytest.mark.train


def _lerobot(schedule: str, max_weight: float = 10.0, horizon: int = 10):
    pytest.importorskip("lerobot")
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()
    from lerobot.configs.types import RTCAttentionSchedule
    from lerobot.policies.rtc.configuration_rtc import RTCConfig
    from lerobot.policies.rtc.modeling_rtc import RTCProcessor

    return RTCProcessor(RTCConfig(enabled=True, prefix_attention_schedule=RTCAttentionSchedule[schedule.upper()],
                                  max_guidance_weight=max_weight, execution_horizon=horizon))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_prefix_weights_are_lerobots(schedule):
    rtc = _lerobot(schedule)
    for delay, horizon, total in [(0, 10, 50), (3, 10, 50), (10, 10, 50), (12, 10, 50), (5, 60, 50),
                                  (0, 0, 8), (4, 20, 20), (49, 50, 50), (60, 70, 50)]:
        ref = rtc.get_prefix_weights(delay, horizon, total).numpy()
        got = prefix_weights(schedule, delay, horizon, total)
        assert got.shape == (total,) and np.allclose(got, ref, atol=1e-7), (delay, horizon, total)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_guided_velocity_is_lerobots_denoise_step(schedule):
    import torch

    rng = np.random.default_rng(7)
    lin = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6)).double()

    def velocity(x):  # any smooth velocity field: the guidance must not care which
        return lin(x.double()).float()

    for time in (1.0, 0.9, 0.55, 0.1, 0.0):
        for delay, horizon, prev_len in [(4, 10, 30), (0, 10, 50), (8, 25, 20), (12, 10, 50)]:
            rtc = _lerobot(schedule, max_weight=5.0, horizon=horizon)
            x = rng.standard_normal((50, 6)).astype(np.float32)
            prev = rng.standard_normal((prev_len, 6)).astype(np.float32)
            ref = rtc.denoise_step(torch.from_numpy(x), torch.from_numpy(prev), delay, time,
                                   lambda xt: velocity(xt)).detach().numpy()
            with torch.no_grad():
                v = velocity(torch.from_numpy(x)).numpy()
            got = guided_velocity(x, v, prev, delay, time, horizon, schedule, max_weight=5.0)
            assert np.allclose(got, ref, rtol=1e-5, atol=1e-5), (time, delay, horizon)


def test_guidance_weight_limits_and_no_commitment():
    assert guidance_weight(1.0, 5.0) == 5.0 and guidance_weight(0.0, 5.0) == 0.0
    # tau = 1 - time: (1 - tau) / tau * (tau^2 + (1 - tau)^2) / (1 - tau)^2, clipped
    assert guidance_weight(0.6, 100.0) == pytest.approx(0.6 / 0.4 * (0.16 + 0.36) / 0.36)
    assert guidance_weight(0.3, 2.0) == 2.0
    x = np.ones((4, 2), np.float32)
    assert guided_velocity(x, x, None, 2, 0.5, 4) is x
    with pytest.raises(ValueError, match="schedule"):
        prefix_weights("cosine", 1, 2, 4)


def test_the_full_correction_takes_the_velocitys_jacobian():
    """With a vjp the correction is the paper's: err - time * J^T err. For v(x) = a x the
    Jacobian is a I, so the correction is err * (1 - time * a)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    prev = rng.standard_normal((10, 3)).astype(np.float32)
    a, time = 0.7, 0.4
    v = a * x
    lerobot_like = guided_velocity(x, v, prev, 3, time, 10, "ones", 100.0)
    full = guided_velocity(x, v, prev, 3, time, 10, "ones", 100.0, vjp=lambda e: a * e)
    w = guidance_weight(time, 100.0)
    err = (prev - (x - time * v)) * prefix_weights("ones", 3, 10, 10)[:, None]
    assert np.allclose(lerobot_like, v - w * err, atol=1e-5)
    assert np.allclose(full, v - w * err * (1 - time * a), atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "exp"])
def test_guided_onnx_denoising_is_lerobots_rtc_sampling(smolvla, schedule):
    """The board's path (ONNX stages, numpy guidance, `StageModel.denoise`) against lerobot's
    SmolVLA with its RTC processor on (`sample_actions` with an inference delay and a previous
    chunk), same observation, noise and previous chunk: the same normalised actions."""
    import dataclasses

    import torch

    from edgevla.deploy.export.exporter import synthetic_samples
    from edgevla.deploy.export.parity import _processors
    from edgevla.deploy.inference.pipeline import StageChoice, StageModel

    policy, stats, path = smolvla
    model = StageModel(path, choices={s: StageChoice("fp32", "onnxruntime")
                                      for s in ("vision", "prefill", "denoise")})
    m = model.manifest
    smp = synthetic_samples(policy, 1, seed=3)[0]
    rng = np.random.default_rng(11)
    noise = model.sample_noise(rng)
    prev = rng.standard_normal((m.chunk_size - 3, m.action_dim)).astype(np.float32)
    delay, horizon, beta = 4, m.chunk_size - 5, 5.0

    def guide(x, v, time):
        return guided_velocity(x, v, prev, delay, time, horizon, schedule, beta)

    prefix = model.prefill(model.features(smp.frames, smp.state))
    ours = model.denoise(prefix, noise, None, guide)
    plain = model.denoise(prefix, noise)

    rtc = _lerobot(schedule, max_weight=beta, horizon=horizon)
    saved = (policy.config.rtc_config, policy.model.rtc_processor)
    try:
        policy.config.rtc_config = dataclasses.replace(rtc.rtc_config)
        policy.init_rtc_processor()
        pre, _ = _processors(policy, stats)
        batch = {f"observation.images.{c}": torch.from_numpy(smp.frames[c]).permute(2, 0, 1).float() / 255
                 for c in m.cameras}
        batch["observation.state"] = torch.from_numpy(np.asarray(smp.state, np.float32))
        batch["task"] = m.extra.get("task", "")
        policy.reset()
        ref = policy.predict_action_chunk(pre(batch), noise=torch.from_numpy(noise), inference_delay=delay,
                                          prev_chunk_left_over=torch.from_numpy(prev)[None],
                                          execution_horizon=horizon)[0].detach().numpy()
    finally:
        policy.config.rtc_config = saved[0]
        policy.init_rtc_processor()
    assert ref.shape == ours.shape
    assert np.max(np.abs(ours - ref)) < 1e-3, np.max(np.abs(ours - ref))
    # and the guidance did something: the first actions moved to the previous chunk
    assert np.mean(np.abs(ours[:delay] - prev[:delay])) < 0.2 * np.mean(np.abs(plain[:delay] - prev[:delay]))


def test_full_correction_on_the_onnx_path_is_autograds(smolvla):
    """The bundle's denoise_vjp graph gives autograd's vector-Jacobian product of the denoise
    step, and guided denoising with it (the paper's correction, ``rtc_correction: full``)
    equals a PyTorch loop that takes the correction from autograd."""
    import torch

    from edgevla.deploy.export.exporter import synthetic_samples
    from edgevla.deploy.export.smolvla import DenoiseStage, layout_of
    from edgevla.deploy.inference.pipeline import StageChoice, StageModel

    policy, _, path = smolvla
    model = StageModel(path, choices={s: StageChoice("fp32", "onnxruntime")
                                      for s in ("vision", "prefill", "denoise")})
    m = model.manifest
    assert m.extra["denoise_vjp"]["file"] == "denoise_vjp.onnx"
    assert sorted(p.name for p in path.glob("denoise_vjp*")) == ["denoise_vjp.onnx"]  # one file
    smp = synthetic_samples(policy, 1, seed=4)[0]
    prefix = model.prefill(model.features(smp.frames, smp.state))
    layout = layout_of(policy, policy.config.tokenizer_max_length)
    stage = DenoiseStage(policy, layout).eval()
    kv = [torch.from_numpy(prefix[k]) for k in ("prefix_pad_mask", *layout.kv_names())]

    def velocity(x, time):
        return stage(x, torch.tensor([time], dtype=torch.float32), *kv)

    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, m.chunk_size, m.extra["max_action_dim"])).astype(np.float32)
    e = rng.standard_normal(x.shape).astype(np.float32)
    _, pullback = torch.func.vjp(lambda xx: velocity(xx, 0.6), torch.from_numpy(x))
    ref = pullback(torch.from_numpy(e))[0].detach().numpy()
    got = model.velocity_vjp(prefix, x, 0.6, e)
    assert np.max(np.abs(got - ref)) < 1e-4 * max(1.0, np.max(np.abs(ref)))

    prev = rng.standard_normal((m.chunk_size, m.action_dim)).astype(np.float32)
    delay, horizon, beta = 3, m.chunk_size - 2, 5.0
    noise = model.sample_noise(rng)

    def guide(xt, v, time):
        return guided_velocity(xt, v, prev, delay, time, horizon, "linear", beta,
                               vjp=lambda err: model.velocity_vjp(prefix, xt, time, err))

    ours = model.denoise(prefix, noise, None, guide)
    weights = torch.from_numpy(prefix_weights("linear", delay, horizon, m.chunk_size))[None, :, None]
    target = torch.zeros(noise.shape)
    target[0, :, :m.action_dim] = torch.from_numpy(prev)
    xt = torch.from_numpy(noise)
    steps = model.num_steps
    for i in range(steps):
        time = 1.0 - i / steps
        xg = xt.detach().requires_grad_(True)
        v = velocity(xg, time)
        x1 = xg - time * v
        err = (target - x1) * weights
        correction = torch.autograd.grad(x1, xg, err)[0]
        xt = (xg - (1.0 / steps) * (v - guidance_weight(time, beta) * correction)).detach()
    assert np.max(np.abs(ours - xt[0, :, :m.action_dim].numpy())) < 1e-3


def test_a_board_bundle_carries_the_vjp_graph(smolvla, tmp_path):
    from edgevla.deploy.bundle.manifest import write_board_bundle

    _, _, path = smolvla
    out = write_board_bundle(path, tmp_path / "board", target="host", tarball=False)
    assert (out / "model" / "denoise_vjp.onnx").is_file()
