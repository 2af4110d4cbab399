"""Model bundle format, normalisation, backends, board bundle and the export/bundle CLI."""

from __future__ import annotations

import json
import os
import shutil
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.deploy.bundle.manifest import BundleError, Normalization, load_manifest, write_board_bundle
from edgevla.deploy.inference.backends import BackendOptions, open_backend

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------------------ normalisation

floats = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=examples(60), deadline=None)
@given(x=st.lists(floats, min_size=6, max_size=6), mean=st.lists(floats, min_size=6, max_size=6),
       std=st.lists(st.floats(0.015625, 5, width=32), min_size=6, max_size=6))
def test_mean_std_roundtrip(x, mean, std):
    n = Normalization(mode="mean_std", mean=mean, std=std)
    x = np.asarray(x, np.float32)
    y = n.normalize(x)
    np.testing.assert_allclose(y, (x - np.float32(mean)) / (np.float32(std) + 1e-8), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(n.unnormalize(y), x, rtol=1e-4, atol=1e-3)


@settings(max_examples=examples(60), deadline=None)
@given(lo=st.lists(st.floats(-5, 0, width=32), min_size=3, max_size=3),
       span=st.lists(st.floats(0.125, 5, width=32), min_size=3, max_size=3))
def test_min_max_maps_range_to_unit_interval(lo, span):
    lo = np.asarray(lo, np.float32)
    hi = lo + np.asarray(span, np.float32)
    n = Normalization(mode="min_max", min=lo.tolist(), max=hi.tolist())
    np.testing.assert_allclose(n.normalize(lo), -1, atol=1e-4)
    np.testing.assert_allclose(n.normalize(hi), 1, atol=1e-4)
    mid = (lo + hi) / 2
    np.testing.assert_allclose(n.unnormalize(n.normalize(mid)), mid, atol=1e-4)


def test_identity_and_bad_mode():
    x = np.arange(3, dtype=np.float32)
    assert np.array_equal(Normalization(mode="identity").normalize(x), x)
    with pytest.raises(BundleError, match="normalization mode"):
        Normalization(mode="zscore")


# --------------------------------------------------------------------------------- manifest

@pytest.fixture(scope="module")
def act_bundle():
    pytest.importorskip("torch")
    from edgevla.deploy.export.smolvla_local import tiny_bundle

    return tiny_bundle("act")[1]


def _broken_copy(src, tmp_path, edit):
    dst = tmp_path / "b"
    shutil.copytree(src, dst)
    d = json.loads((dst / "manifest.json").read_text())
    edit(d)
    (dst / "manifest.json").write_text(json.dumps(d))
    return dst


@pytest.mark.train
@pytest.mark.parametrize("edit,match", [
    (lambda d: d.pop("chunk_size"), "missing field 'chunk_size'"),
    (lambda d: d.update(format="other"), "format must be"),
    (lambda d: d.update(version=99), "version 99 unsupported"),
    (lambda d: d.update(policy="diffusion"), "policy: expected one of"),
    (lambda d: d.update(fps=0), "fps: must be > 0"),
    (lambda d: d["stages"].pop("decoder"), "missing field 'decoder'"),
    (lambda d: d["stages"]["vision"].update(default="int3"), "default: 'int3' is not one of"),
    (lambda d: d["stages"]["vision"]["variants"]["fp32"].update(file="nope.onnx"), "does not exist"),
    (lambda d: d["stages"]["vision"]["variants"]["fp32"].update(precision="fp8"), "precision"),
    (lambda d: d["image_norm"].pop("top"), "no stats for camera"),
    (lambda d: d.update(chunk_size="20"), "chunk_size: expected int"),
])
def test_manifest_errors_name_the_field(act_bundle, tmp_path, edit, match):
    bad = _broken_copy(act_bundle, tmp_path, edit)
    with pytest.raises(BundleError, match=match) as exc:
        load_manifest(bad)
    assert "manifest.json" in str(exc.value)


@pytest.mark.train
def test_manifest_contents(act_bundle):
    m = load_manifest(act_bundle)
    assert m.policy == "act" and m.cameras == ["top", "gripper", "left"]
    assert m.dt_ns == round(1e9 / m.fps)
    assert m.stages["vision"].default == "int8" and m.stages["decoder"].default == "fp32"
    assert m.stages["vision"].pick(backend="litert").file.endswith(".tflite")
    raw = json.loads((act_bundle / "manifest.json").read_text())
    assert raw["dt_ns"] == m.dt_ns and raw["format"] == "edgevla-model-bundle"
    with pytest.raises(BundleError, match="no variant"):
        m.stages["decoder"].pick(precision="int4")


# ---------------------------------------------------------------------------------- backends

def test_backend_options_validation():
    with pytest.raises(ValueError, match="backend must be"):
        BackendOptions(backend="tensorrt")
    with pytest.raises(ValueError, match="threads"):
        BackendOptions(threads=0)
    with pytest.raises(ValueError, match="opt_level"):
        BackendOptions(opt_level="max")
    with pytest.raises(ValueError, match="unknown backend option"):
        BackendOptions.from_params({"thread": 2})


def test_backend_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_backend(tmp_path / "missing.onnx")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="suffix"):
        open_backend(tmp_path / "m.pt")


