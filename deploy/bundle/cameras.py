"""The cameras of the arm, in one place: the names the sim renders, the recorder writes as
``observation.images.<name>``, the policy takes as image inputs and the stage actors subscribe
to as ports (in this order)."""

from __future__ import annotations

CAMERAS: tuple[str, ...] = ("top", "gripper", "left")


def image_key(camera: str) -> str:
    """The LeRobot feature name of a camera's images."""
    return f"observation.images.{camera}"
