"""The bundle manifest's rules against the shipped model bundle (committed, version 1) and
small edits of it: no export needed, so each check is reached in milliseconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevla.deploy.bundle.manifest import (TARGETS, BundleError, Normalization, load_manifest,
                                            write_board_bundle)

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "default" / "bundle"


@pytest.fixture
def bundle(tmp_path) -> Path:
    """The shipped manifest with empty stand-ins for its model files."""
    d = tmp_path / "model"
    d.mkdir()
    raw = json.loads((SHIPPED / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps(raw))
    for stage in raw["stages"].values():
        for v in stage["variants"].values():
            (d / v["file"]).write_bytes(b"")
    return d


def _edit(d: Path, change) -> Path:
    raw = json.loads((d / "manifest.json").read_text())
    change(raw)
    (d / "manifest.json").write_text(json.dumps(raw))
    return d


def test_the_shipped_bundle_reads_back():
    m = load_manifest(SHIPPED)
    assert m.version == 1 and m.policy == "act" and m.action_dim == 6


def test_a_missing_prep_file_is_refused_only_when_files_are_checked(bundle):
    def add_prep(raw):
        raw["stages"]["decoder"]["variants"]["fp32"]["prep"] = "decoder.prep.onnx"

    _edit(bundle, add_prep)
    with pytest.raises(BundleError, match="decoder.variants.fp32.prep: .*does not exist"):
        load_manifest(bundle)
    assert load_manifest(bundle, check_files=False).stages["decoder"].variants["fp32"].prep
    (bundle / "decoder.prep.onnx").write_bytes(b"")
    assert load_manifest(bundle).stages["decoder"].variants["fp32"].prep == "decoder.prep.onnx"


def test_a_zero_range_min_max_normalises_to_finite_values():
    n = Normalization(mode="min_max", min=[0.5, -1.0], max=[0.5, 1.0])
    x = n.normalize(np.array([0.5, 0.0], np.float32))
    assert np.all(np.isfinite(x)) and x[1] == 0.0


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_board_target_gives_every_core_one_role(target):
    t = TARGETS[target]
    roles = [*t.rt_cores, *t.io_cores, *t.inference_cores]
    assert sorted(roles) == list(range(t.cores))


def test_a_board_bundle_goes_to_a_new_or_empty_directory(bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_board_bundle(bundle, empty, tarball=False) / "graph.yaml").is_file()
    for taken in (tmp_path / "file", tmp_path / "full"):
        if taken.name == "file":
            taken.write_text("x")
        else:
            taken.mkdir()
            (taken / "keep").write_text("x")
        with pytest.raises(BundleError, match="exists and is not empty"):
            write_board_bundle(bundle, taken, tarball=False)
    shutil.rmtree(empty)


def test_a_prep_that_is_not_a_file_name_and_unknown_norm_keys_are_refused(bundle):
    def bad_prep(raw):
        raw["stages"]["decoder"]["variants"]["fp32"]["prep"] = 5

    with pytest.raises(BundleError, match="decoder.variants.fp32.prep: expected str, got 5"):
        load_manifest(_edit(bundle, bad_prep))

    def bad_norm(raw):
        raw["stages"]["decoder"]["variants"]["fp32"].pop("prep")
        raw["state_norm"]["scale_by"] = 2

    with pytest.raises(BundleError, match=r"state_norm: .*scale_by"):
        load_manifest(_edit(bundle, bad_norm))


def _graph(policy="act", cores=(2, 3, 4, 5), **kw):
    import dataclasses

    from edgevla.deploy.bundle.manifest import board_graph

    m = dataclasses.replace(load_manifest(SHIPPED), policy=policy, extra={"num_steps": 7})
    t = dataclasses.replace(TARGETS["imx95"], inference_cores=cores)
    return board_graph(m, t, "model", **kw)["actors"]


def test_board_graph_splits_the_inference_cores_between_the_stages():
    a = _graph()
    assert a["vision"]["cpu_affinity"] == [2, 3] and a["vision"]["params"]["threads"] == 2
    assert a["decoder"]["cpu_affinity"] == [4, 5] and a["decoder"]["params"]["threads"] == 2
    s = _graph("smolvla")
    for stage in ("prefill", "denoise"):
        assert s[stage]["cpu_affinity"] == [4, 5] and s[stage]["params"]["threads"] == 2
    assert s["denoise"]["params"]["denoise_steps"] == 7
    assert _graph("smolvla", denoise_steps=4)["denoise"]["params"]["denoise_steps"] == 4
    one = _graph("smolvla", cores=(3,))  # one inference core: every stage shares it
    for stage in ("vision", "prefill", "denoise"):
        assert one[stage]["cpu_affinity"] == [3] and one[stage]["params"]["threads"] == 1


def test_board_graph_executor_runs_at_100_hz_real_time_on_its_own_core():
    ex = _graph()["executor"]
    assert ex["rate_hz"] == 100 and ex["realtime_priority"] == 50
    assert ex["cpu_affinity"] == list(TARGETS["imx95"].rt_cores)
    assert ex["params"]["mcu_port"] == "/dev/ttyRPMSG30"


def test_smolvla_graphs_run_real_time_chunking_and_act_graphs_do_not():
    from edgevla.deploy.bundle.graph_rtc import RTC_CROSSFADE_MS
    from edgevla.deploy.bundle.host_profile import host_graph

    s = _graph("smolvla")
    assert s["denoise"]["inputs"]["request"] == s["executor"]["outputs"]["requests"]
    assert s["denoise"]["params"]["rtc"] is True and s["executor"]["params"]["rtc"] is True
    assert s["executor"]["params"]["crossfade_ms"] == RTC_CROSSFADE_MS
    off = _graph("smolvla", rtc=False)
    assert "request" not in off["denoise"]["inputs"] and "rtc" not in off["executor"]["params"]
    act = _graph()
    assert "rtc" not in act["executor"]["params"] and act["executor"]["params"]["crossfade_ms"] == 300
    h = host_graph("smolvla", "model", 30, ["top"], [96, 96], None)["actors"]
    assert h["denoise"]["params"]["rtc"] and h["executor"]["params"]["rtc"]
    assert "rtc" not in host_graph("act", "model", 30, ["top"], [96, 96], None)["actors"]["executor"]["params"]
