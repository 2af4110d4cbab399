"""Policy units <-> servo counts: the one place where a joint value becomes a Feetech count.

A LeRobot SO-100/SO-101 arm reports and takes its joints in units computed from its calibration
file (per motor: ``id``, ``drive_mode``, ``homing_offset``, ``range_min``, ``range_max``; the JSON
``lerobot-calibrate`` writes). The modes are LeRobot's (``lerobot/motors/motors_bus.py``,
``MotorsBus._normalize`` / ``_unnormalize``, lerobot 0.4.4):

- ``degrees``: ``(count - mid) * 360 / 4095`` with ``mid`` the middle of the calibrated range
  (SO followers with ``use_degrees=True``; drive_mode is not applied in this mode);
- ``range_m100_100``: the calibrated range mapped onto -100..100 (older SO datasets), negated
  for ``drive_mode`` 1;
- ``range_0_100``: onto 0..100 (the gripper), mirrored for ``drive_mode`` 1;
- ``radians``: the simulator's convention, count 2048 = 0 rad, 4096 counts a turn
  (``feetech.rad_to_counts``); the calibration only bounds it.

Counts -> units gives the same floats as LeRobot (the same operations in the same order, on the
count clamped to the calibrated range as LeRobot clamps it). Units -> counts rounds to the
nearest count where LeRobot truncates (``int(...)``), so a count survives the round trip exactly
(truncation loses one whenever the float lands a hair below the count); the two differ by at most
one count. The servo's homing offset is applied by the servo itself (LeRobot writes it into its
``Homing_Offset`` register), so Present/Goal Position counts here are the offset ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgevla.firmware_bridge.servos.feetech import CENTER_COUNTS, COUNTS_PER_REV, rad_to_counts

UNITS = ("radians", "degrees", "range_m100_100", "range_0_100")
# LeRobot's SO-100/SO-101 follower motors, in bus order (ids 1..6)
SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll",
                "gripper")
# Named unit sets for the six joints: what a dataset is recorded in and a bundle declares.
# so101-degrees is LeRobot's SO follower with use_degrees=True, so101-range with use_degrees=False
# (the gripper is range_0_100 either way).
UNIT_SETS = {
    "radians": ("radians",) * 6,
    "so101-degrees": ("degrees",) * 5 + ("range_0_100",),
    "so101-range": ("range_m100_100",) * 5 + ("range_0_100",),
}
_CAL_FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")


class CalibrationError(ValueError):
    """A calibration file or joint map that cannot be used; the message names file and field."""


@dataclass(frozen=True)
class MotorCalibration:
    """One motor's entry of a LeRobot calibration file."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


