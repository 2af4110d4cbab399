"""A LeRobot-shaped dataset end to end: the sim recorded in SO-101 degrees, a policy trained on
it, its bundle run by the stage actors and the sim graph down to servo counts.

The same protocol episode recorded in the sim's radians and in LeRobot's units must command the
same servo counts frame by frame; the bundle must say which units it takes; the stage actors
must turn its degrees into the counts lerobot's own `MotorsBus._unnormalize` gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.train, pytest.mark.timeout(600)]

pytest.importorskip("mujoco")
pytest.importorskip("lerobot")

ROOT = Path(__file__).resolve().parents[2]
FPS = 10


def _record(root: Path, units: str):
    from edgevla.training.dataset.record import record_dataset
    from edgevla.training.sim.scene import SceneConfig
    from edgevla.training.sim.start_positions import ProtocolConfig, make_protocol, select_episodes

    cfg = ProtocolConfig()
    specs = select_episodes(make_protocol(cfg), clusters=[2], per_cluster=2)
    report = record_dataset(root, cfg, SceneConfig(width=32, height=32, fps=FPS), episodes=specs,
                            progress=False, contact_sheet=False, units=units)
    assert report.episodes == 2 and not report.failed_episodes
    return root


@pytest.fixture(scope="module")
def recorded_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("units")
    return _record(base / "radians", "radians"), _record(base / "degrees", "so101-degrees")


def _columns(root: Path, key: str) -> np.ndarray:
    import pandas as pd

    files = sorted((root / "data").glob("*/*.parquet"))
    return np.concatenate([np.stack(pd.read_parquet(f)[key].to_numpy()) for f in files])


def _sim_arm():
    from edgevla.firmware_bridge.servos.joint_units import UNIT_SETS, joint_map
    from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE

    return joint_map(UNIT_SETS["so101-degrees"], calibration_path=SIM_CALIBRATION_FILE)


def test_shipped_sim_calibration_is_the_sim_arms():
    from edgevla.firmware_bridge.servos.joint_units import load_calibration
    from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE, sim_calibration

    assert json.loads(SIM_CALIBRATION_FILE.read_text()) == sim_calibration()
    load_calibration(SIM_CALIBRATION_FILE)  # a valid LeRobot calibration file


def test_radians_and_degrees_recordings_command_the_same_counts(recorded_pair):
    from edgevla.firmware_bridge.servos.feetech import rad_to_counts

    rad_root, deg_root = recorded_pair
    arm = _sim_arm()
    for key, cols in (("action", slice(0, 6)), ("observation.state", slice(0, 6)),
                      ("observation.state", slice(6, 12))):
        rad, deg = _columns(rad_root, key)[:, cols], _columns(deg_root, key)[:, cols]
        assert rad.shape == deg.shape and len(rad) > 60
        from_rad = rad_to_counts(rad)
        from_deg = np.stack([arm.to_counts(row) for row in deg])
        assert np.abs(from_rad - from_deg).max() <= 1, key
    deg_action = _columns(deg_root, "action")
    assert np.abs(deg_action[:, :5]).max() > 10  # degrees, not radians
    assert 0 <= deg_action[:, 5].min() and deg_action[:, 5].max() <= 100  # gripper 0..100
    info = json.loads((deg_root / "meta" / "info.json").read_text())["edgevla"]["joints"]
    assert info["set"] == "so101-degrees" and info["units"][5] == "range_0_100"
    assert info["calibration"]["gripper"]["range_min"] == 2048


@pytest.fixture(scope="module")
def degrees_bundle(recorded_pair, tmp_path_factory):
    from edgevla.deploy.export import exporter
    from edgevla.training.learn.train import train
    from edgevla.training.learn.train_config import TrainConfig

    deg_root = recorded_pair[1]
    out = tmp_path_factory.mktemp("train") / "act"
    overrides = {"chunk_size": 10, "n_action_steps": 10, "dim_model": 64, "dim_feedforward": 128,
                 "n_encoder_layers": 1, "n_vae_encoder_layers": 1}
    train(TrainConfig(policy="act", dataset=str(deg_root), out=str(out), steps=6, batch_size=4,
                      save_every=6, log_every=3, num_workers=0, lr=1e-3, policy_overrides=overrides),
          progress=False)
    policy, stats = exporter.load_policy(str(out / "checkpoints" / "last" / "pretrained_model"))
    joints = exporter.joint_units_for_export(None, deg_root)
    # the checkpoint says what its data was in: export without --dataset or --units finds it
    assert exporter.joint_units_for_export(None, None, out) == joints
    bundle = out.parent / "bundle"
    exporter.export_bundle(policy, bundle, stats=stats, fps=FPS, litert=False, joints=joints,
                           variants={"vision": ("fp32",), "decoder": ("fp32",)},
                           precision={"vision": "fp32", "decoder": "fp32"}, model_id="act-degrees")
    return bundle


def test_bundle_declares_the_datasets_units(degrees_bundle, recorded_pair):
    from edgevla.deploy.bundle.manifest import load_manifest
    from edgevla.deploy.export.exporter import joint_units_for_export

    m = load_manifest(degrees_bundle)
    assert m.joint_units == ["degrees"] * 5 + ["range_0_100"]
    assert m.joint_names[0] == "shoulder_pan" and m.joint_names[5] == "gripper"
    # the flag must agree with what the dataset records
    with pytest.raises(ValueError, match="recorded in 'so101-degrees'"):
        joint_units_for_export("so101-range", recorded_pair[1])
    assert joint_units_for_export(None, recorded_pair[0])[1] == ["radians"] * 6


def test_a_lerobot_so101_dataset_must_say_its_units(tmp_path):
    from edgevla.deploy.export.exporter import joint_units_for_export

    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(json.dumps({"robot_type": "so101_follower"}))
    with pytest.raises(ValueError, match="--units"):
        joint_units_for_export(None, tmp_path)
    assert joint_units_for_export("so101-range", tmp_path)[1][0] == "range_m100_100"


def _stage_chunk(bundle: Path, calibration, state_rad: np.ndarray):
    from edgevla.actors.kinds.stages import ActDecoderActor, VisionActor
    from edgevla.actors.wire.clock import WallClock
    from edgevla.actors.wire.messages import Frame, Request, RobotState

    params = {"model": str(bundle), "threads": 1}
    if calibration is not None:
        params["calibration"] = str(calibration)
    vision, decoder = VisionActor("vision"), ActDecoderActor("decoder")
    vision.setup(params)
    decoder.setup(params)
    clock = WallClock()
    rng = np.random.default_rng(3)
    inputs = {c: Frame(camera=c, image=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                       t_capture_ns=1, seq=1) for c in ("top", "gripper", "left")}
    inputs["state"] = RobotState(joints=state_rad[:6].astype(np.float32),
                                 commanded=state_rad[6:].astype(np.float32), t_capture_ns=1)
    inputs["request"] = Request(seq=1)
    feats = vision.step(clock, inputs)["features"]
    return decoder, feats, decoder.step(clock, {"features": feats})["chunks"]


def test_stage_actors_turn_the_models_degrees_into_lerobots_counts(degrees_bundle, recorded_pair):
    from lerobot.motors.motors_bus import MotorsBus

    from edgevla.deploy.bundle.manifest import load_manifest
    from edgevla.firmware_bridge.servos.feetech import rad_to_counts
    from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE

    state_rad = _columns(recorded_pair[0], "observation.state")[20]
    decoder, feats, chunk = _stage_chunk(degrees_bundle, SIM_CALIBRATION_FILE, state_rad)
    # what the model itself says, in its own units (degrees, gripper 0..100)
    model = decoder.model
    degrees = model.unnormalize_actions(model.act_decode(feats.tensors)).reshape(chunk.actions.shape)
    assert np.abs(degrees[:, :5]).max() > 1.0 and not np.allclose(degrees, chunk.actions)
    bus = _lerobot_bus(SIM_CALIBRATION_FILE)
    names = load_manifest(degrees_bundle).joint_names
    for step_deg, step_rad in zip(degrees, chunk.actions):
        theirs = MotorsBus._unnormalize(bus, {i + 1: float(v) for i, v in enumerate(step_deg)})
        lerobot_counts = np.array([theirs[i + 1] for i in range(len(names))])
        assert np.abs(rad_to_counts(step_rad) - lerobot_counts).max() <= 1

    # the state goes in as lerobot's _normalize gives it from the counts the servos report
    lr_state = []
    for half in (state_rad[:6], state_rad[6:]):
        got = MotorsBus._normalize(bus, {i + 1: int(c) for i, c in enumerate(rad_to_counts(half))})
        lr_state += [got[i + 1] for i in range(6)]
    want = model.normalize_state(np.asarray(lr_state, np.float32))
    assert np.allclose(feats.tensors["state"].reshape(-1), want.reshape(-1), atol=1e-5)


def _lerobot_bus(calibration_file: Path):
    """A stand-in for lerobot's SO-101 follower bus that holds only what `_normalize` and
    `_unnormalize` read: its motors (degrees, gripper 0..100) and the calibration file's entries."""
    from types import SimpleNamespace

    from lerobot.motors import Motor, MotorCalibration, MotorNormMode

    cal = json.loads(Path(calibration_file).read_text())
    modes = [MotorNormMode.DEGREES] * 5 + [MotorNormMode.RANGE_0_100]
    motors = {name: Motor(c["id"], "sts3215", mode) for (name, c), mode in zip(cal.items(), modes)}
    by_id = {c["id"]: name for name, c in cal.items()}
    return SimpleNamespace(calibration={n: MotorCalibration(**c) for n, c in cal.items()},
                           motors=motors, apply_drive_mode=True,
                           model_resolution_table={"sts3215": 4096},
                           _id_to_name=lambda i: by_id[i], _id_to_model=lambda i: "sts3215")


