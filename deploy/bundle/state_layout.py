"""What a policy's ``observation.state`` holds, and how to build it from what a robot reports.

Two layouts, told apart by their length:

* ``positions`` (6): the measured joint positions. Models and datasets made before 2026-12-06.
* ``positions+goal`` (12): the measured joint positions, then the goal position the servos were
  last given (an SO-101's Feetech STS reports it as ``Goal_Position``; the M7's STATE message
  carries it as ``commanded``; the sim's servos hold it as ``TeaBagEnv.targets``). Position and
  goal together tell a policy how the arm is moving, not only where it is: an arm at rest and an
  arm passing through the same point on its way down look the same by position alone, and a
  policy that re-plans from such an observation cannot tell how far into the motion it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_JOINTS = 6
LAYOUTS = {N_JOINTS: "positions", 2 * N_JOINTS: "positions+goal"}
DEFAULT_DIM = 2 * N_JOINTS


def layout_name(state_dim: int) -> str:
    return LAYOUTS.get(int(state_dim), f"unknown ({state_dim} values)")


def check_state_dim(state_dim: int, where: str) -> int:
    """``state_dim`` if it is a known layout, else a ValueError that says ``where``."""
    if int(state_dim) not in LAYOUTS:
        raise ValueError(f"{where}: observation.state has {state_dim} values; edgevla knows "
                         f"{N_JOINTS} (joint positions) and {2 * N_JOINTS} (positions + servo goal)")
    return int(state_dim)


def state_names(joint_names: Sequence[str], state_dim: int = DEFAULT_DIM) -> list[str]:
    names = [str(n) for n in joint_names]
    if int(state_dim) == N_JOINTS:
        return names
    return names + [f"{n}.goal" for n in names]


def policy_state(joints: np.ndarray, goal: np.ndarray | None, state_dim: int) -> np.ndarray:
    """The ``observation.state`` vector of ``state_dim`` values from measured joints and goal.

    A model that takes the goal refuses a robot that does not report it (ValueError): feeding
    it the positions twice would say "the arm is at rest" at every step.
    """
    q = np.asarray(joints, np.float32).reshape(-1)
    if int(state_dim) == q.shape[0]:
        return q
    if int(state_dim) == 2 * q.shape[0]:
        if goal is None:
            raise ValueError("the model takes the servo goal position in observation.state "
                             "(positions+goal layout); the robot state carries none "
                             "(RobotState.commanded is empty)")
        g = np.asarray(goal, np.float32).reshape(-1)
        if g.shape != q.shape:
            raise ValueError(f"servo goal has {g.shape[0]} values, joints {q.shape[0]}")
        return np.concatenate([q, g])
    raise ValueError(f"the model takes {state_dim} state values; the robot reports "
                     f"{q.shape[0]} joints ({layout_name(state_dim)} layout)")