@pytest.mark.train
def test_onnxruntime_options_and_litert_delegate_path(act_bundle, tmp_path):
    m = load_manifest(act_bundle)
    path = act_bundle / m.stages["decoder"].variants["fp32"].file
    x = {"cam_tokens": np.ones((3, 4, 64), np.float32), "state": np.zeros((1, 6), np.float32)}
    ref = open_backend(path, BackendOptions(threads=1, opt_level="disable")).run(x)["actions"]
    pinned = open_backend(path, BackendOptions(threads=2, cpu_affinity=[0, 1], opt_level="all"))
    np.testing.assert_allclose(pinned.run(x)["actions"], ref, atol=1e-5)
    with pytest.raises(KeyError, match="missing inputs"):
        pinned.run({"state": x["state"]})
    tfl = act_bundle / m.stages["vision"].pick(backend="litert").file
    assert open_backend(tfl, BackendOptions(threads=1)).input_names == ["args_0"]  # the converter's
    lite = open_backend(tfl, BackendOptions(threads=1), names=(["images"], ["cam_tokens"]))
    assert lite.input_names == ["images"] and lite.output_names == ["cam_tokens"]
    with pytest.raises(ValueError, match="shape"):
        lite.run({"images": np.zeros((1, 3, 64, 64), np.float32)})
    with pytest.raises(FileNotFoundError, match="libneutron_delegate"):
        open_backend(tfl, BackendOptions(delegate=str(tmp_path / "libvx_delegate.so")))


# ------------------------------------------------------------------------------ board bundle

@pytest.mark.train
def test_board_bundle(act_bundle, tmp_path):
    import yaml

    def elf(name: str, cls: int, machine: int):
        head = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9) + (2).to_bytes(2, "little")  # e_type
        path = tmp_path / name
        path.write_bytes(head + machine.to_bytes(2, "little") + bytes(40))
        return path

    # refused before anything is written, and nothing is left for a retry to trip over
    for bad, why in ((tmp_path / "missing.elf", "no such file"),
                     (elf("x86.elf", 2, 62), "not a 32-bit"), (elf("riscv.elf", 1, 243), "not Arm"),
                     (act_bundle / "manifest.json", "not an ELF")):
        with pytest.raises(BundleError, match=why):
            write_board_bundle(act_bundle, tmp_path / "board", target="imx95", firmware=bad)
        assert not (tmp_path / "board").exists() and not list(tmp_path.glob(".board*"))
    fw = elf("m7.elf", 1, 40)
    out = write_board_bundle(act_bundle, tmp_path / "board", target="imx95", firmware=fw)
    assert not list(tmp_path.glob(".board*"))  # the temporary folder was renamed into place
    for f in ("graph.yaml", "README.md", "install.sh", "model/manifest.json",
              "systemd/edgevla.service", "systemd/edgevla-m7.service", "firmware/edgevla-fw.elf"):
        assert (out / f).is_file(), f
    load_manifest(out / "model")  # every variant was copied
    g = yaml.safe_load((out / "graph.yaml").read_text())
    a = g["actors"]
    rt = set(a["executor"]["cpu_affinity"])
    for name in ("vision", "decoder"):
        assert not rt & set(a[name]["cpu_affinity"]), name  # executor pinned apart from inference
        assert a[name]["params"]["model"] == "${GRAPH_DIR}/model"
    assert set().union(*(set(x["cpu_affinity"]) for x in a.values())) <= set(range(6))
    m7 = (out / "systemd/edgevla-m7.service").read_text()
    assert "/sys/class/remoteproc/remoteproc0/firmware" in m7 and "echo start" in m7
    sup = (out / "systemd/edgevla.service").read_text()
    assert "edgevla run /opt/edgevla/bundle" in sup and "Requires=edgevla-m7.service" in sup
    with tarfile.open(str(out) + ".tar.gz") as tar:
        assert "board/graph.yaml" in tar.getnames()
    with pytest.raises(BundleError, match="not empty"):
        write_board_bundle(act_bundle, out)
    with pytest.raises(BundleError, match="unknown target"):
        write_board_bundle(act_bundle, tmp_path / "x", target="rpi5")
    # the graph validates against the runtime's loader: kinds, ports, topics all wired
    from edgevla.actors.runtime.graph import load_graph

    g = load_graph(out)
    assert g.producers()["robot/state"] == "executor"  # measured joints come from the M7
    assert g.actors["executor"].realtime_priority > 0


