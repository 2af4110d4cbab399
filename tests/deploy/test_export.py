"""Exported stages vs PyTorch, composed pipelines vs lerobot, the #1899 pitfalls, quantization bounds.

Tiny random-weight ACT and SmolVLA (built offline, once per test session) keep this fast; the
tolerances are the ones `edgevla.deploy.export.parity` states.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.train
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _samples(policy, n=2, seed=11):
    from edgevla.deploy.export.exporter import synthetic_samples

    return synthetic_samples(policy, n, seed=seed)


def _fp32(stages):
    from edgevla.deploy.inference.pipeline import StageChoice

    return {s: StageChoice("fp32", "onnxruntime") for s in stages}


# ------------------------------------------------------------------------------------ parity

@pytest.mark.parametrize("kind", ["act", "smolvla"])
def test_every_stage_matches_its_torch_module(kind, request):
    from edgevla.deploy.export.parity import STAGE_TOL, stage_parity

    policy, _, path = request.getfixturevalue(kind)
    errs = stage_parity(policy, path, _samples(policy))
    expected = {"act": {"vision", "decoder"}, "smolvla": {"vision", "prefill", "denoise"}}[kind]
    assert set(errs) == expected
    for stage, e in errs.items():
        for key in ("dataset_rel", "random_rel"):
            assert e[key] <= STAGE_TOL["fp32"], (stage, key, e)


@pytest.mark.parametrize("kind", ["act", "smolvla"])
def test_composed_pipeline_matches_lerobot(kind, request):
    """numpy/ORT pipeline (incl. our un/normalisation) vs lerobot's pre/post processors +
    predict_action_chunk, same noise, in joint units."""
    from edgevla.deploy.export.parity import ACTION_TOL_FP32_RAD, composed_parity

    policy, stats, path = request.getfixturevalue(kind)
    stages = ("vision", "decoder") if kind == "act" else ("vision", "prefill", "denoise")
    rep = composed_parity(policy, stats, path, _samples(policy, 3, seed=5), _fp32(stages))
    assert rep.action_max_abs <= ACTION_TOL_FP32_RAD, rep.as_dict()


def _needs_litert_env():
    from edgevla.deploy.export.litert_vision import litert_python

    if litert_python() is None:
        if os.environ.get("CI"):
            pytest.fail("no LiteRT conversion environment: `make test` builds it (make litert-env)")
        pytest.skip("no LiteRT conversion environment (make litert-env)")


@pytest.mark.parametrize("kind", ["act", "smolvla"])
def test_litert_int8_vision_from_the_maintained_converter_matches_onnx(kind, request):
    """The NPU's model: full-integer int8 (weights, activations, input and output), made by
    litert-torch + ai-edge-quantizer, against ONNX Runtime's fp32 vision stage."""
    from edgevla.deploy.inference.pipeline import StageChoice, StageModel

    _needs_litert_env()
    policy, _, path = request.getfixturevalue(kind)
    onnx_m = StageModel(path, ("vision",), {"vision": StageChoice("fp32", "onnxruntime")})
    lite = StageModel(path, ("vision",), {"vision": StageChoice("int8", "litert")})
    assert lite.files["vision"] == "vision.int8.tflite"
    interp = lite.backends["vision"].interpreter
    io = [*interp.get_input_details(), *interp.get_output_details()]
    assert all(np.dtype(d["dtype"]) == np.int8 and d["quantization"][0] > 0 for d in io)
    # full-integer: no op computes a float tensor (no DEQUANTIZE / float op on the data path)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    float_ops = sorted({op["op_name"] for op in interp._get_ops_details()
                        if any(dtypes.get(i) == np.float32 for i in op["outputs"])})
    assert not float_ops, float_ops
    for s in _samples(policy, 2, seed=11):
        imgs = onnx_m.images_tensor(s.frames)
        ref, got = onnx_m.vision(imgs), lite.vision(imgs)
        assert got.shape == ref.shape and got.dtype == np.float32
        rms_rel = np.sqrt(np.mean((got - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))
        cos = float(np.dot(got.ravel(), ref.ravel()) / np.linalg.norm(got) / np.linalg.norm(ref))
        # int8 activations with one scale a tensor: 6% (ACT) to 13% (the tiny random ViT) RMS
        # measured on 8 frames; a wrong scale or a swapped tensor lands near cosine 0
        assert rms_rel < 0.2 and cos > 0.98, (rms_rel, cos)


def test_litert_vision_matches_onnx(act):
    from edgevla.deploy.inference.pipeline import StageChoice, StageModel

    _needs_litert_env()
    policy, _, path = act
    onnx_m = StageModel(path, ("vision",), {"vision": StageChoice("fp32", "onnxruntime")})
    lite = StageModel(path, ("vision",), {"vision": StageChoice(backend="litert")})
    assert lite.files["vision"].endswith(".tflite")
    for s in _samples(policy, 2):
        imgs = onnx_m.images_tensor(s.frames)
        ref = onnx_m.vision(imgs)
        got = lite.vision(imgs)
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))


