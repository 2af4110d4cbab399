"""`edgevla bench rtc`'s runs on the shipped SmolVLA, short: closed loop in the sim, a delay of
30 % of the horizon, guided vs crossfade. What the acceptance asks of the full benchmark, on a
few seconds of one start position."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.train, pytest.mark.timeout(600)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
BUNDLE = Path(__file__).resolve().parents[2] / "models" / "smolvla" / "bundle"


@pytest.fixture(scope="module")
def runs():
    from edgevla.actors.bench import rtc_runs
    from edgevla.deploy.bundle.manifest import load_manifest
    from edgevla.training.eval.eval_starts import eval_specs
    from edgevla.training.sim.env import TeaBagEnv
    from edgevla.training.sim.scene import SceneConfig

    m = load_manifest(BUNDLE)
    delay_s = 0.3 * m.chunk_size * m.dt_ns / 1e9
    spec = eval_specs(1, 0, seed=99)[0]
    out = {}
    with TeaBagEnv(SceneConfig(width=96, height=96, fps=int(m.fps), seed=0)) as env:
        for method in rtc_runs.METHODS:
            if method.name in ("rtc", "crossfade"):
                policy = rtc_runs.policy_actor(str(BUNDLE), method, seed=0)
                out[method.name] = rtc_runs.run(env, spec, policy, method, delay_s, 5.0)
    return m, delay_s, out


def test_guided_chunks_agree_with_the_commitment_and_the_seam_is_no_worse(runs):
    from edgevla.actors.bench.rtc_runs import metrics

    m, _, out = runs
    rtc, fade = out["rtc"], out["crossfade"]
    assert len(rtc.disagreement) >= 3 and len(fade.disagreement) >= 3
    assert np.mean(rtc.disagreement) <= 0.25 * np.mean(fade.disagreement)
    mr, mf = metrics(rtc, m.fps), metrics(fade, m.fps)
    assert mr["starved_ms"] == 0 and mf["starved_ms"] == 0
    assert mr["max_seam_jump_rad"] <= mf["max_seam_jump_rad"]
    st = rtc.stats["policy"]["rtc"]
    assert st["guided"] >= 3 and st["delay_steps"] == int(np.ceil(0.3 * m.chunk_size))
    assert fade.stats["policy"]["rtc"]["guided"] == 0


def test_the_seam_plot_is_written(runs, tmp_path):
    from edgevla.actors.bench.rtc_plot import plot_seams

    _, delay_s, out = runs
    png = plot_seams(out, delay_s, tmp_path / "rtc_seam.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_or_wrong_bundle_is_one_line(monkeypatch, capsys):
    from edgevla.actors.cli.main import main

    monkeypatch.setenv("EDGEVLA_RTC_BUNDLE", "/nonexistent/bundle")
    assert main(["bench", "rtc", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgevla bench rtc: /nonexistent/bundle: no model bundle") and "\n" not in err
    monkeypatch.setenv("EDGEVLA_RTC_BUNDLE", str(BUNDLE.parents[1] / "default" / "bundle"))
    assert main(["bench", "rtc", "--quick"]) == 2
    assert "the bundle's policy is 'act'" in capsys.readouterr().err