# ------------------------------------------------------------------------------------- CLI

@pytest.mark.train
def test_cli_export_from_checkpoint_then_bundle(tmp_path, capsys):
    """A lerobot checkpoint folder (weights + preprocessor stats) -> model bundle -> board bundle."""
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()  # before lerobot's first import
    from lerobot.policies.factory import make_pre_post_processors

    from edgevla.actors.cli.main import main
    from edgevla.deploy.export.exporter import read_stats
    from edgevla.deploy.export.parity import _torch_stats
    from edgevla.deploy.export.smolvla_local import make_tiny_act, tiny_stats

    policy = make_tiny_act(image_hw=(48, 48), cameras=("top", "gripper"), chunk_size=10)
    stats = tiny_stats(policy)
    ckpt = tmp_path / "ckpt" / "pretrained_model"
    policy.save_pretrained(ckpt)
    pre, post = make_pre_post_processors(policy.config, dataset_stats=_torch_stats(stats))
    pre.save_pretrained(ckpt)
    post.save_pretrained(ckpt)
    read = read_stats(ckpt)
    np.testing.assert_allclose(read["observation.state"]["mean"], stats["observation.state"]["mean"],
                               rtol=1e-6)
    out = tmp_path / "model"
    rc = main(["export", "--policy", str(ckpt.parent), "--out", str(out), "--samples", "2",
               "--no-litert", "--precision", "vision=int8-dynamic,decoder=int8"])
    text = capsys.readouterr().out
    assert rc == 0, text
    m = load_manifest(out)
    assert m.cameras == ["top", "gripper"] and m.chunk_size == 10
    assert m.stages["decoder"].default == "int8"
    np.testing.assert_allclose(m.action_norm.mean, stats["action"]["mean"], rtol=1e-6)
    rep = json.loads((out / "parity.json").read_text())
    assert rep["composed_fp32_vs_lerobot"]["action_max_abs"] < 1e-4
    assert main(["export", "--policy", str(ckpt), "--precision", "denoise=int8",
                 "--out", str(tmp_path / "x")]) == 2
    # bad paths: a one-line error naming the path, exit 2, no traceback and no hub lookup
    capsys.readouterr()
    assert main(["export", "--policy", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "nope: not a lerobot checkpoint" in capsys.readouterr().err
    assert main(["export", "--policy", str(ckpt), "--out", str(tmp_path / "x"),
                 "--dataset", str(tmp_path / "no-dataset")]) == 2
    assert "no-dataset: not a LeRobot dataset" in capsys.readouterr().err
    assert main(["bundle", "--model", str(out), "--out", str(tmp_path / "board"), "--no-tar"]) == 0
    assert (tmp_path / "board" / "graph.yaml").is_file()
    capsys.readouterr()
    assert main(["bundle", "--model", str(tmp_path), "--out", str(tmp_path / "b2")]) == 2
    assert "edgevla bundle:" in capsys.readouterr().err  # one line on stderr, exit 2
    # a model in LeRobot units needs the arm's calibration file
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["joint_units"] = ["degrees"] * 5 + ["range_0_100"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["bundle", "--model", str(out), "--out", str(tmp_path / "b3"), "--no-tar"]) == 2
    assert "--calibration" in capsys.readouterr().err and not (tmp_path / "b3").exists()


def test_preprocess_image_resizes_and_scales():
    from edgevla.deploy.inference.pipeline import preprocess_image

    frame = np.full((120, 160, 3), 255, np.uint8)
    frame[..., 1] = 0
    x = preprocess_image(frame, (48, 64))
    assert x.shape == (3, 48, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], 1.0)
    np.testing.assert_allclose(x[1], 0.0)
    with pytest.raises(ValueError, match="HxWx3"):
        preprocess_image(np.zeros((4, 4), np.uint8), (4, 4))


@pytest.mark.train
def test_calibration_samples_from_a_lerobot_dataset(tmp_path):
    """--dataset: frames come back as the HxWx3 uint8 the cameras produce (PNG, lossless)."""
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from edgevla.deploy.export.exporter import samples_from_dataset
    from edgevla.deploy.export.smolvla_local import make_tiny_act

    feats = {f"observation.images.{c}": {"dtype": "image", "shape": (48, 48, 3),
                                         "names": ["height", "width", "channels"]}
             for c in ("top", "gripper")}
    feats["observation.state"] = {"dtype": "float32", "shape": (6,), "names": None}
    feats["action"] = {"dtype": "float32", "shape": (6,), "names": None}
    root = tmp_path / "ds"
    ds = LeRobotDataset.create("local/calib", fps=30, features=feats, root=root, use_videos=False)
    rng = np.random.default_rng(0)
    written = []
    for _ in range(4):
        fr = {c: rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for c in ("top", "gripper")}
        st = rng.uniform(-1, 1, 6).astype(np.float32)
        written.append((fr, st))
        ds.add_frame({**{f"observation.images.{c}": v for c, v in fr.items()},
                      "observation.state": st, "action": st, "task": "put the bag in the box"})
    ds.save_episode()
    ds.finalize()
    policy = make_tiny_act(image_hw=(48, 48), cameras=("top", "gripper"))
    samples = samples_from_dataset(root, policy, 2)
    assert len(samples) == 2
    np.testing.assert_array_equal(samples[0].frames["top"], written[0][0]["top"])
    np.testing.assert_array_equal(samples[-1].frames["gripper"], written[-1][0]["gripper"])
    np.testing.assert_allclose(samples[-1].state, written[-1][1])
    with pytest.raises(ValueError, match="no camera"):
        samples_from_dataset(root, make_tiny_act(image_hw=(48, 48)), 1)


@pytest.mark.train
def test_cli_export_smolvla_checkpoint_with_int4_prefill(tmp_path, capsys):
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()  # before lerobot's first import
    from lerobot.policies.factory import make_pre_post_processors

    from edgevla.actors.cli.main import main
    from edgevla.deploy.export.parity import _torch_stats
    from edgevla.deploy.export.smolvla_local import make_tiny_smolvla, tiny_stats, write_tiny_smolvlm

    policy = make_tiny_smolvla(write_tiny_smolvlm(tmp_path / "vlm"), cameras=("top", "left"))
    stats = tiny_stats(policy)
    ckpt = tmp_path / "pretrained_model"
    policy.save_pretrained(ckpt)
    pre, post = make_pre_post_processors(policy.config, dataset_stats=_torch_stats(stats))
    pre.save_pretrained(ckpt)
    post.save_pretrained(ckpt)
    out = tmp_path / "model"
    rc = main(["export", "--policy", str(ckpt), "--out", str(out), "--samples", "2",
               "--precision", "vision=int8,prefill=int4,denoise=fp32", "--task", "put the bag in the box"])
    assert rc == 0, capsys.readouterr().out
    m = load_manifest(out)
    assert m.policy == "smolvla" and m.cameras == ["top", "left"]
    assert {s: m.stages[s].default for s in m.stages} == {"vision": "int8", "prefill": "int4",
                                                          "denoise": "fp32"}
    assert m.extra["task"] == "put the bag in the box" and sum(m.extra["lang_mask"]) >= 5
    rep = json.loads((out / "parity.json").read_text())
    assert rep["composed_fp32_vs_lerobot"]["action_max_abs"] < 1e-4
    assert rep["composed_chosen_vs_fp32"]["action_max_frac_range"] < 0.05
