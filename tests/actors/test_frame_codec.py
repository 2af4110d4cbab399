"""Camera frames as JPEG between machines: compressed by the publisher, decoded on arrival,
a broken one counted as malformed and never handed on."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from edgevla.actors.runtime.graph import GraphError, parse_graph
from edgevla.actors.wire.bus import Publisher, Subscriber
from edgevla.actors.wire.codec import encode
from edgevla.actors.wire.frame_codec import compress_frame, decompress_frame, is_compressed
from edgevla.actors.wire.messages import Frame


def _image(h=96, w=128):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2 % 256, y * 2 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def test_a_jpeg_frame_comes_back_as_the_image_at_a_fraction_of_the_bytes():
    f = Frame(camera="top", image=_image(), t_capture_ns=7, seq=3)
    c = compress_frame(f, 90)
    assert is_compressed(c) and c.image.nbytes < f.image.nbytes / 3
    assert (c.camera, c.t_capture_ns, c.seq) == ("top", 7, 3)  # the stamps travel unchanged
    back = decompress_frame(c)
    assert back.image.shape == f.image.shape and back.image.dtype == np.uint8
    assert np.mean(np.abs(back.image.astype(int) - f.image.astype(int))) < 4.0
    assert not is_compressed(f)


def test_the_bus_compresses_on_send_and_decodes_on_arrival(tmp_path):
    ctx = zmq.Context()
    ep = f"ipc://{tmp_path}/f.sock"
    pub = Publisher(ctx, ep, producer="cam", jpeg_quality=85, shm_min_bytes=None)
    sub = Subscriber(ctx, [ep], ["cam/top"])
    try:
        img = _image()
        got = None
        for _ in range(50):
            pub.send("cam/top", Frame(camera="top", image=img, t_capture_ns=11))
            got = sub.recv(50)
            if got:
                break
        assert got is not None
        frame = got[1]
        assert frame.image.shape == img.shape and frame.t_capture_ns == 11
        assert np.mean(np.abs(frame.image.astype(int) - img.astype(int))) < 4.0
        # bytes that are not a JPEG: one malformed message, nothing delivered
        bad = Frame(camera="top", image=np.frombuffer(b"not a jpeg", np.uint8).copy())
        pub.sock.send_multipart(encode("cam/top", bad))
        assert sub.recv(300) is None
        assert sub.counters.malformed["cam/top"]
    finally:
        pub.close()
        sub.sock.close(linger=0)
        ctx.term()


def test_jpeg_quality_is_checked_in_the_graph():
    text = ("network: {jpeg: {cam/top: 120}}\nactors:\n"
            "  cam: {kind: synthetic_camera, outputs: {frames: cam/top}, rate_hz: 5}\n")
    with pytest.raises(GraphError, match=r"network.jpeg.cam/top must be a JPEG quality 1..100, got 120"):
        parse_graph(text, "g.yaml")
