"""The link codec's constants and checks, each against mcu/PROTOCOL.md's own text or at its
boundary: fault bits, modes, ERROR codes and waypoint flags parsed from the spec's tables;
every size limit one byte either side; every refusal the spec lists."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from edgevla.firmware_bridge.link import codec as p

SPEC = (Path(__file__).resolve().parents[2] / "mcu" / "PROTOCOL.md").read_text()


def spec_table(after: str) -> dict[int, str]:
    """``| bit | NAME ... |`` rows of the first table after the line containing ``after``."""
    rows = {}
    for line in SPEC[SPEC.index(after):].splitlines()[1:]:
        m = re.match(r"\|\s*(\d+)\s*\|\s*([A-Z_]+)", line)
        if m:
            rows[int(m.group(1))] = m.group(2)
        elif rows and not line.startswith("|"):
            break
    return rows


def test_fault_bits_modes_error_codes_and_flags_are_the_specs():
    faults = spec_table("Fault bits")
    assert {1 << b: n for b, n in faults.items()} == p.FAULT_NAMES
    assert [getattr(p, f"FAULT_{n}") for n in faults.values()] == [1 << b for b in faults]
    flags = spec_table("Waypoint flags")
    assert [getattr(p, f"WP_{n}") for n in flags.values()] == [1 << b for b in flags]
    modes = dict((int(c), n) for c, n in re.findall(
        r"(\d) ([A-Z]+)", SPEC[SPEC.index("`mode`:"):].splitlines()[0]))
    assert modes == p.MODE_NAMES
    assert [getattr(p, f"MODE_{n}") for n in modes.values()] == list(modes)
    section = SPEC[SPEC.index("### ERROR codes"):SPEC.index("## Control")]
    codes = {int(c): n for c, n in re.findall(r"(\d) ([A-Z_]{4,})", section)}
    assert codes == p.ERROR_NAMES and len(codes) == 7
    assert [getattr(p, f"ERR_{n}") for n in codes.values()] == list(codes)


def test_config_defaults_are_the_specs_and_unset_fields_are_zero_on_the_wire():
    assert "watchdog 500 ms; state every 10 ms" in SPEC
    assert p.Config().body() == struct.pack("<HH", 500, 10)
    for cls in (p.Ping, p.Pong, p.StateReport, p.Error):
        body = cls().body()
        assert body == bytes(len(body)), cls.__name__
    assert p.Waypoint(7, (0.0,) * 6).flags == 0  # cubic, no reset, not an end
    assert p.Waypoints([p.Waypoint(7, (0.0,) * 6)]).body()[-1] == 0


@dataclass
class _Blob:
    """A message of any body length, to reach the frame-size limits."""

    TYPE: ClassVar[int] = 0x7E
    data: bytes = b""

    def body(self) -> bytes:
        return self.data


def _raw(type_: int, body: bytes, version: int = p.VERSION) -> bytes:
    head = struct.pack("<BBH", version, type_, 1) + body
    return head + struct.pack("<I", p.crc32(head))


def test_size_limits_one_byte_either_side():
    assert p.MAX_BODY == p.MAX_RAW - 8 == 484
    assert len(p.encode_raw(_Blob(bytes(p.MAX_BODY)), 0)) == p.MAX_RAW
    with pytest.raises(ValueError, match="exceeds 484"):
        p.encode_raw(_Blob(bytes(p.MAX_BODY + 1)), 0)
    # a raw frame of exactly MAX_RAW passes the size check (then fails on its unknown type)
    with pytest.raises(p.FrameError) as exc:
        p.decode_raw(_raw(0x7E, bytes(p.MAX_BODY)))
    assert exc.value.kind == "type"
    with pytest.raises(p.FrameError) as exc:
        p.decode_raw(_raw(0x7E, bytes(p.MAX_BODY + 1)))
    assert exc.value.kind == "oversize"
    # on the wire: MAX_WIRE bytes with the delimiter, not one more
    wire_ok = bytes([0xFF]) * (p.MAX_WIRE - 1)
    with pytest.raises(p.FrameError) as exc:
        p.decode_frame(wire_ok)
    assert exc.value.kind != "oversize"
    with pytest.raises(p.FrameError) as exc:
        p.decode_frame(wire_ok + b"\x01")
    assert exc.value.kind == "oversize"


def test_every_other_version_is_refused():
    for version in (0, 2, 255):
        with pytest.raises(p.FrameError) as exc:
            p.decode_raw(_raw(p.Ping.TYPE, bytes(8), version))
        assert exc.value.kind == "version"
    assert p.decode_raw(_raw(p.Ping.TYPE, bytes(8))).msg == p.Ping(0)


def test_cobs_refuses_a_zero_code_and_names_a_block_that_runs_past_the_end():
    with pytest.raises(p.FrameError, match="zero byte at 0"):
        p.cobs_decode(b"\x00\x01")
    with pytest.raises(p.FrameError, match="zero byte at 2"):
        p.cobs_decode(b"\x02\x07\x00")
    with pytest.raises(p.FrameError, match="block of 4 bytes runs past the end"):
        p.cobs_decode(b"\x05\x01\x02")


@pytest.mark.parametrize("n", [5, 7])
def test_a_waypoint_or_limits_without_six_joints_is_refused(n):
    with pytest.raises(ValueError, match=f"needs 6 positions, got {n}"):
        p.Waypoints([p.Waypoint(1, (0.0,) * n)]).body()
    with pytest.raises(ValueError, match=f"needs 6 joints, got {n}"):
        p.Limits([p.JointLimits(-1, 1, 1, 1)] * n).body()


def test_waypoints_length_error_names_the_length_it_needs():
    with pytest.raises(p.FrameError, match="count 2 needs 67 bytes, got 34"):
        p.Waypoints.parse(bytes([2]) + bytes(33))


@pytest.mark.parametrize("lo, hi, v, a, ok", [
    (0.5, 0.5, 1.0, 1.0, True),      # min == max: a joint held in place is allowed
    (0.6, 0.5, 1.0, 1.0, False),     # min > max
    (0.0, 1.0, -1.0, 1.0, False),    # negative velocity
    (0.0, 1.0, 0.0, 1.0, False),
    (0.0, 1.0, 1.0, -1.0, False),    # negative acceleration
    (0.0, 1.0, 1.0, 0.0, False),
])
def test_limits_rules_from_the_spec(lo, hi, v, a, ok):
    body = struct.pack("<4f", lo, hi, v, a) * 6
    if ok:
        assert p.Limits.parse(body).joints[0].min_rad == lo
    else:
        with pytest.raises(p.FrameError, match="min<=max, vel>0, acc>0"):
            p.Limits.parse(body)


def test_the_stream_decoder_counts_frames_and_errors():
    dec = p.StreamDecoder()
    wire = b"".join(p.encode_frame(p.Ping(k), k) for k in range(3))
    assert len(dec.feed(wire + b"\x05\x01\x00")) == 3
    assert dec.frames == 3 and dec.errors == {"cobs": 1}



def test_fault_names_for_the_status_line():
    assert p.faults_str(0) == "none"
    assert p.faults_str(p.FAULT_WATCHDOG | p.FAULT_RX_ERROR) == "WATCHDOG|RX_ERROR"


def test_waypoints_count_and_length_rules():
    with pytest.raises(ValueError, match="carries 1..14 points, got 0"):
        p.Waypoints([]).body()
    with pytest.raises(ValueError, match="got 15"):
        p.Waypoints([p.Waypoint(k, (0.0,) * 6) for k in range(15)]).body()
    body = p.Waypoints([p.Waypoint(1, (0.0,) * 6)]).body()
    with pytest.raises(p.FrameError, match="count 1 needs 34 bytes, got 35"):
        p.Waypoints.parse(body + b"\x00")  # a byte more than the count says


def test_oversize_wire_frame_says_its_size():
    with pytest.raises(p.FrameError, match="497 wire bytes > 496"):
        p.decode_frame(bytes([0xFF]) * 496)


def test_the_shortest_frame_is_eight_bytes():
    assert p.decode_raw(_raw(p.Hold.TYPE, b"")).msg == p.Hold()  # header and crc, no body
    with pytest.raises(p.FrameError) as exc:
        p.decode_raw(_raw(p.Hold.TYPE, b"")[1:])
    assert exc.value.kind == "short"
