"""The denoise graph split (prefix-only prep graph + per-step graph), the IOBinding loop and
ORT spinning while a run is in flight: same numbers as the single exported graph."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.train
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def unsplit(smolvla, tmp_path_factory):
    """The same policy's denoise stage exported as one graph (no split)."""
    from edgevla.deploy.export import smolvla as export_smolvla

    policy, _, path = smolvla
    out = tmp_path_factory.mktemp("unsplit")
    lang_len = policy.config.tokenizer_max_length
    _, specs = export_smolvla.export_onnx(policy, out, lang_len=lang_len, split_denoise=False)
    assert "prep" not in specs["denoise"]
    return out / specs["denoise"]["file"]


def _prefix(path, seed=3):
    from edgevla.deploy.inference.pipeline import StageChoice, StageModel

    m = StageModel(path, choices={s: StageChoice("fp32", "onnxruntime")
                                  for s in ("vision", "prefill", "denoise")})
    rng = np.random.default_rng(seed)
    h, w = m.manifest.image_hw
    frames = {c: rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for c in m.manifest.cameras}
    state = rng.uniform(-1, 1, m.manifest.state_dim).astype(np.float32)
    return m, m.prefill(m.features(frames, state)), m.sample_noise(rng)


def test_export_writes_a_prep_graph_for_every_denoise_variant(smolvla):
    import onnx

    from edgevla.deploy.bundle.manifest import load_manifest

    _, _, path = smolvla
    man = load_manifest(path)
    variants = man.stages["denoise"].variants
    assert {v.prep for v in variants.values()} == {"denoise.prep.onnx"}
    assert all(v.prep is None for s in ("vision", "prefill") for v in man.stages[s].variants.values())
    prep = onnx.load(str(path / "denoise.prep.onnx")).graph
    step = onnx.load(str(path / "denoise.onnx")).graph
    prep_ops = {n.op_type for n in prep.node}
    # prefix-only work moved out of the step: RoPE tables of the suffix positions, masks
    assert {"Sin", "Cos"} <= prep_ops
    step_ops = [n.op_type for n in step.node]
    assert step_ops.count("Sin") == step_ops.count("Cos") == 1  # the timestep embedding only
    assert {"x_t", "timestep"} <= {i.name for i in step.input}
    assert not {"x_t", "timestep"} & {i.name for i in prep.input}
    assert not prep.initializer or sum(np.prod(t.dims) for t in prep.initializer) < 1e4  # no weights


def test_split_denoise_matches_the_single_graph(smolvla, unsplit):
    """The prep + step composition vs the unsplit exported graph: same op sequence, so the same
    numbers (stated tolerance: fp32 1e-4 relative; observed 0)."""
    from edgevla.deploy.inference.backends import BackendOptions, ChainedBackend, open_backend
    from edgevla.deploy.export.parity import STAGE_TOL, rel_err

    _, _, path = smolvla
    m, prefix, noise = _prefix(path)
    be = m.backends["denoise"]
    assert isinstance(be, ChainedBackend)
    ref_be = open_backend(unsplit, BackendOptions())
    assert set(be.input_names) == set(ref_be.input_names)
    for t in (1.0, 0.55, 0.1):
        feeds = dict(prefix, x_t=noise, timestep=np.array([t], np.float32))
        got = be.run(feeds)["v_t"]
        ref = ref_be.run(feeds)["v_t"]
        assert rel_err(got, ref)[1] <= STAGE_TOL["fp32"]
        assert np.max(np.abs(got - ref)) <= 1e-6
    # the whole Euler loop: bound (IOBinding, prep once) vs feeding the single graph every step
    x = noise.copy()
    for i in range(10):
        v = ref_be.run(dict(prefix, x_t=x, timestep=np.array([1.0 - 0.1 * i], np.float32)))["v_t"]
        x = x + np.float32(-0.1) * v
    got = m.denoise(prefix, noise, 10)
    assert np.max(np.abs(got - x[0, :, : m.manifest.action_dim])) <= 1e-5


