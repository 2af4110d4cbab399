"""Kind `camera`: a real camera through OpenCV (V4L2 on the board), or a video file.

Params::

    source: /dev/video0        # a V4L2 device path or index, or a video file to replay
    camera: top                # name carried in every Frame
    width: 640                 # requested capture size (devices; files are resized if set)
    height: 480
    fps: 30                    # requested device rate; the graph's rate_hz paces the loop
    fourcc: MJPG               # MJPG keeps USB 2 bandwidth low at 640x480x30 on three cameras
    loop: true                 # files: start again at the end (false: stop publishing)
    reconnect_s: 1.0           # a vanished device is reopened this often

A frame is stamped right after `grab()` returns, before decoding (`retrieve()`), so
``t_capture_ns`` is as close to the exposure as user space can know. When the device disappears
(USB unplugged, driver reset) the actor keeps running, counts the outage and reopens it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from edgevla.actors.runtime.actor import Actor, Outputs
from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.messages import Frame, Message

log = logging.getLogger("edgevla.camera")


def _is_device(source: str) -> bool:
    return source.isdigit() or source.startswith("/dev/video")


class CameraActor(Actor):
    outputs = ("frames",)
    image_outputs = ("frames",)

    def setup(self, params: dict[str, Any]) -> None:
        import cv2

        self.cv2 = cv2
        if "source" not in params:
            raise ValueError(f"{self.name}: params.source is required (/dev/videoN, an index, "
                             f"or a video file)")
        self.source = str(params["source"])
        self.device = _is_device(self.source)
        if not self.device and not os.path.exists(self.source):
            raise FileNotFoundError(f"{self.name}: params.source {self.source!r}: no such video "
                                    f"file (a device would be /dev/videoN)")
        self.camera = str(params.get("camera", self.name))
        self.width = int(params.get("width", 0)) or None
        self.height = int(params.get("height", 0)) or None
        self.fps = float(params.get("fps", 30))
        self.fourcc = str(params.get("fourcc", "MJPG"))
        self.loop = bool(params.get("loop", True))
        self.reconnect_ns = int(float(params.get("reconnect_s", 1.0)) * 1e9)
        self.cap = None
        self.seq = 0
        self.frames = 0
        self.read_failures = 0
        self.reconnects = 0
        self.outages = 0
        self.ended = False
        self._next_open_ns = 0
        self._open_failed_logged = False
        self._open()

    def _open(self) -> bool:
        cv2 = self.cv2
        if self.device:
            index = int(self.source) if self.source.isdigit() else self.source
            cap = cv2.VideoCapture(index, cv2.CAP_V4L2)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc[:4].ljust(4)))
                if self.width and self.height:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                cap.set(cv2.CAP_PROP_FPS, self.fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones
        else:
            cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            return False
        self.cap = cap
        return True

    def _drop(self, why: str) -> None:
        if self.cap is not None:
            self.cap.release()
        self.cap = None
        self.outages += 1
        log.warning("%s: camera %s lost (%s); reopening every %.1fs", self.name, self.source,
                    why, self.reconnect_ns / 1e9)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        now = clock.now_ns()
        if self.ended:
            return None
        if self.cap is None:
            if now < self._next_open_ns:
                return None
            self._next_open_ns = now + self.reconnect_ns
            if not self._open():
                if not self._open_failed_logged:  # once an outage: it retries every second
                    self._open_failed_logged = True
                    log.error("%s: cannot open camera %s (%s); retrying every %.1fs", self.name,
                              self.source, "no such device or busy" if self.device
                              else "no such file or unreadable", self.reconnect_ns / 1e9)
                return None
            self._open_failed_logged = False
            self.reconnects += 1
            log.info("%s: camera %s is back", self.name, self.source)
        if not self.cap.grab():
            if not self.device and self.loop and self.frames:
                self.cap.set(self.cv2.CAP_PROP_POS_FRAMES, 0)  # end of file: replay from start
                if self.cap.grab():
                    return self._retrieve(clock)
            self.read_failures += 1
            if not self.device and not self.loop:
                self.ended = True
                return None
            self._drop("grab failed")
            self._next_open_ns = now + self.reconnect_ns
            return None
        return self._retrieve(clock)

    def _retrieve(self, clock: Clock) -> Outputs | None:
        t_capture = clock.now_ns()  # right after grab(): before the decode cost
        ok, bgr = self.cap.retrieve()
        if not ok or bgr is None:
            self.read_failures += 1
            return None
        if (self.width and self.height and not self.device
                and (bgr.shape[1], bgr.shape[0]) != (self.width, self.height)):
            bgr = self.cv2.resize(bgr, (self.width, self.height), interpolation=self.cv2.INTER_AREA)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        self.seq += 1
        self.frames += 1
        return {"frames": Frame(camera=self.camera, image=rgb, seq=self.seq,
                                t_capture_ns=t_capture)}

    def stats(self) -> dict[str, Any]:
        return {"source": self.source, "frames": self.frames, "connected": self.cap is not None,
                "outages": self.outages, "reconnects": self.reconnects,
                "read_failures": self.read_failures, "ended": self.ended}

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
