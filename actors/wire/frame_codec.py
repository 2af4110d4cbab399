"""Camera frames as JPEG on a link between machines (OpenCV), decoded on arrival.

Three raw 640x480 streams at 30 fps are ~660 Mbit/s: more than a robot's link to a server next
to it carries. A publisher with a JPEG quality (`Publisher(jpeg_quality=...)`, the graph's
``network.jpeg``) sends a `Frame` whose ``image`` is the JPEG file as a 1-D uint8 array (the
wire's mark of a compressed frame: a raw image is always H x W x 3); every `Subscriber` turns it
back into H x W x 3 RGB before anyone sees it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgevla.actors.wire.errors import MalformedMessage
from edgevla.actors.wire.messages import Frame


def compress_frame(frame: Frame, quality: int) -> Frame:
    """``frame`` with its RGB image as JPEG bytes at ``quality`` (1..100)."""
    import cv2  # only a process that compresses pays for OpenCV (every process imports the bus)

    image = np.ascontiguousarray(frame.image)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {image.shape}")
    return dataclasses.replace(frame, image=buf.reshape(-1))


def is_compressed(frame: Frame) -> bool:
    return frame.image.ndim == 1 and frame.image.dtype == np.uint8


def decompress_frame(frame: Frame) -> Frame:
    """A compressed frame back to H x W x 3 RGB; a broken one is a malformed message."""
    import cv2  # as in compress_frame

    bgr = cv2.imdecode(np.asarray(frame.image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MalformedMessage("bad_fields", f"frame.image: {frame.image.size} bytes that are "
                                             f"not a JPEG image")
    frame.image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return frame