def test_portable_export_has_only_standard_ops_and_the_same_numbers(smolvla, tmp_path):
    """--portable-onnx: no com.microsoft nodes in prefill/denoise; same v_t as the fused graphs."""
    import onnx

    from edgevla.deploy.export import smolvla as export_smolvla
    from edgevla.deploy.inference.backends import BackendOptions, open_backend

    policy, _, path = smolvla
    lang_len = policy.config.tokenizer_max_length
    _, specs = export_smolvla.export_onnx(policy, tmp_path, lang_len=lang_len, fused_ops=False)
    for stage in ("prefill", "denoise"):
        for f in {specs[stage]["file"], specs[stage].get("prep") or specs[stage]["file"]}:
            domains = {n.domain for n in onnx.load(str(tmp_path / f)).graph.node}
            assert domains <= {"", "ai.onnx"}, (f, domains)
    m, prefix, noise = _prefix(path)
    portable = open_backend(tmp_path / specs["denoise"]["file"], BackendOptions(),
                            prep=tmp_path / specs["denoise"]["prep"])
    feeds = dict(prefix, x_t=noise, timestep=np.array([0.7], np.float32))
    got = portable.run(feeds)["v_t"]
    ref = m.backends["denoise"].run(feeds)["v_t"]
    assert np.max(np.abs(got - ref)) <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_split_int8_denoise_runs_with_the_shared_prep(smolvla):
    from edgevla.deploy.inference.pipeline import StageChoice, StageModel

    _, _, path = smolvla
    m, prefix, noise = _prefix(path)
    q = StageModel(path, ("denoise",), {"denoise": StageChoice("int8")})
    a, b = m.denoise(prefix, noise, 4), q.denoise(prefix, noise, 4)
    assert a.shape == b.shape and 0 < np.max(np.abs(a - b)) < 0.5 * max(1.0, np.max(np.abs(a)))


def test_old_bundles_without_prep_still_run(smolvla, unsplit, tmp_path):
    """A manifest without ``prep`` (bundles written before the split) opens one graph."""
    import shutil

    from edgevla.deploy.inference.backends import OnnxRuntimeBackend
    from edgevla.deploy.inference.pipeline import StageChoice, StageModel

    _, _, path = smolvla
    for f in path.iterdir():
        shutil.copy2(f, tmp_path / f.name)
    shutil.copy2(unsplit, tmp_path / "denoise.onnx")
    (tmp_path / "denoise.prep.onnx").unlink()
    d = json.loads((tmp_path / "manifest.json").read_text())
    for v in d["stages"]["denoise"]["variants"].values():
        v.pop("prep", None)
    d["stages"]["denoise"]["variants"] = {"fp32": d["stages"]["denoise"]["variants"]["fp32"]}
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    old = StageModel(tmp_path, choices={"denoise": StageChoice("fp32")})
    assert isinstance(old.backends["denoise"], OnnxRuntimeBackend)
    m, prefix, noise = _prefix(path)
    assert np.max(np.abs(old.denoise(prefix, noise, 5) - m.denoise(prefix, noise, 5))) <= 1e-5


def test_manifest_prep_must_exist(smolvla, tmp_path):
    import shutil

    from edgevla.deploy.bundle.manifest import BundleError, load_manifest

    _, _, path = smolvla
    for f in path.iterdir():
        shutil.copy2(f, tmp_path / f.name)
    (tmp_path / "denoise.prep.onnx").unlink()
    with pytest.raises(BundleError, match=r"variants\.fp32\.prep"):
        load_manifest(tmp_path)
    assert load_manifest(tmp_path, check_files=False).stages["denoise"].variants["fp32"].prep


def test_board_bundle_copies_prep_and_spins_only_during_runs(smolvla, tmp_path):
    import yaml

    from edgevla.deploy.bundle.manifest import write_board_bundle

    _, _, path = smolvla
    out = write_board_bundle(path, tmp_path / "board", tarball=False)
    assert (out / "model" / "denoise.prep.onnx").is_file()
    graph = yaml.safe_load((out / "graph.yaml").read_text())
    for name in ("vision", "prefill", "denoise"):
        assert graph["actors"][name]["params"]["allow_spinning"] == "run"


