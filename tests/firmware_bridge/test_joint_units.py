"""Policy units <-> counts against LeRobot's own conversion (lerobot 0.4.4's
``MotorsBus._normalize`` / ``_unnormalize``, called on a stand-in bus that holds only what they
read: the calibration, the motors' modes and the model's resolution)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgevla.firmware_bridge.servos import feetech as ft
from edgevla.firmware_bridge.servos.joint_units import (CalibrationError, JointUnits, MotorCalibration,
                                                        load_calibration)

N_PAIRS = 10_000
LEROBOT_MODE = {"degrees": "DEGREES", "range_m100_100": "RANGE_M100_100",
                "range_0_100": "RANGE_0_100"}


def lerobot_bus(cal: MotorCalibration, unit: str):
    motors = pytest.importorskip("lerobot.motors")
    motor = motors.Motor(cal.id, "sts3215", getattr(motors.MotorNormMode, LEROBOT_MODE[unit]))
    return SimpleNamespace(
        calibration={"j": motors.MotorCalibration(**vars(cal))}, motors={"j": motor},
        apply_drive_mode=True, model_resolution_table={"sts3215": 4096},
        _id_to_name=lambda _id: "j", _id_to_model=lambda _id: "sts3215")


def random_calibrations(rng: np.random.Generator, n: int):
    for _ in range(n):
        lo, hi = sorted(rng.choice(4096, size=2, replace=False).tolist())
        yield MotorCalibration(id=int(rng.integers(1, 7)), drive_mode=int(rng.integers(0, 2)),
                               homing_offset=int(rng.integers(-2047, 2048)), range_min=lo,
                               range_max=hi)


@pytest.mark.parametrize("unit", list(LEROBOT_MODE))
def test_same_floats_as_lerobot_and_exact_round_trip_in_counts(unit):
    from lerobot.motors.motors_bus import MotorsBus

    rng = np.random.default_rng(list(LEROBOT_MODE).index(unit))
    worst = 0
    for cal in random_calibrations(rng, N_PAIRS):
        bus = lerobot_bus(cal, unit)
        ju = JointUnits(("j",), (unit,), (cal,))
        count = int(rng.integers(cal.range_min, cal.range_max + 1))
        theirs = MotorsBus._normalize(bus, {cal.id: count})[cal.id]
        ours = float(ju.to_policy([count])[0])
        assert ours == theirs, (cal, count)  # bit for bit
        back = int(ju.to_counts([ours])[0])
        assert back == count, (cal, count, ours)
        # LeRobot truncates where this rounds: at most one count apart, never further
        worst = max(worst, abs(back - MotorsBus._unnormalize(bus, {cal.id: theirs})[cal.id]))
        x = float(rng.uniform(-200, 200))  # any policy output, in range or not
        lr = min(cal.range_max, max(cal.range_min, MotorsBus._unnormalize(bus, {cal.id: x})[cal.id]))
        assert abs(int(ju.to_counts([x])[0]) - lr) <= 1, (cal, x)
    assert worst <= 1


@pytest.mark.parametrize("unit", list(LEROBOT_MODE))
def test_counts_outside_the_range_are_clamped_like_lerobot(unit):
    from lerobot.motors.motors_bus import MotorsBus

    cal = MotorCalibration(id=3, drive_mode=1, homing_offset=0, range_min=1000, range_max=3000)
    ju = JointUnits(("j",), (unit,), (cal,))
    for count in (0, 999, 3001, 4095):
        theirs = MotorsBus._normalize(lerobot_bus(cal, unit), {3: count})[3]
        assert float(ju.to_policy([count])[0]) == theirs
    # goals, whatever the policy says, stay in the calibrated range
    assert ju.to_counts([1e6]).item() in (1000, 3000) and ju.to_counts([-1e6]).item() in (1000, 3000)


def test_radians_are_the_simulators_convention_bounded_by_the_calibration():
    rng = np.random.default_rng(7)
    ju = JointUnits(("a",), ("radians",), (MotorCalibration(1, 0, 0, 0, 4095),))
    for c in rng.integers(0, 4096, size=2000):
        rad = ju.to_policy([c])
        assert ju.to_counts(rad).item() == c
        assert ft.rad_to_counts(rad).item() == c
    tight = JointUnits(("a",), ("radians",), (MotorCalibration(1, 0, 0, 1500, 2500),))
    assert tight.to_counts([3.0]).item() == 2500 and tight.to_counts([-3.0]).item() == 1500


def test_a_six_joint_so101_map(tmp_path):
    names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    cal = {n: {"id": i + 1, "drive_mode": 0, "homing_offset": 10 * i, "range_min": 700 + i,
               "range_max": 3300 - i} for i, n in enumerate(names)}
    p = tmp_path / "follower.json"
    p.write_text(json.dumps(cal))
    ju = JointUnits.from_calibration(load_calibration(p), names, ["degrees"] * 5 + ["range_0_100"])
    counts = np.array([2000, 2100, 1900, 2048, 3000, 1500])
    np.testing.assert_array_equal(ju.to_counts(ju.to_policy(counts)), counts)
    lo, hi = ju.count_limits()
    assert lo.tolist() == [700, 701, 702, 703, 704, 705] and hi[-1] == 3295
    with pytest.raises(CalibrationError, match="6 joints"):
        ju.to_counts([0.0] * 5)
    with pytest.raises(CalibrationError, match="not finite"):
        ju.to_counts([0.0] * 5 + [float("nan")])
    with pytest.raises(CalibrationError, match="no entry for joint.s. jaw"):
        JointUnits.from_calibration(load_calibration(p), names[:5] + ["jaw"], ["degrees"] * 6)


@pytest.mark.parametrize("content, match", [
    ("{", "not a readable JSON"),
    ("[]", "expected an object of motors"),
    ('{"pan": 3}', "pan: expected an object"),
    ('{"pan": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 10}}',
     r"pan.range_max: expected an integer, got None"),
    ('{"pan": {"id": 1, "drive_mode": 2, "homing_offset": 0, "range_min": 1, "range_max": 9}}',
     "pan.drive_mode: expected 0 or 1"),
    ('{"pan": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 9, "range_max": 9}}',
     "range_min < range_max"),
    ('{"pan": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 4096}}',
     "range_max <= 4095"),
    ('{"pan": {"id": true, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 9}}',
     "pan.id: expected an integer"),
])
def test_calibration_file_errors_name_file_motor_and_field(tmp_path, content, match):
    p = tmp_path / "cal.json"
    p.write_text(content)
    with pytest.raises(CalibrationError, match=match) as exc:
        load_calibration(p)
    assert str(p) in str(exc.value)
    with pytest.raises(CalibrationError, match="no such calibration file"):
        load_calibration(tmp_path / "missing.json")


def test_unknown_unit_is_refused():
    with pytest.raises(CalibrationError, match="unit 'turns'"):
        JointUnits(("a",), ("turns",), (MotorCalibration(1, 0, 0, 0, 10),))