# ------------------------------------------------------------------------ #1899 pitfalls

def test_pitfall_kv_cache_is_an_input_and_is_used(smolvla):
    """Pitfall 1: the denoiser must attend to the prefix cache passed in, not a traced constant."""
    from edgevla.deploy.inference.pipeline import StageModel

    policy, _, path = smolvla
    m = StageModel(path, choices=_fp32(("vision", "prefill", "denoise")))
    be = m.backends["denoise"]
    layout = m.manifest.extra["layout"]
    kv = [f"{x}{i}" for i in range(layout["num_layers"]) for x in ("k", "v")]
    assert set(kv) <= set(be.input_names)
    s1, s2 = _samples(policy, 2, seed=3)
    p1 = m.prefill(m.features(s1.frames, s1.state))
    p2 = m.prefill(m.features(s2.frames, s2.state))
    noise = m.sample_noise(np.random.default_rng(0))
    base = dict(p1, x_t=noise, timestep=np.array([0.5], np.float32))
    v1 = be.run(base)["v_t"]
    for name in kv:  # swapping any one layer's cache changes the velocity
        v2 = be.run(dict(base, **{name: p2[name]}))["v_t"]
        assert np.max(np.abs(v2 - v1)) > 1e-5, name


def test_pitfall_timestep_embedding_has_2pi(smolvla):
    """Pitfall 5: lerobot's sinusoidal embedding uses 2*pi/period (float64, sin then cos). The
    exported denoiser matches torch at several t; a no-2*pi embedding would not."""
    import torch
    from lerobot.policies.smolvla import modeling_smolvla as ms

    from edgevla.deploy.export import smolvla as es
    from edgevla.deploy.inference.pipeline import StageModel

    t = torch.tensor([0.3], dtype=torch.float64)
    emb = ms.create_sinusoidal_pos_embedding(t, 8, 4e-3, 4.0, device=torch.device("cpu")).numpy()
    period = 4e-3 * (4.0 / 4e-3) ** np.linspace(0, 1, 4)
    ang = 2 * np.pi / period * 0.3
    np.testing.assert_allclose(emb[0], np.concatenate([np.sin(ang), np.cos(ang)]), atol=1e-12)

    policy, _, path = smolvla
    m = StageModel(path, choices=_fp32(("vision", "prefill", "denoise")))
    lo = es.SmolVLALayout(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in m.manifest.extra["layout"].items()})
    den = es.DenoiseStage(policy, lo).eval()
    s = _samples(policy, 1)[0]
    prefix = m.prefill(m.features(s.frames, s.state))
    names = ["prefix_pad_mask", *lo.kv_names()]
    x = np.random.default_rng(1).standard_normal((1, lo.chunk_size, lo.max_action_dim)).astype(np.float32)
    feeds = dict(prefix, x_t=x, timestep=np.array([0.3], np.float32))
    got = m.backends["denoise"].run(feeds)["v_t"]
    args = [torch.from_numpy(prefix[n]) for n in names]
    with torch.no_grad():
        ref = den(torch.from_numpy(x), torch.tensor([0.3]), *args).numpy()
        assert np.max(np.abs(got - ref)) < 1e-4
        orig = ms.create_sinusoidal_pos_embedding

        def no_2pi(time, dimension, min_period, max_period, device="cpu"):
            return orig(time / (2 * np.pi), dimension, min_period, max_period, device)

        ms.create_sinusoidal_pos_embedding = no_2pi
        try:
            wrong = den(torch.from_numpy(x), torch.tensor([0.3]), *args).numpy()
        finally:
            ms.create_sinusoidal_pos_embedding = orig
    assert np.max(np.abs(wrong - got)) > 100 * np.max(np.abs(got - ref))


def test_pitfall_images_are_4d(smolvla, act):
    """Pitfall 3: cameras are folded into the batch: vision graphs take [N_cam, 3, H, W];
    a 5-D processor tensor is refused with a clear error, never traced."""
    from edgevla.deploy.inference.pipeline import StageModel

    for policy, _, path in (smolvla, act):
        m = StageModel(path, ("vision",))
        shape = m.manifest.stages["vision"].inputs["images"]["shape"]
        assert len(shape) == 4 and shape[0] == len(m.manifest.cameras) and shape[1] == 3
        imgs = m.images_tensor(_samples(policy, 1)[0].frames)
        assert imgs.shape == tuple(shape)
        with pytest.raises(ValueError, match="4-D"):
            m.vision(imgs[None])