def test_eval_runs_a_degrees_policy_on_the_sim_in_radians(degrees_bundle, recorded_pair):
    """`edgevla eval` feeds the sim's radians: the checkpoint and its bundle both convert through
    the sim arm's calibration, and agree."""
    from edgevla.training.eval.chunk_policies import BundlePolicy, TorchPolicy
    from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE

    ckpt = degrees_bundle.parent / "act"
    state = _columns(recorded_pair[0], "observation.state")[20]
    rng = np.random.default_rng(3)  # the frames `_stage_chunk` gives the stage actors
    images = {c: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for c in ("top", "gripper", "left")}
    torch_chunk = TorchPolicy(ckpt).predict(images, state[:6], state[6:])
    bundle_chunk = BundlePolicy(degrees_bundle).predict(images, state[:6], state[6:])
    _, _, actors_chunk = _stage_chunk(degrees_bundle, SIM_CALIBRATION_FILE, state)
    assert np.abs(torch_chunk).max() < 2 * np.pi  # radians, not degrees
    # the same conversions as the stage actors (checked against lerobot's above)
    assert np.allclose(bundle_chunk, actors_chunk.actions, atol=1e-4)
    assert np.allclose(torch_chunk, bundle_chunk, atol=1e-3)


def test_a_degrees_bundle_without_calibration_is_refused(degrees_bundle):
    from edgevla.actors.kinds.stages import VisionActor

    with pytest.raises(ValueError, match="calibration"):
        VisionActor("vision").setup({"model": str(degrees_bundle)})


