"""Generate firmware_bridge/vectors/protocol_v1.json, the test vectors both codecs read.

    python -m edgevla.firmware_bridge.link.vectors [--check]

Each valid vector holds the message fields, the raw and wire bytes (hex) and the canonical
one-line rendering of the decoded frame; the C test (mcu/tests/test_vectors.c) decodes
`wire_hex`, prints its own canonical line, re-encodes and compares both. Invalid vectors name
the error kind a decoder must report. Stream vectors are byte streams with garbage between
frames and the frames a decoder must recover. `--check` fails if the file is out of date.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from dataclasses import asdict
from pathlib import Path

from edgevla.firmware_bridge.link import codec as p

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "protocol_v1.json"


def message_from_fields(type_name: str, fields: dict) -> p.LinkMessage:
    """Build a message from the JSON fields of a vector (names as in the dataclasses)."""
    cls = {v: p.MESSAGE_TYPES[k] for k, v in p.TYPE_NAMES.items()}[type_name]
    if cls is p.Waypoints:
        return p.Waypoints([p.Waypoint(w["t_us"], tuple(w["positions"]), w["flags"])
                            for w in fields["points"]])
    if cls is p.Limits:
        return p.Limits([p.JointLimits(**j) for j in fields["joints"]])
    if cls is p.StateReport:
        f = dict(fields)
        f["measured"] = tuple(f["measured"])
        f["commanded"] = tuple(f["commanded"])
        return p.StateReport(**f)
    return cls(**fields)


def _f32s(xs):
    return tuple(float(struct.unpack("<f", struct.pack("<f", x))[0]) for x in xs)


def _valid_messages() -> list[tuple[str, int, p.LinkMessage]]:
    pos_a = _f32s([0.0, -0.5, 1.25, -3.1415927, 0.001, 2.0])
    pos_b = _f32s([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    many = [p.Waypoint(0x0102030405060708 + 10_000 * i,
                       _f32s([0.11 * (i + 1), -0.21, 0.31, -0.41, 0.51, -0.61 - i * 0.01]), 7)
            for i in range(p.MAX_WAYPOINTS_PER_FRAME)]
    limits = p.Limits([p.JointLimits(*_f32s([-math.pi + 0.1 * j, math.pi - 0.1 * j, 4.0, 40.0]))
                       for j in range(p.N_JOINTS)])
    return [
        ("ping", 1, p.Ping(123_456_789_012)),
        ("ping_seq_wrap", 65535, p.Ping(0)),
        ("ping_max_time", 0, p.Ping(2**64 - 1)),
        ("waypoints_one", 2, p.Waypoints([p.Waypoint(1_000_000, pos_a, 0)])),
        ("waypoints_two_linear_end", 3,
         p.Waypoints([p.Waypoint(2_000_000, pos_a, p.WP_LINEAR),
                      p.Waypoint(2_010_000, pos_b, p.WP_LINEAR | p.WP_END)])),
        ("waypoints_max_batch_long_cobs_runs", 4, p.Waypoints(many)),
        ("hold", 5, p.Hold()),
        ("enable", 6, p.Enable()),
        ("disable", 7, p.Disable()),
        ("get_state", 8, p.GetState()),
        ("limits", 9, limits),
        ("config", 10, p.Config(250, 5)),
        ("config_watchdog_off", 11, p.Config(0, 0)),
        ("pong", 12, p.Pong(123_456_789_012, 42_000_001)),
        ("state", 13, p.StateReport(t_mcu_us=5_000_000, measured=pos_a, commanded=pos_b,
                              queue_depth=17, last_seq=65534, underruns=2,
                              faults=p.FAULT_WATCHDOG | p.FAULT_RX_ERROR, mode=p.MODE_HOLDING,
                              late=3, duplicates=4, rx_frames=100_000, rx_errors=5,
                              seq_gaps=6, ticks=5000)),
        ("error", 14, p.Error(p.ERR_NOT_ENABLED, p.Waypoints.TYPE, 3, 0xDEADBEEF)),
    ]


def _wire(raw: bytes) -> bytes:
    return p.cobs_encode(raw) + b"\x00"


def _raw_with_crc(head_and_body: bytes) -> bytes:
    return head_and_body + struct.pack("<I", p.crc32(head_and_body))


def _invalid() -> list[dict]:
    good = p.encode_raw(p.Ping(99), 1)
    flipped = bytearray(good)
    flipped[5] ^= 0x10
    wp_nan = struct.pack("<BBH", 1, p.Waypoints.TYPE, 2) + bytes([1]) + struct.pack(
        "<Q6fB", 1000, 0.0, float("nan"), 0.0, 0.0, 0.0, 0.0, 0)
    wp_zero = struct.pack("<BBH", 1, p.Waypoints.TYPE, 2) + bytes([0])
    lim_bad = struct.pack("<BBH", 1, p.Limits.TYPE, 3) + b"".join(
        struct.pack("<4f", 1.0, -1.0, 1.0, 1.0) for _ in range(6))
    cases = [
        ("crc_bit_flip", _wire(bytes(flipped)), "crc"),
        ("crc_truncated", _wire(good[:-1]), "crc"),
        ("bad_version", _wire(_raw_with_crc(struct.pack("<BBHQ", 2, p.Ping.TYPE, 1, 99))),
         "version"),
        ("unknown_type", _wire(_raw_with_crc(struct.pack("<BBH", 1, 0x42, 1))), "type"),
        ("ping_short_body", _wire(_raw_with_crc(struct.pack("<BBH", 1, p.Ping.TYPE, 1) +
                                                b"\x01" * 7)), "length"),
        ("hold_with_body", _wire(_raw_with_crc(struct.pack("<BBHB", 1, p.Hold.TYPE, 1, 9))),
         "length"),
        ("waypoints_count_zero", _wire(_raw_with_crc(wp_zero)), "value"),
        ("waypoints_count_mismatch", _wire(_raw_with_crc(wp_zero[:-1] + bytes([2]) +
                                                         bytes(33))), "length"),
        ("waypoints_nan", _wire(_raw_with_crc(wp_nan)), "value"),
        ("limits_min_above_max", _wire(_raw_with_crc(lim_bad)), "value"),
        ("short_frame", _wire(b"\x01\x01\x00"), "short"),
        ("cobs_block_past_end", bytes([0x09, 1, 2, 3]) + b"\x00", "cobs"),
        ("oversize_raw", _wire(_raw_with_crc(struct.pack("<BBH", 1, p.Ping.TYPE, 1) +
                                             bytes(range(1, 256)) * 2)), "oversize"),
    ]
    return [{"name": n, "wire_hex": w.hex(), "error": e} for n, w, e in cases]


def _streams() -> list[dict]:
    f1 = p.encode_frame(p.Ping(1), 1)
    f2 = p.encode_frame(p.Hold(), 2)
    f3 = p.encode_frame(p.GetState(), 3)
    corrupt = bytearray(p.encode_frame(p.Enable(), 4))
    corrupt[2] ^= 0x01
    streams = [
        ("garbage_between_frames", b"\x13\x37\xff" + b"\x00" + f1 + b"\x05\x05" + b"\x00\x00" +
         f2 + bytes(corrupt) + f3),
        ("oversize_then_frame", bytes([0x41]) * 700 + b"\x00" + f1),
        ("truncated_frame_then_frame", f2[:3] + b"\x00" + f3),
        ("frame_without_leading_delimiter_after_noise", b"\x22" * 10 + f1 + f2),
    ]
    out = []
    for name, data in streams:
        dec = p.StreamDecoder()
        frames = dec.feed(data)
        out.append({"name": name, "stream_hex": data.hex(),
                    "frames": [f.canonical() for f in frames],
                    "errors": sum(dec.errors.values())})
    return out


def build() -> dict:
    valid = []
    for name, seq, msg in _valid_messages():
        raw = p.encode_raw(msg, seq)
        wire = p.encode_frame(msg, seq)
        fields = asdict(msg)
        valid.append({"name": name, "type": p.TYPE_NAMES[msg.TYPE], "seq": seq,
                      "fields": fields, "raw_hex": raw.hex(), "wire_hex": wire.hex(),
                      "canonical": p.LinkFrame(seq, msg).canonical()})
    cobs = []
    for data in (b"", b"\x00", b"\x00\x00", b"\x11\x22\x00\x33", b"\x11\x00", bytes(range(1, 255)),
                 bytes(range(1, 256)), bytes(range(0, 256)), b"\x01" * 600):
        cobs.append({"decoded_hex": data.hex(), "encoded_hex": p.cobs_encode(data).hex()})
    return {
        "protocol": "edgevla M7 link, mcu/PROTOCOL.md",
        "version": p.VERSION,
        "crc": "CRC-32/ISO-HDLC (zlib): check('123456789') = 0xcbf43926",
        "crc_check": {"data_hex": b"123456789".hex(), "crc": p.crc32(b"123456789")},
        "valid": valid,
        "invalid": _invalid(),
        "streams": _streams(),
        "cobs": cobs,
    }


def render() -> str:
    # one vector per line keeps the file diffable and trivially scannable from C
    data = build()
    lines = ["{"]
    keys = list(data)
    for i, k in enumerate(keys):
        v = data[k]
        comma = "," if i < len(keys) - 1 else ""
        if isinstance(v, list):
            lines.append(f'  "{k}": [')
            for j, item in enumerate(v):
                c = "," if j < len(v) - 1 else ""
                lines.append("    " + json.dumps(item, separators=(", ", ": ")) + c)
            lines.append("  ]" + comma)
        else:
            lines.append(f'  "{k}": {json.dumps(v)}{comma}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if VECTORS_PATH.read_text() != text:
            print(f"{VECTORS_PATH} is out of date: regenerate with "
                  "python -m edgevla.firmware_bridge.link.vectors", file=sys.stderr)
            return 1
        return 0
    VECTORS_PATH.parent.mkdir(exist_ok=True)
    VECTORS_PATH.write_text(text)
    print(f"wrote {VECTORS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
