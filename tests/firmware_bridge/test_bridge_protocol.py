"""Python codec: the shared vectors, round trips and a stream decoder that survives anything."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.firmware_bridge.link import codec as p
from edgevla.firmware_bridge.link.vectors import VECTORS_PATH, message_from_fields

VECTORS = json.loads(VECTORS_PATH.read_text())


@pytest.mark.parametrize("vec", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors_encode_and_decode(vec):
    msg = message_from_fields(vec["type"], vec["fields"])
    assert p.encode_raw(msg, vec["seq"]).hex() == vec["raw_hex"]
    assert p.encode_frame(msg, vec["seq"]).hex() == vec["wire_hex"]
    wire = bytes.fromhex(vec["wire_hex"])
    assert wire[-1] == 0 and 0 not in wire[:-1]
    assert len(wire) <= p.MAX_WIRE
    frame = p.decode_frame(wire[:-1])
    assert frame.seq == vec["seq"]
    assert frame.canonical() == vec["canonical"]


@pytest.mark.parametrize("vec", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_rejected_with_their_kind(vec):
    wire = bytes.fromhex(vec["wire_hex"])
    with pytest.raises(p.FrameError) as exc:
        p.decode_frame(wire[:-1])
    assert exc.value.kind == vec["error"]


@pytest.mark.parametrize("vec", VECTORS["streams"], ids=lambda v: v["name"])
def test_stream_vectors(vec):
    dec = p.StreamDecoder()
    data = bytes.fromhex(vec["stream_hex"])
    frames = []
    for i in range(0, len(data), 7):  # arbitrary chunking must not matter
        frames += dec.feed(data[i:i + 7])
    assert [f.canonical() for f in frames] == vec["frames"]
    assert sum(dec.errors.values()) == vec["errors"]


def test_cobs_and_crc_vectors():
    for v in VECTORS["cobs"]:
        raw, enc = bytes.fromhex(v["decoded_hex"]), bytes.fromhex(v["encoded_hex"])
        assert p.cobs_encode(raw) == enc
        assert p.cobs_decode(enc) == raw
    assert p.crc32(b"123456789") == 0xCBF43926 == VECTORS["crc_check"]["crc"]


def test_largest_frame_fits_one_rpmsg_buffer():
    # worst case for COBS: no zero bytes at all in a maximal WAYPOINTS frame
    pts = [p.Waypoint(0x0101010101010101, (1.0001,) * 6, 7) for _ in range(14)]
    wire = p.encode_frame(p.Waypoints(pts), 0x0101)
    assert len(wire) <= p.MAX_WIRE == 496
    with pytest.raises(ValueError):
        p.Waypoints(pts + pts[:1]).body()


finite32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)
u64 = st.integers(0, 2**64 - 1)
waypoint = st.builds(p.Waypoint, u64, st.tuples(*[finite32] * 6), st.integers(0, 255))
messages = st.one_of(
    st.builds(p.Ping, u64),
    st.builds(p.Waypoints, st.lists(waypoint, min_size=1, max_size=14)),
    st.builds(p.Hold), st.builds(p.Enable), st.builds(p.Disable), st.builds(p.GetState),
    st.builds(p.Config, st.integers(0, 65535), st.integers(0, 65535)),
    st.builds(p.Pong, u64, u64),
    st.builds(p.Error, st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535),
              st.integers(0, 2**32 - 1)),
)


@settings(max_examples=examples(300), deadline=None)
@given(msg=messages, seq=st.integers(0, 65535))
def test_roundtrip_any_message(msg, seq):
    wire = p.encode_frame(msg, seq)
    assert 0 not in wire[:-1] and len(wire) <= p.MAX_WIRE
    frame = p.decode_frame(wire[:-1])
    assert frame.seq == seq
    assert p.encode_frame(frame.msg, seq) == wire


@settings(max_examples=examples(200), deadline=None)
@given(msgs=st.lists(messages, min_size=1, max_size=6), junk=st.lists(st.binary(max_size=600),
                                                                        min_size=7, max_size=7),
       chunk=st.integers(1, 64))
def test_stream_decoder_recovers_every_frame_between_garbage(msgs, junk, chunk):
    """Garbage followed by a delimiter never eats the next frame; nothing else is invented."""
    data = bytearray()
    wires = []
    for i, m in enumerate(msgs):
        data += junk[i] + b"\x00"
        w = p.encode_frame(m, i)
        wires.append(w)
        data += w
    dec = p.StreamDecoder()
    got = []
    for i in range(0, len(data), chunk):
        got += dec.feed(bytes(data[i:i + chunk]))
    assert [p.encode_frame(f.msg, f.seq) for f in got] == wires


@settings(max_examples=examples(300), deadline=None)
@given(msg=messages, flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)),
                                    min_size=1, max_size=3))
def test_bit_flips_are_never_accepted(msg, flips):
    wire = bytearray(p.encode_frame(msg, 7)[:-1])
    for pos, bit in flips:
        wire[pos % len(wire)] ^= 1 << bit
    if 0 in wire:  # a flip produced a delimiter: the stream splits, nothing may decode
        parts = bytes(wire).split(b"\x00")
    else:
        parts = [bytes(wire)]
    original = p.encode_frame(msg, 7)
    for part in parts:
        try:
            f = p.decode_frame(part)
        except p.FrameError:
            continue
        assert p.encode_frame(f.msg, f.seq) == original  # only if the flips cancelled out


def test_decoder_rejects_nan_and_bad_limits():
    body = struct.pack("<BBH", 1, p.Waypoints.TYPE, 0) + bytes([1]) + struct.pack(
        "<Q6fB", 5, *([math.inf] + [0.0] * 5), 0)
    raw = body + struct.pack("<I", p.crc32(body))
    with pytest.raises(p.FrameError, match="non-finite"):
        p.decode_raw(raw)
    with pytest.raises(ValueError):
        p.Waypoints([p.Waypoint(1, (np.nan,) * 6)]).body()


def test_a_stream_without_delimiters_never_grows_the_decoder_past_one_frame():
    """Noise with no 0x00 in it (a wrong baud rate, a babbling device) is dropped as it comes:
    the decoder holds at most one frame's bytes, counts one oversize error, and the next real
    frame after a delimiter decodes."""
    dec = p.StreamDecoder()
    noise = b"\x41" * 4096
    for _ in range(256):  # 1 MiB
        assert dec.feed(noise) == []
        assert len(dec._buf) < p.MAX_WIRE
    out = dec.feed(b"\x00" + p.encode_frame(p.Hold(), 7))
    assert [f.canonical() for f in out] == ["HOLD seq=7"]
    assert dec.errors == {"oversize": 1}