@pytest.mark.timing
def test_degrees_policy_runs_through_the_sim_graph_to_the_servos(degrees_bundle, run_base):
    from runtime_helpers import run_until, with_model

    from edgevla.actors.runtime.graph import RestartPolicy, load_graph
    from edgevla.actors.runtime.supervisor import Supervisor
    from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE

    fast = RestartPolicy(policy="on-failure", max_restarts=3, backoff_s=0.1, backoff_max_s=1.0)
    g = with_model(load_graph(ROOT / "graphs" / "sim.yaml"), degrees_bundle, fast,
                   calibration=str(SIM_CALIBRATION_FILE))
    sup = Supervisor(g, base_dir=run_base)
    sup.start()
    try:
        def stat(actor, key):
            return (sup.replicas[actor][0].last_stats or {}).get("actor_stats", {}).get(key, 0)

        assert run_until(sup, lambda: stat("executor", "accepted_chunks") >= 3, timeout_s=120)
        assert all(r.restarts == 0 for rs in sup.replicas.values() for r in rs)
        # the firmware drives the servos and says so (what `edgevla status` shows)
        assert run_until(sup, lambda: stat("executor", "mcu").get("mode") == "RUNNING", timeout_s=10)
        assert stat("executor", "mcu")["errors"] == 0
    finally:
        sup.stop()
