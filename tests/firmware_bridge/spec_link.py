"""A second encoder of the M7 link protocol, written from mcu/PROTOCOL.md alone.

It shares no code with `edgevla.firmware_bridge.link.codec` (the codec under test): frames are
packed with `struct` from the spec's tables, the CRC is the bitwise CRC-32/ISO-HDLC of the spec,
COBS follows Cheshire & Baker's reference algorithm, and every canonical line is typed here. It
writes `firmware_bridge/vectors/protocol_v1_spec.json` in the shared vector format, which the
Python codec (tests/firmware_bridge/test_spec_vectors.py) and the C codec (mcu/tests/
test_vectors.c) must both reproduce.

    python tests/firmware_bridge/spec_link.py          # rewrite the file
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

SPEC_VECTORS = Path(__file__).resolve().parents[2] / "firmware_bridge" / "vectors" / \
    "protocol_v1_spec.json"


def crc32_bitwise(data: bytes) -> int:
    """CRC-32/ISO-HDLC bit by bit: reflected polynomial 0xEDB88320, init and xorout ~0."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def cobs(data: bytes) -> bytes:
    """Cheshire & Baker's StuffData: a code byte per block of up to 254 non-zero bytes."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:
            out += b"\xff" + block
            block.clear()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def frame(type_: int, seq: int, body: bytes, version: int = 1) -> tuple[bytes, bytes]:
    """(raw, wire): header | body | crc32 LE, then COBS and the 0x00 delimiter."""
    head = struct.pack("<BBH", version, type_, seq) + body
    raw = head + struct.pack("<I", crc32_bitwise(head))
    return raw, cobs(raw) + b"\x00"


def f32s(*xs: float) -> bytes:
    return struct.pack("<6f", *xs)


POS_A = (0.0, 0.5, -0.5, 1.25, -2.0, 3.0)  # exact in binary32: "%.9g" prints them as typed
POS_B = (0.25, -0.25, 0.75, -0.75, 1.5, -1.5)


def _valid() -> list[tuple[str, int, int, bytes, str]]:
    """(name, type, seq, body, canonical) from the spec's message table."""
    state = (struct.pack("<Q", 1_000_000) + f32s(*POS_A) + f32s(*POS_B)
             + struct.pack("<HHII", 3, 41, 2, 0b100001) + struct.pack("<BB", 1, 0)
             + struct.pack("<IIIIII", 4, 5, 600, 7, 8, 900))
    return [
        ("spec_ping", 0x01, 1, struct.pack("<Q", 1), "PING seq=1 t_host_ns=1"),
        ("spec_ping_extremes", 0x01, 65535, struct.pack("<Q", 2**64 - 1),
         "PING seq=65535 t_host_ns=18446744073709551615"),
        ("spec_waypoints", 0x02, 7,
         struct.pack("<B", 2) + struct.pack("<Q", 1000) + f32s(*POS_A) + b"\x00"
         + struct.pack("<Q", 2000) + f32s(*POS_B) + b"\x04",
         "WAYPOINTS seq=7 count=2 [t_us=1000 pos=0,0.5,-0.5,1.25,-2,3 flags=0] "
         "[t_us=2000 pos=0.25,-0.25,0.75,-0.75,1.5,-1.5 flags=4]"),
        ("spec_hold", 0x03, 2, b"", "HOLD seq=2"),
        ("spec_enable", 0x04, 3, b"", "ENABLE seq=3"),
        ("spec_disable", 0x05, 4, b"", "DISABLE seq=4"),
        ("spec_limits", 0x06, 8, struct.pack("<4f", -2.0, 2.0, 3.0, 30.0) * 6,
         "LIMITS seq=8" + " [-2,2,3,30]" * 6),
        ("spec_config", 0x07, 6, struct.pack("<HH", 300, 10),
         "CONFIG seq=6 watchdog_ms=300 state_period_ms=10"),
        ("spec_get_state", 0x08, 5, b"", "GET_STATE seq=5"),
        ("spec_pong", 0x81, 9, struct.pack("<QQ", 5, 7), "PONG seq=9 t_host_ns=5 t_mcu_us=7"),
        ("spec_state", 0x82, 10, state,
         "STATE seq=10 t_mcu_us=1000000 measured=0,0.5,-0.5,1.25,-2,3 "
         "commanded=0.25,-0.25,0.75,-0.75,1.5,-1.5 queue_depth=3 last_seq=41 underruns=2 "
         "faults=33 mode=1 late=4 duplicates=5 rx_frames=600 rx_errors=7 seq_gaps=8 ticks=900"),
        ("spec_error", 0x83, 11, struct.pack("<BBHI", 2, 1, 7, 16),
         "ERROR seq=11 code=2 ref_type=1 ref_seq=7 detail=16"),
    ]


