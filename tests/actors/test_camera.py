"""Camera actor: replays a video file, stamps at capture, survives its source vanishing."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from edgevla.actors.kinds.camera import CameraActor
from edgevla.actors.wire.clock import VirtualClock


def write_video(path, n=12, w=64, h=48):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    assert out.isOpened()
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, 2] = 20 * i  # red channel in BGR: the actor must hand out RGB
        out.write(img)
    out.release()


def test_replays_a_file_as_rgb_frames_with_capture_stamps(tmp_path):
    path = tmp_path / "cam.avi"
    write_video(path)
    cam = CameraActor("top_cam")
    cam.setup({"source": str(path), "camera": "top", "loop": False})
    clock = VirtualClock(1_000)
    frames = []
    for _ in range(20):
        clock.advance_ns(33_000_000)
        out = cam.step(clock, {})
        if out:
            frames.append(out["frames"])
    assert len(frames) == 12 and cam.stats()["ended"]
    assert [f.seq for f in frames] == list(range(1, 13))
    assert all(f.camera == "top" and f.image.shape == (48, 64, 3) for f in frames)
    assert frames[5].image[..., 0].mean() == pytest.approx(100, abs=8)  # red is channel 0
    assert frames[5].image[..., 2].mean() < 8
    assert [f.t_capture_ns for f in frames] == sorted(f.t_capture_ns for f in frames)


def test_loops_and_resizes(tmp_path):
    path = tmp_path / "cam.avi"
    write_video(path, n=5)
    cam = CameraActor("c")
    cam.setup({"source": str(path), "width": 32, "height": 24})
    clock = VirtualClock()
    outs = [cam.step(clock, {}) for _ in range(12)]
    assert all(o is not None for o in outs)
    assert outs[-1]["frames"].image.shape == (24, 32, 3)


def test_source_vanishing_and_coming_back(tmp_path):
    path = tmp_path / "cam.avi"
    write_video(path, n=3)
    cam = CameraActor("c")
    cam.setup({"source": str(path), "loop": False, "reconnect_s": 0.5})
    cam.loop = True  # behave like a device: grab failure -> reconnect, not "ended"
    clock = VirtualClock()
    for _ in range(3):
        assert cam.step(clock, {})
    moved = tmp_path / "gone.avi"
    shutil.move(path, moved)
    cam.cap.release()  # the device disappears under the open handle
    assert cam.step(clock, {}) is None
    st = cam.stats()
    assert st["outages"] == 1 and not st["connected"]
    clock.advance_ns(100_000_000)
    assert cam.step(clock, {}) is None  # not yet: reopen is rate-limited
    shutil.move(moved, path)
    clock.advance_ns(600_000_000)
    out = cam.step(clock, {})
    assert out is not None and cam.stats()["reconnects"] == 1


def test_missing_file_is_a_clear_error(tmp_path):
    cam = CameraActor("c")
    with pytest.raises(FileNotFoundError, match="no such video file"):
        cam.setup({"source": str(tmp_path / "nope.mp4")})
    with pytest.raises(ValueError, match="params.source is required"):
        CameraActor("c").setup({})