def test_allow_spinning_modes_and_bind_fallback(smolvla):
    from edgevla.deploy.inference.backends import BackendOptions, bind_constants, open_backend

    _, _, path = smolvla
    assert BackendOptions(allow_spinning="run").allow_spinning == "run"
    assert BackendOptions.from_params({"allow_spinning": True}).allow_spinning is True
    with pytest.raises(ValueError, match="allow_spinning"):
        BackendOptions(allow_spinning="always")
    m, prefix, noise = _prefix(path)
    feeds = dict(prefix, x_t=noise, timestep=np.array([0.3], np.float32))
    ref = m.backends["denoise"].run(feeds)["v_t"]
    for spin in (False, True, "run"):
        be = open_backend(path / "denoise.onnx", BackendOptions(allow_spinning=spin),
                          prep=path / "denoise.prep.onnx")
        assert np.array_equal(be.run(feeds)["v_t"], ref)

    class Plain:  # a backend without bind (LiteRT-like): constants merged into every feed
        def __init__(self, inner):
            self.inner, self.input_names, self.output_names = inner, inner.input_names, inner.output_names

        def run(self, f):
            return self.inner.run(f)

    run = bind_constants(Plain(m.backends["denoise"]), prefix)
    assert np.array_equal(run({"x_t": noise, "timestep": np.array([0.3], np.float32)})["v_t"], ref)


def test_split_per_step_on_a_small_graph(tmp_path):
    """A hand-made graph: y = (x + relu(p * 2)) @ W. relu(p * 2) depends on p only -> prep."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgevla.deploy.export.onnx_split import split_per_step

    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.float32(2))),
             helper.make_node("Mul", ["p", "two"], ["p2"]),
             helper.make_node("Relu", ["p2"], ["rp"]),
             helper.make_node("Add", ["x", "rp"], ["s"]),
             helper.make_node("MatMul", ["s", "W"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
                                       helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(w, "W")])
    src = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    rep = split_per_step(src, tmp_path / "prep.onnx", tmp_path / "step.onnx", ("x",))
    assert (rep.prep_nodes, rep.step_nodes, rep.frontier) == (2, 2, ["rp"])
    x, p = np.ones((2, 4), np.float32), np.arange(8, dtype=np.float32).reshape(2, 4) - 4
    ref = ort.InferenceSession(str(src)).run(None, {"x": x, "p": p})[0]
    rp = ort.InferenceSession(str(tmp_path / "prep.onnx")).run(None, {"p": p})[0]
    got = ort.InferenceSession(str(tmp_path / "step.onnx")).run(None, {"x": x, "rp": rp})[0]
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="no graph input"):
        split_per_step(src, tmp_path / "a.onnx", tmp_path / "b.onnx", ("nope",))


def test_simplify_shapes_drops_only_no_op_shape_nodes(tmp_path):
    """Reshape chains fold, same-shape Reshape/Slice/Expand/one-input Concat go, a reversing
    Slice (same shape, different numbers) stays; the outputs are unchanged."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgevla.deploy.export.onnx_split import simplify_shapes

    def const(name, values):
        return numpy_helper.from_array(np.asarray(values, np.int64), name)

    nodes = [
        helper.make_node("Reshape", ["x", "s4"], ["r1"]),        # [2,12] -> [2,3,4]
        helper.make_node("Concat", ["r1"], ["c1"], axis=0),      # identity
        helper.make_node("Reshape", ["c1", "s2"], ["r2"]),       # back to [2,12]: chain+no-op
        helper.make_node("Slice", ["r2", "z", "big", "one", "one_"], ["sl"]),  # full slice
        helper.make_node("Expand", ["sl", "s2"], ["ex"]),        # same shape
        helper.make_node("Slice", ["ex", "m1", "minbig", "one", "m1"], ["rev"]),  # reversed
        helper.make_node("Relu", ["rev"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 12])],
        [const("s4", [2, 3, 4]), const("s2", [2, 12]), const("z", [0]), const("big", [99]),
         const("one", [1]), const("one_", [1]), const("m1", [-1]), const("minbig", [-99])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src, dst = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(model, str(src))
    onnx.save(model, str(dst))
    removed = simplify_shapes(dst)
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert ops == ["Slice", "Relu"] and removed == 5
    x = np.arange(24, dtype=np.float32).reshape(2, 12) - 10
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for p in (src, dst)}
    np.testing.assert_array_equal(run[src], run[dst])
    np.testing.assert_array_equal(run[dst], np.maximum(x[:, ::-1], 0))