def _invalid() -> list[tuple[str, bytes, str]]:
    """(name, wire, error kind) for what the spec says a decoder rejects."""
    nan_waypoint = struct.pack("<B", 1) + struct.pack("<Q", 1000) + \
        struct.pack("<6f", 0.0, float("nan"), 0.0, 0.0, 0.0, 0.0) + b"\x00"
    _, crc_flipped = frame(0x01, 1, struct.pack("<Q", 1))
    crc_flipped = crc_flipped[:-2] + bytes([crc_flipped[-2] ^ 0x01]) + b"\x00"
    return [
        ("spec_version_2", frame(0x01, 1, struct.pack("<Q", 1), version=2)[1], "version"),
        ("spec_unknown_type", frame(0x09, 1, b"")[1], "type"),
        ("spec_ping_7_byte_body", frame(0x01, 1, b"\x01" * 7)[1], "length"),
        ("spec_get_state_with_body", frame(0x08, 1, b"\x01")[1], "length"),
        ("spec_waypoints_count_0", frame(0x02, 1, b"\x00")[1], "value"),
        ("spec_waypoint_nan", frame(0x02, 1, nan_waypoint)[1], "value"),
        ("spec_limits_zero_velocity",
         frame(0x06, 1, struct.pack("<4f", -1.0, 1.0, 0.0, 10.0) * 6)[1], "value"),
        ("spec_limits_min_above_max",
         frame(0x06, 1, struct.pack("<4f", 1.0, -1.0, 3.0, 10.0) * 6)[1], "value"),
        ("spec_crc_bit_flip", crc_flipped, "crc"),
        # a 0x00 inside a COBS block: the code byte 0x05 promises four non-zero bytes
        ("spec_cobs_zero_inside_block", bytes.fromhex("0501010001") + b"\x00", "cobs"),
        ("spec_short", cobs(b"\x01\x01\x01") + b"\x00", "short"),
    ]


# Cheshire & Baker's examples (also on Wikipedia's COBS page), the delimiter left off. Two of
# Wikipedia's ten (254 non-zero bytes, with and without a leading zero) are left out: there the
# page drops the final empty block that the paper's reference code writes.
COBS_EXAMPLES = [
    ("00", "0101"),
    ("0000", "010101"),
    ("001100", "01021101"),
    ("11220033", "0311220233"),
    ("11223344", "0511223344"),
    ("11000000", "0211010101"),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "0101"),
    (bytes(range(3, 256)).hex() + "0001", "fe" + bytes(range(3, 256)).hex() + "0201"),
]


def vectors_text() -> str:
    lines = ['{', '  "protocol": "edgevla M7 link, mcu/PROTOCOL.md: vectors from the spec, '
             'not from the codec (tests/firmware_bridge/spec_link.py)",', '  "version": 1,',
             '  "crc_check": {"data_hex": "313233343536373839", "crc": %d},'
             % crc32_bitwise(b"123456789"), '  "valid": [']
    valid = [_valid_line(*v) for v in _valid()]
    lines += [f"    {v}," for v in valid[:-1]] + [f"    {valid[-1]}", "  ],", '  "invalid": [']
    inv = [json.dumps({"name": n, "wire_hex": w.hex(), "error": e}) for n, w, e in _invalid()]
    lines += [f"    {v}," for v in inv[:-1]] + [f"    {inv[-1]}", "  ],", '  "streams": [']
    lines += [f"    {_stream_line()}", "  ],", '  "cobs": [']
    cob = [json.dumps({"decoded_hex": d, "encoded_hex": e}) for d, e in COBS_EXAMPLES]
    lines += [f"    {v}," for v in cob[:-1]] + [f"    {cob[-1]}", "  ]", "}"]
    return "\n".join(lines) + "\n"


def _valid_line(name: str, type_: int, seq: int, body: bytes, canonical: str) -> str:
    raw, wire = frame(type_, seq, body)
    return json.dumps({"name": name, "type": canonical.split()[0], "seq": seq,
                       "raw_hex": raw.hex(), "wire_hex": wire.hex(), "canonical": canonical})


def _stream_line() -> str:
    """Garbage (a COBS block cut short), then two frames: the decoder counts one error."""
    stream = bytes.fromhex("ff1337") + b"\x00" + frame(0x01, 1, struct.pack("<Q", 1))[1] \
        + frame(0x03, 2, b"")[1]
    return json.dumps({"name": "spec_garbage_then_frames", "stream_hex": stream.hex(),
                       "frames": ["PING seq=1 t_host_ns=1", "HOLD seq=2"], "errors": 1})


if __name__ == "__main__":
    SPEC_VECTORS.write_text(vectors_text())
    print(f"wrote {SPEC_VECTORS}")