def test_pitfall_rope_wavelength_is_lerobots_10000(smolvla):
    """Pitfall 4: lerobot's apply_rope uses wavelength 10000, not SmolLM2's rope_theta (the tiny
    config sets 100000 to tell them apart). The exported prefill K matches 10000 and not theta."""
    import torch
    from lerobot.policies.smolvla import smolvlm_with_expert as swe

    from edgevla.deploy.export import smolvla as es
    from edgevla.deploy.inference.pipeline import StageModel

    policy, _, path = smolvla
    theta = policy.model.vlm_with_expert.config.text_config.rope_theta
    assert theta != 10_000
    m = StageModel(path, choices=_fp32(("vision", "prefill", "denoise")))
    lo = es.SmolVLALayout(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in m.manifest.extra["layout"].items()})
    s = _samples(policy, 1)[0]
    feats = m.features(s.frames, s.state)
    got_k0 = m.prefill(feats)["k0"]
    pre = es.PrefillStage(policy, lo).eval()
    args = (torch.from_numpy(np.stack([feats[c] for c in m.manifest.cameras])),
            torch.tensor(m.manifest.extra["lang_tokens"])[None],
            torch.tensor(m.manifest.extra["lang_mask"])[None],
            torch.from_numpy(feats["state"][None]))
    orig = swe.apply_rope
    with torch.no_grad():
        k_10000 = pre(*args)[1].numpy()
        swe.apply_rope = lambda x, pos, max_wavelength=10_000: orig(x, pos, theta)
        try:
            k_theta = pre(*args)[1].numpy()
        finally:
            swe.apply_rope = orig
    assert np.max(np.abs(got_k0 - k_10000)) < 1e-4
    assert np.max(np.abs(got_k0 - k_theta)) > 1e-2


def test_export_rope_equals_lerobots_and_leaves_no_scatter(smolvla):
    """The exported graphs use a cat-based RoPE (no ScatterND); same numbers as lerobot's."""
    import onnx
    import torch
    from lerobot.policies.smolvla import smolvlm_with_expert as swe

    from edgevla.deploy.export import smolvla as es

    g = torch.Generator().manual_seed(3)
    for shape in ((1, 7, 2, 16), (2, 65, 4, 64)):
        x = torch.randn(*shape, generator=g)
        pos = torch.randint(0, 300, shape[:2], generator=g)
        assert torch.allclose(es.rope_without_scatter(x, pos), swe.apply_rope(x, pos), atol=1e-6)
    assert swe.apply_rope is not es.rope_without_scatter  # export restored lerobot's own
    _, _, path = smolvla
    for stage in ("prefill", "denoise"):
        ops = {n.op_type for n in onnx.load(str(path / f"{stage}.onnx")).graph.node}
        assert "ScatterND" not in ops, stage


def test_fused_rope_and_attention_compute_lerobots_numbers_and_export_as_single_nodes(smolvla):
    """rope_fused / attention_fused (plain torch outside an export) equal lerobot's functions,
    GQA and masked rows included; the exported prefill and denoise graphs carry them as ONNX
    Runtime RotaryEmbedding / MultiHeadAttention nodes (their numbers: the stage parity tests)."""
    import onnx
    import torch
    from lerobot.policies.smolvla import smolvlm_with_expert as swe

    from edgevla.deploy.export import smolvla as es

    policy, _, path = smolvla
    vwe = policy.model.vlm_with_expert
    g = torch.Generator().manual_seed(5)
    for shape in ((1, 7, 2, 16), (2, 65, 4, 64)):
        x = torch.randn(*shape, generator=g)
        pos = torch.randint(0, 300, shape[:2], generator=g)
        assert torch.allclose(es.rope_fused(x, pos), swe.apply_rope(x, pos), atol=1e-6)
    heads, kv_heads = vwe.num_attention_heads, vwe.num_key_value_heads
    assert heads > kv_heads  # the test exercises the GQA expansion
    b, s, length, dim = 2, 9, 13, 8
    q = torch.randn(b, s, heads, dim, generator=g)
    k = torch.randn(b, length, kv_heads, dim, generator=g)
    v = torch.randn(b, length, kv_heads, dim, generator=g)
    mask = torch.rand(b, s, length, generator=g) > 0.3
    mask[0, 0] = False  # a fully masked row: uniform weights in both
    want = swe.SmolVLMWithExpertModel.eager_attention_forward(vwe, mask, b, dim, q, k, v)
    got = es.attention_fused(vwe, mask, b, dim, q, k, v)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert swe.SmolVLMWithExpertModel.eager_attention_forward is not es.attention_fused
    for stage in ("prefill", "denoise"):
        ops = [n.op_type for n in onnx.load(str(path / f"{stage}.onnx")).graph.node]
        assert ops.count("RotaryEmbedding") >= 2 and "MultiHeadAttention" in ops, stage
        assert "Softmax" not in ops, stage
    step_ops = {n.op_type for n in onnx.load(str(path / "denoise.onnx")).graph.node}
    assert "Where" not in step_ops  # the masks' additive biases come from the prep graph


