"""The simulated arm's LeRobot calibration file: what `lerobot-calibrate` would write for it.

Its ranges are the sim's joint limits (`kinematics.JOINT_LIMITS`) in servo counts (count
2048 = 0 rad), rounded outwards, so that the sim can record in LeRobot's SO-101 units and a
model trained on them runs through the same conversion a real arm needs
(`firmware_bridge/servos/joint_units.py`). The file ships as
``training/assets/so101_sim_calibration.json``; a test checks it against this function.
"""

from __future__ import annotations

import math
from pathlib import Path

from edgevla.firmware_bridge.servos.feetech import CENTER_COUNTS, COUNTS_PER_REV
from edgevla.firmware_bridge.servos.joint_units import MotorCalibration
from edgevla.training.sim.kinematics import JOINT_LIMITS, JOINT_NAMES

SIM_CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "assets" / "so101_sim_calibration.json"


def sim_calibration() -> dict[str, dict[str, int]]:
    """``{joint: {id, drive_mode, homing_offset, range_min, range_max}}`` as LeRobot writes it."""
    per_rad = COUNTS_PER_REV / (2 * math.pi)
    out = {}
    for i, (name, (lo, hi)) in enumerate(zip(JOINT_NAMES, JOINT_LIMITS)):
        cal = MotorCalibration(id=i + 1, drive_mode=0, homing_offset=0,
                               range_min=max(0, math.floor(CENTER_COUNTS + lo * per_rad)),
                               range_max=min(COUNTS_PER_REV - 1, math.ceil(CENTER_COUNTS + hi * per_rad)))
        out[name] = dict(vars(cal))
    return out
