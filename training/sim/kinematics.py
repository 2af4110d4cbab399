"""Joint conventions and closed-form kinematics of the simulated SO-101-like arm.

Joints are positions in radians of the servo shaft (project convention: Feetech count 2048 =
0 rad). The gripper servo drives two parallel fingers through a rack and pinion (radius
`PINION_RADIUS_M`): gripper angle 0 rad = closed, 1.75 rad = 6.1 cm open.
"""

from __future__ import annotations

import math

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper",
)
# (low, high) in rad, SO-101 URDF-like; the gripper is the servo angle of the rack and pinion.
JOINT_LIMITS = np.array(
    [[-1.92, 1.92], [-1.75, 1.75], [-1.69, 1.69], [-1.66, 1.66], [-2.74, 2.84], [0.0, 1.75]],
    dtype=np.float64,
)
PINION_RADIUS_M = 0.0175

# Kinematics of the MJCF (training/assets/so101_teabag.xml), used by the analytic IK.
SHOULDER_HEIGHT_M = 0.115  # table to shoulder_lift axis
UPPER_ARM_M = 0.130  # shoulder_lift -> elbow_flex
FOREARM_M = 0.150  # elbow_flex -> wrist_flex
WRIST_TO_TCP_M = 0.100  # wrist_flex -> grasp point between the fingertips

# Rest pose: gripper above the table in front of the base, pointing down, fingers half open.
HOME_Q = np.array([0.0, -0.35, 0.35, 1.50, 0.0, 1.0], dtype=np.float64)


def wrap_angle(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def arm_ik(tcp_xyz: np.ndarray | tuple[float, float, float], grasp_yaw: float = 0.0,
           tilt: float = 0.0) -> np.ndarray | None:
    """Closed-form IK of the 5 arm joints for a grasp point, approach tilt and finger axis.

    The gripper approaches from above, tilted ``tilt`` rad outward from vertical in the
    vertical plane through the base (0 = straight down); ``grasp_yaw`` is the world yaw
    of the object axis the fingers must close across (its y axis, e.g. a box's yaw). Returns
    the elbow-up solution, or None when the point is out of reach or outside joint limits.
    """
    x, y, z = (float(v) for v in tcp_xyz)
    pan = math.atan2(y, x)
    r = math.hypot(x, y)
    phi = math.pi / 2 - tilt  # gripper direction angle below horizontal
    wr = r - WRIST_TO_TCP_M * math.cos(phi)
    wz = z + WRIST_TO_TCP_M * math.sin(phi)
    dr, dz = wr, wz - SHOULDER_HEIGHT_M
    d2 = dr * dr + dz * dz
    s = -(d2 - UPPER_ARM_M**2 - FOREARM_M**2) / (2 * UPPER_ARM_M * FOREARM_M)
    if not -1.0 <= s <= 1.0:
        return None
    q2 = math.asin(s)
    rel = -q2 - math.pi / 2  # forearm angle relative to the upper arm, in the (r, z) plane
    a1 = math.atan2(dz, dr) - math.atan2(FOREARM_M * math.sin(rel),
                                         UPPER_ARM_M + FOREARM_M * math.cos(rel))
    q1 = math.pi / 2 - a1
    q3 = phi - q1 - q2
    # Fingers close along the gripper's y axis; roll turns it about the (downward) approach.
    # With a tilted approach the roll is stretched so that the fingers' axis, seen from above,
    # still lies across the object.
    delta = wrap_angle(pan - grasp_yaw)
    if delta > math.pi / 2:
        delta -= math.pi
    elif delta < -math.pi / 2:
        delta += math.pi
    roll = math.atan2(math.sin(delta), math.cos(delta) * math.cos(tilt))
    q = np.array([pan, wrap_angle(q1), q2, wrap_angle(q3), roll])
    lo, hi = JOINT_LIMITS[:5, 0], JOINT_LIMITS[:5, 1]
    if np.any(q < lo - 1e-9) or np.any(q > hi + 1e-9):
        return None
    return q


def arm_fk(q: np.ndarray) -> np.ndarray:
    """Grasp point (x, y, z) of the 5 arm joints; the exact inverse of `arm_ik` (for tests)."""
    pan, q1, q2, q3 = (float(v) for v in q[:4])
    er, ez = UPPER_ARM_M * math.sin(q1), SHOULDER_HEIGHT_M + UPPER_ARM_M * math.cos(q1)
    wr, wz = er + FOREARM_M * math.cos(q1 + q2), ez - FOREARM_M * math.sin(q1 + q2)
    phi = q1 + q2 + q3
    tr, tz = wr + WRIST_TO_TCP_M * math.cos(phi), wz - WRIST_TO_TCP_M * math.sin(phi)
    return np.array([tr * math.cos(pan), tr * math.sin(pan), tz])


def gripper_to_finger_m(angle_rad: float) -> float:
    lo, hi = JOINT_LIMITS[5]
    return float(np.clip(angle_rad, lo, hi)) * PINION_RADIUS_M