def load_calibration(path: str | Path) -> dict[str, MotorCalibration]:
    """A LeRobot calibration JSON (``{"shoulder_pan": {"id": 1, ...}, ...}``), checked field by
    field: each error names the file, the motor and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: not a readable JSON calibration file ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise CalibrationError(f"{path}: expected an object of motors "
                               f"({{\"shoulder_pan\": {{\"id\": 1, ...}}, ...}})")
    out = {}
    for motor, entry in raw.items():
        if not isinstance(entry, dict):
            raise CalibrationError(f"{path}: {motor}: expected an object with {', '.join(_CAL_FIELDS)}")
        values = {}
        for field in _CAL_FIELDS:
            v = entry.get(field)
            if isinstance(v, bool) or not isinstance(v, int):
                raise CalibrationError(f"{path}: {motor}.{field}: expected an integer, got {v!r}")
            values[field] = v
        cal = MotorCalibration(**values)
        if cal.drive_mode not in (0, 1):
            raise CalibrationError(f"{path}: {motor}.drive_mode: expected 0 or 1, got {cal.drive_mode}")
        if not 0 <= cal.range_min < cal.range_max <= COUNTS_PER_REV - 1:
            raise CalibrationError(f"{path}: {motor}.range_min/range_max: expected "
                                   f"0 <= range_min < range_max <= {COUNTS_PER_REV - 1}, got "
                                   f"{cal.range_min}..{cal.range_max}")
        out[motor] = cal
    return out


def joint_map(units: Sequence[str], names: Sequence[str] = SO101_JOINTS,
              calibration_path: str | Path | None = None, where: str = "joint map") -> "JointUnits":
    """The joint map a model declares (its units per joint) on an arm's calibration file.

    Without a file the arm must be in servo radians (the sim's convention over the whole turn);
    any other unit means nothing without the arm's calibration, so that is an error."""
    if calibration_path is None:
        other = sorted({u for u in units if u != "radians"})
        if other:
            raise CalibrationError(f"{where}: the model's joints are in {', '.join(other)}, which "
                                   f"need the arm's LeRobot calibration file (param calibration: PATH)")
        return JointUnits(tuple(names), tuple(units),
                          tuple(identity_calibration(i + 1) for i in range(len(names))))
    return JointUnits.from_calibration(load_calibration(calibration_path), names, units,
                                       source=str(calibration_path))


def identity_calibration(servo_id: int) -> MotorCalibration:
    """The whole turn, no mirroring: what a joint without a calibration file is bounded by."""
    return MotorCalibration(id=servo_id, drive_mode=0, homing_offset=0, range_min=0,
                            range_max=COUNTS_PER_REV - 1)


@dataclass(frozen=True)
class JointUnits:
    """The joints of an arm in order, each with its policy unit and calibration."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    calibration: tuple[MotorCalibration, ...]

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.units) == len(self.calibration):
            raise CalibrationError(f"joint map: {len(self.names)} names, {len(self.units)} units, "
                                   f"{len(self.calibration)} calibrations; expected one each")
        for name, unit in zip(self.names, self.units):
            if unit not in UNITS:
                raise CalibrationError(f"joint map: {name}: unit {unit!r}, expected one of "
                                       f"{', '.join(UNITS)}")

    @classmethod
    def from_calibration(cls, calibration: dict[str, MotorCalibration], names: Sequence[str],
                         units: Sequence[str], source: str = "calibration") -> "JointUnits":
        missing = [n for n in names if n not in calibration]
        if missing:
            raise CalibrationError(f"{source}: no entry for joint(s) {', '.join(missing)} "
                                   f"(has {', '.join(calibration)})")
        return cls(tuple(names), tuple(units), tuple(calibration[n] for n in names))

    def count_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Each joint's calibrated range in counts: what the M7 clamps goals to."""
        return (np.array([c.range_min for c in self.calibration], np.int64),
                np.array([c.range_max for c in self.calibration], np.int64))

    def limits_rad(self) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated range in the firmware's joint convention (count 2048 = 0 rad): what
        the M7's LIMITS get, so it clamps goals to the range whatever the host sends."""
        lo = np.array([_count_to_unit(c.range_min, "radians", c) for c in self.calibration])
        hi = np.array([_count_to_unit(c.range_max, "radians", c) for c in self.calibration])
        return lo, hi

    def to_policy(self, counts: Sequence[int] | np.ndarray) -> np.ndarray:
        """Servo counts -> policy units (LeRobot's ``_normalize``, float for float)."""
        c = np.asarray(counts, dtype=np.int64)
        self._check_len(c)
        return np.array([_count_to_unit(int(v), u, cal)
                         for v, u, cal in zip(c, self.units, self.calibration)], np.float64)

    def to_counts(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Policy units -> servo counts, rounded and clamped to the calibrated range."""
        x = np.asarray(values, dtype=np.float64)
        self._check_len(x)
        return np.array([_unit_to_count(float(v), u, cal)
                         for v, u, cal in zip(x, self.units, self.calibration)], np.int64)

    @property
    def is_identity(self) -> bool:
        """Radians on every joint over the whole turn: policy units are servo radians."""
        return all(u == "radians" for u in self.units) and all(
            c.range_min == 0 and c.range_max == COUNTS_PER_REV - 1 for c in self.calibration)

    def to_servo_radians(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Policy units -> servo radians (count 2048 = 0 rad), not rounded to a count: the goal
        the executor and the M7 interpolate; the M7 rounds it to a count as it writes it."""
        x = np.asarray(values, dtype=np.float64)
        self._check_len(x)
        counts = [_unit_to_count_exact(float(v), u, cal)
                  for v, u, cal in zip(x, self.units, self.calibration)]
        return (np.array(counts) - CENTER_COUNTS) * (2 * math.pi / COUNTS_PER_REV)

    def from_servo_radians(self, rad: Sequence[float] | np.ndarray) -> np.ndarray:
        """Servo radians -> policy units, through the count the servo would report."""
        r = np.asarray(rad, dtype=np.float64)
        self._check_len(r)
        return self.to_policy(rad_to_counts(r))

    def _check_len(self, a: np.ndarray) -> None:
        if a.shape != (len(self.names),):
            raise CalibrationError(f"joint map: {a.shape} values for {len(self.names)} joints "
                                   f"({', '.join(self.names)})")


def _count_to_unit(count: int, unit: str, cal: MotorCalibration) -> float:
    lo, hi = cal.range_min, cal.range_max
    if unit == "degrees":  # LeRobot neither clamps nor mirrors here
        return (count - (lo + hi) / 2) * 360 / (COUNTS_PER_REV - 1)
    if unit == "radians":
        return (min(hi, max(lo, count)) - CENTER_COUNTS) * (2 * math.pi / COUNTS_PER_REV)
    bounded = min(hi, max(lo, count))
    if unit == "range_m100_100":
        norm = (((bounded - lo) / (hi - lo)) * 200) - 100
        return -norm if cal.drive_mode else norm
    norm = ((bounded - lo) / (hi - lo)) * 100
    return 100 - norm if cal.drive_mode else norm


def _unit_to_count(value: float, unit: str, cal: MotorCalibration) -> int:
    return min(cal.range_max, max(cal.range_min, round(_unit_to_count_exact(value, unit, cal))))


def _unit_to_count_exact(value: float, unit: str, cal: MotorCalibration) -> float:
    """The count a policy value stands for, clamped to the calibrated range, not rounded."""
    lo, hi = cal.range_min, cal.range_max
    if not math.isfinite(value):
        raise CalibrationError(f"joint value {value} is not finite")
    if unit == "degrees":
        count = value * (COUNTS_PER_REV - 1) / 360 + (lo + hi) / 2
    elif unit == "radians":
        count = CENTER_COUNTS + value * (COUNTS_PER_REV / (2 * math.pi))
    elif unit == "range_m100_100":
        v = min(100.0, max(-100.0, -value if cal.drive_mode else value))
        count = ((v + 100) / 200) * (hi - lo) + lo
    else:
        v = min(100.0, max(0.0, 100 - value if cal.drive_mode else value))
        count = (v / 100) * (hi - lo) + lo
    return min(float(hi), max(float(lo), count))
