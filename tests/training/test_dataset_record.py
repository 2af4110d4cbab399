"""Acceptance: record a tiny dataset through lerobot's API and read it back with LeRobot only.

2 clusters x 2 episodes (one normal, one recovery each) at 32x32 and 10 fps, the held-out
cluster among them. The read path below uses lerobot (and numpy) only, no project code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.train

pytest.importorskip("mujoco")
pytest.importorskip("lerobot")

VAL_CLUSTER = 6
MAX_REST_S = 0.25  # the longest the recorded arm may stand still before the task is done


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from edgevla.training.dataset.record import record_dataset
    from edgevla.training.sim.scene import SceneConfig
    from edgevla.training.sim.start_positions import ProtocolConfig, make_protocol, select_episodes

    cfg = ProtocolConfig(val_cluster=VAL_CLUSTER)
    specs = select_episodes(make_protocol(cfg), clusters=[2, VAL_CLUSTER], per_cluster=2)
    root = tmp_path_factory.mktemp("ds") / "sim_teabag"
    report = record_dataset(root, cfg, SceneConfig(width=32, height=32, fps=10),
                            episodes=specs, progress=False)
    return root, specs, report


def _column(ds, key):
    return np.asarray(ds.hf_dataset.select_columns([key]).with_format("numpy")[key])


@pytest.fixture(scope="module")
def full(recorded):
    return _load(recorded[0])


def _load(root, **kw):
    from edgevla.training.torch_setup import ensure_torchvision

    ensure_torchvision()  # the torchvision op shim this machine needs before lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("edgevla/sim_teabag", root=root, **kw)


def test_reads_back_with_lerobot_only(recorded, full):
    root, specs, report = recorded
    assert report.episodes == 4 and not report.failed_episodes
    ds = full
    assert ds.fps == 10 and ds.num_episodes == 4 and ds.num_frames == report.frames
    item = ds[0]
    for cam in ("top", "gripper", "left"):
        assert tuple(item[f"observation.images.{cam}"].shape) == (3, 32, 32)
        assert float(item[f"observation.images.{cam}"].max()) <= 1.0
    assert tuple(item["observation.state"].shape) == (12,)  # joints, then the servo goal
    assert tuple(item["action"].shape) == (6,)
    assert item["task"] == "put the tea bag in the mug"
    names = ds.meta.features["observation.state"]["names"]
    assert names[5] == "gripper" and names[11] == "gripper.goal"
    # episodes are whole demonstrations: 10 fps, a few seconds each, ending with the release
    lengths = np.bincount(_column(ds, "episode_index"))
    assert lengths.min() >= 30 and lengths.max() <= 120


def test_split_holds_out_the_validation_cluster(recorded, full):
    root, _, _ = recorded
    splits = full.meta.info["splits"]
    assert splits == {"train": "0:2", "val": "2:4"}
    lo, hi = (int(v) for v in splits["train"].split(":"))
    train = _load(root, episodes=list(range(lo, hi)))
    clusters = set(_column(train, "episode.cluster").reshape(-1).tolist())
    assert clusters == {2} and VAL_CLUSTER not in clusters
    lo, hi = (int(v) for v in splits["val"].split(":"))
    val = _load(root, episodes=list(range(lo, hi)))
    assert set(_column(val, "episode.cluster").reshape(-1).tolist()) == {VAL_CLUSTER}
    assert set(_column(val, "episode.split").reshape(-1).tolist()) == {1}


def test_per_episode_metadata_survives_reload(recorded, full):
    root, specs, _ = recorded
    ds = full
    ep = _column(ds, "episode_index").reshape(-1)
    first = np.unique(ep, return_index=True)[1]
    col = {k: _column(ds, k).reshape(-1)[first]
           for k in ("episode.cluster", "episode.position_index", "episode.recovery")}
    expected = sorted(specs, key=lambda s: s.split != "train")
    assert col["episode.cluster"].tolist() == [s.cluster for s in expected]
    assert col["episode.position_index"].tolist() == [s.position_index for s in expected]
    assert col["episode.recovery"].tolist() == [int(s.recovery) for s in expected]
    assert col["episode.recovery"].mean() == 0.5  # recovery share of this selection
    info = json.loads((root / "meta" / "info.json").read_text())
    assert [e["cluster"] for e in info["edgevla"]["episodes"]] == col["episode.cluster"].tolist()


def test_actions_lead_states(full):
    # the action recorded with an observation is the target the robot then moves toward
    ds = full
    ep0 = _column(ds, "episode_index") == 0
    states = _column(ds, "observation.state")[ep0][:, :6]
    actions = _column(ds, "action")[ep0]
    err_next = np.abs(actions[:-1] - states[1:])[:, :5].mean()
    err_prev = np.abs(actions[1:] - states[:-1])[:, :5].mean()
    assert err_next < err_prev


def test_info_summary_map_and_contact_sheet(recorded, capsys):
    from edgevla.actors.cli.main import main
    from edgevla.training.dataset.info import summarize

    root, _, report = recorded
    s = summarize(root)
    assert s.episodes == 4 and s.recovery_episodes == 2 and s.recovery_share == 0.5
    assert [(c.cluster, c.split, c.episodes) for c in s.clusters] == [(2, "train", 2),
                                                                     (VAL_CLUSTER, "val", 2)]
    for png in (report.map_png, report.contact_sheet_png):
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(["dataset", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "4 episodes" in out and "recovery episodes: 2 (50.0%)" in out
    assert main(["dataset", "info", str(root / "nope")]) == 2


def test_record_refuses_an_existing_folder(recorded):
    from edgevla.training.dataset.record import record_dataset

    root, specs, _ = recorded
    with pytest.raises(FileExistsError, match="already exists"):
        record_dataset(root, episodes=specs[:1], progress=False)


def test_recorded_image_stats_are_real_pixel_statistics(recorded):
    """lerobot 0.4.4 alone writes std 0 for images (uint8 overflow); the recorder's patch must
    give the per-channel pixel std of the frames, and leave lerobot unpatched afterwards."""
    import json

    from lerobot.datasets.compute_stats import get_feature_stats

    root, _, _ = recorded
    stats = json.loads((root / "meta" / "stats.json").read_text())
    ds = _load(root)
    for cam in ("top", "gripper", "left"):
        key = f"observation.images.{cam}"
        px = np.stack([np.asarray(ds[i][key]) for i in range(0, ds.num_frames, 3)])  # N,C,H,W
        want = px.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1)
        got = np.asarray(stats[key]["std"]).ravel()
        assert got.min() > 0.01, (key, got)
        np.testing.assert_allclose(got, want, rtol=0.3)  # lerobot samples frames and downsizes
    # the patch is gone: lerobot's own function still shows its bug on uint8 input
    x = np.random.default_rng(0).integers(0, 255, (8, 3, 16, 16), dtype=np.uint8)
    assert float(get_feature_stats(x, axis=(0, 2, 3), keepdims=True)["std"].max()) == 0.0


def test_fix_stats_repairs_a_dataset_written_with_the_bug(tmp_path):
    import json

    from test_train import write_tiny_dataset  # written by lerobot directly: std 0 images

    from edgevla.actors.cli.main import main

    root = write_tiny_dataset(tmp_path / "tiny", episodes=2, frames=10)
    before = json.loads((root / "meta" / "stats.json").read_text())
    from edgevla.training.dataset.image_stats import broken_image_stats

    assert set(broken_image_stats(before)) == {f"observation.images.{c}" for c in ("top", "gripper", "left")}
    assert main(["dataset", "fix-stats", str(root)]) == 0
    after = json.loads((root / "meta" / "stats.json").read_text())
    assert broken_image_stats(after) == []
    # uniform random pixels: std 1/sqrt(12) = 0.289 per channel
    for c in ("top", "gripper", "left"):
        np.testing.assert_allclose(np.ravel(after[f"observation.images.{c}"]["std"]), 0.289, atol=0.03)
        assert after["action"] == before["action"]  # only the cameras change
    assert (root / "meta" / "stats.json.orig").is_file()
    assert main(["dataset", "fix-stats", str(root)]) == 0  # idempotent: nothing left to repair
    assert json.loads((root / "meta" / "stats.json").read_text()) == after


def test_record_selection_errors_are_clear_and_record_nothing(tmp_path, capsys):
    from edgevla.actors.cli.main import main

    out = tmp_path / "ds"
    assert main(["dataset", "record", "--out", str(out), "--only-clusters", "3,99"]) == 2
    assert "cluster(s) [99] are not in the protocol" in capsys.readouterr().err
    for flag in ("--episodes", "--per-cluster"):
        with pytest.raises(SystemExit) as exc:  # argparse: usage + the reason, exit 2
            main(["dataset", "record", "--out", str(out), flag, "0"])
        assert exc.value.code == 2
        assert "expected a whole number >= 1, got '0'" in capsys.readouterr().err
    assert not out.exists()


def test_state_carries_the_goal_the_servos_held(full):
    # observation.state[6:] is the servo goal when the frame was taken: the episode's start
    # pose at first, then always the previous frame's action
    ds = full
    ep = _column(ds, "episode_index").reshape(-1)
    states, actions = _column(ds, "observation.state"), _column(ds, "action")
    for e in np.unique(ep):
        s, a = states[ep == e], actions[ep == e]
        np.testing.assert_array_equal(s[1:, 6:], a[:-1])
        assert np.abs(s[0, 6:] - s[0, :6])[:5].max() < 0.05  # at rest on its own goal


def test_recorded_arm_never_rests_before_the_task_is_done(full):
    # The expert never dwells (training/sim/expert.py): a pause at a point the arm later leaves
    # in a different direction is an observation with two demonstrated next actions. The arm
    # may come to rest for an instant where a min-jerk segment ends and the next begins.
    ds = full
    ep = _column(ds, "episode_index").reshape(-1)
    actions = _column(ds, "action")
    longest = 0.0
    for e in np.unique(ep):
        a = actions[ep == e]
        moving = np.abs(np.diff(a, axis=0)).max(axis=1) > 0.06 / ds.fps  # 0.06 rad/s
        last = np.flatnonzero(moving)[-1]  # the arm is home: the task is done from here on
        run = best = 0
        for m in moving[:last]:
            run = 0 if m else run + 1
            best = max(best, run)
        longest = max(longest, best / ds.fps)
    assert longest <= MAX_REST_S, f"the arm rested {longest:.2f} s mid-task"


def test_ctrl_c_keeps_the_saved_episodes_as_a_complete_dataset(tmp_path, monkeypatch):
    import edgevla.training.dataset.record as dr
    from edgevla.training.sim.scene import SceneConfig
    from edgevla.training.sim.start_positions import ProtocolConfig, make_protocol, select_episodes

    real, calls = dr._record_one, []

    def interrupted_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(dr, "_record_one", interrupted_second)
    specs = select_episodes(make_protocol(ProtocolConfig()), clusters=[2], per_cluster=3)
    report = dr.record_dataset(tmp_path / "ds", ProtocolConfig(), SceneConfig(width=16, height=16, fps=10),
                               episodes=specs, progress=False, contact_sheet=False)
    assert report.interrupted and report.episodes == 1 and report.planned == 3
    assert not report.failed_episodes
    assert _load(tmp_path / "ds").num_episodes == 1  # finalized: readable as it is


def test_lerobots_own_tools_work_in_the_environment_on_a_recorded_dataset(recorded, tmp_path):
    """As a LeRobot user types them, in a plain process of the project's environment (the
    install's .pth line makes torchvision, and so lerobot, import cleanly there)."""
    root, _, _ = recorded
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", "from lerobot.datasets.lerobot_dataset import "
                        "LeRobotDataset; import scservo_sdk; print('ok')"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.stdout.strip() == "ok", r.stderr[-2000:]
    viz = Path(sys.executable).with_name("lerobot-dataset-viz")
    r = subprocess.run([str(viz), "--repo-id", "local/sim_teabag", "--root", str(root),
                        "--episode-index", "0", "--save", "1", "--num-workers", "0",
                        "--output-dir", str(tmp_path / "viz")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rrd = list((tmp_path / "viz").glob("*.rrd"))
    assert len(rrd) == 1 and rrd[0].stat().st_size > 10_000, r.stderr[-2000:]