# --------------------------------------------------------------------------- quantization

def _quant(policy, stats, path, prec):
    from edgevla.deploy.export.parity import composed_parity
    from edgevla.deploy.inference.pipeline import StageChoice

    choices = {s: StageChoice(p) for s, p in prec.items()}
    return composed_parity(policy, stats, path, _samples(policy, 3, seed=21), choices,
                           reference="fp32")


def test_smolvla_selective_quantization_within_bounds_and_denoise_quant_is_worse(smolvla):
    from edgevla.deploy.export.parity import ACTION_TOL_QUANT_RANGE, STAGE_TOL, stage_parity

    policy, stats, path = smolvla
    sel = _quant(policy, stats, path, {"vision": "int8", "prefill": "int8", "denoise": "fp32"})
    int4 = _quant(policy, stats, path, {"vision": "int8", "prefill": "int4", "denoise": "fp32"})
    den = _quant(policy, stats, path, {"vision": "fp32", "prefill": "fp32", "denoise": "int8"})
    assert 0 < sel.action_max_frac_range <= ACTION_TOL_QUANT_RANGE
    assert 0 < int4.action_max_frac_range <= ACTION_TOL_QUANT_RANGE
    # quantizing only the 10x-iterated denoiser costs more than quantizing vision + prefill
    assert den.action_max_frac_range > sel.action_max_frac_range
    errs = stage_parity(policy, path, _samples(policy, 1),
                        {"vision": "int8", "prefill": "int4", "denoise": "int8"},
                        random_inputs=False)
    assert errs["vision"]["dataset_rel"] <= STAGE_TOL["int8-dynamic"]
    assert errs["prefill"]["dataset_rel"] <= STAGE_TOL["int4"]
    assert errs["denoise"]["dataset_rel"] <= STAGE_TOL["int8-dynamic"]


def test_act_int8_within_bounds_and_quantized_graphs_are_smaller(act):
    import onnx

    from edgevla.deploy.bundle.manifest import load_manifest
    from edgevla.deploy.export.parity import ACTION_TOL_QUANT_RANGE

    policy, stats, path = act
    rep = _quant(policy, stats, path, {"vision": "int8", "decoder": "fp32"})
    assert 0 < rep.action_max_frac_range <= ACTION_TOL_QUANT_RANGE
    man = load_manifest(path)
    v = man.stages["vision"].variants
    assert v["int8"].precision == "int8-static"  # conv net -> calibrated QDQ
    assert v["int8"].size_bytes < 0.4 * v["fp32"].size_bytes
    ops = {n.op_type for n in onnx.load(str(path / v["int8"].file)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int4_prefill_uses_matmulnbits(smolvla):
    import onnx

    from edgevla.deploy.bundle.manifest import load_manifest

    _, _, path = smolvla
    man = load_manifest(path)
    f = man.stages["prefill"].variants["int4"].file
    ops = [n.op_type for n in onnx.load(str(path / f)).graph.node]
    assert "MatMulNBits" in ops
    dyn = [n.op_type for n in onnx.load(str(path / man.stages["prefill"].variants["int8"].file)).graph.node]
    assert "DynamicQuantizeLinear" in dyn and "Conv" not in dyn


def test_precision_spec_parsing():
    from edgevla.deploy.export.quantize import parse_precision_spec

    stages = ("vision", "prefill", "denoise")
    assert parse_precision_spec("vision=int8,prefill=int4,denoise=fp32", stages) == {
        "vision": "int8", "prefill": "int4", "denoise": "fp32"}
    assert parse_precision_spec("prefill=int4", stages)["vision"] == "fp32"
    with pytest.raises(ValueError, match="unknown stage 'decoder'"):
        parse_precision_spec("decoder=int8", stages)
    with pytest.raises(ValueError, match="int3"):
        parse_precision_spec("vision=int3", stages)
    with pytest.raises(ValueError, match="STAGE=PRECISION"):
        parse_precision_spec("int8", stages)
