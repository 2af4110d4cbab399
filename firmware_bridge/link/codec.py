"""Host side of the M7 link codec (mcu/PROTOCOL.md, version 1).

Pure functions and small dataclasses, no I/O: COBS framing, CRC-32/ISO-HDLC, one dataclass per
message, `encode_frame` / `decode_frame` for one frame and `StreamDecoder` for a byte stream
that may carry garbage. The C codec (mcu/core/evla_proto.c) is checked against the same test
vectors (firmware_bridge/vectors/protocol_v1.json).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import ClassVar, Union

import numpy as np

VERSION = 1
N_JOINTS = 6
MAX_RAW = 492  # header + body + crc
MAX_BODY = MAX_RAW - 8
MAX_WIRE = 496  # COBS(raw) + 0x00: one RPMsg payload
MAX_WAYPOINTS_PER_FRAME = 14
WAYPOINT_SIZE = 8 + 4 * N_JOINTS + 1

# waypoint flags
WP_LINEAR = 0x01
WP_RESET = 0x02
WP_END = 0x04

# fault bits (STATE.faults)
FAULT_WATCHDOG = 1 << 0
FAULT_UNDERRUN = 1 << 1
FAULT_QUEUE_OVERFLOW = 1 << 2
FAULT_SERVO_TIMEOUT = 1 << 3
FAULT_LIMIT_CLAMPED = 1 << 4
FAULT_RX_ERROR = 1 << 5
FAULT_SERVO_ERROR = 1 << 6  # overload/overheat/overcurrent or silent servos: held until ENABLE
FAULT_NAMES = {
    FAULT_WATCHDOG: "WATCHDOG", FAULT_UNDERRUN: "UNDERRUN",
    FAULT_QUEUE_OVERFLOW: "QUEUE_OVERFLOW", FAULT_SERVO_TIMEOUT: "SERVO_TIMEOUT",
    FAULT_LIMIT_CLAMPED: "LIMIT_CLAMPED", FAULT_RX_ERROR: "RX_ERROR",
    FAULT_SERVO_ERROR: "SERVO_ERROR",
}

MODE_DISABLED, MODE_RUNNING, MODE_HOLDING = 0, 1, 2
MODE_NAMES = {MODE_DISABLED: "DISABLED", MODE_RUNNING: "RUNNING", MODE_HOLDING: "HOLDING"}

# ERROR codes
ERR_UNKNOWN_TYPE, ERR_BAD_LENGTH, ERR_BAD_VERSION, ERR_NOT_ENABLED = 1, 2, 3, 4
ERR_BAD_VALUE, ERR_WATCHDOG, ERR_QUEUE_FULL = 5, 6, 7
ERROR_NAMES = {1: "UNKNOWN_TYPE", 2: "BAD_LENGTH", 3: "BAD_VERSION", 4: "NOT_ENABLED",
               5: "BAD_VALUE", 6: "WATCHDOG", 7: "QUEUE_FULL"}


def faults_str(faults: int) -> str:
    names = [n for bit, n in FAULT_NAMES.items() if faults & bit]
    return "|".join(names) if names else "none"


class FrameError(ValueError):
    """A frame that does not decode; ``kind`` is one of cobs, crc, short, oversize, version,
    type, length, value (the same names the C decoder uses)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# --------------------------------------------------------------------------------------- COBS

def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_idx = 0
    code = 1
    for b in data:
        if b == 0:
            out[code_idx] = code
            code_idx = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_idx] = code
                code_idx = len(out)
                out.append(0)
                code = 1
    out[code_idx] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("cobs", f"zero byte at {i}")
        i += 1
        end = i + code - 1
        if end > n:
            raise FrameError("cobs", f"block of {code - 1} bytes runs past the end")
        chunk = data[i:end]
        if 0 in chunk:
            raise FrameError("cobs", "zero byte inside a block")
        out += chunk
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------ messages

def _f32(x: float) -> float:
    return float(np.float32(x))


def _fmt_f(x: float) -> str:
    # %.9g round-trips binary32 and C's printf("%.9g") prints the same string
    return format(_f32(x), ".9g")


def _fmt_vec(v) -> str:
    return ",".join(_fmt_f(x) for x in v)


def _check_finite(name: str, values) -> None:
    for x in values:
        if not math.isfinite(x):
            raise FrameError("value", f"{name} has a non-finite value {x}")


@dataclass
class Ping:
    TYPE: ClassVar[int] = 0x01
    t_host_ns: int = 0

    def body(self) -> bytes:
        return struct.pack("<Q", self.t_host_ns)

    @classmethod
    def parse(cls, b: bytes) -> "Ping":
        _need(b, 8)
        return cls(*struct.unpack("<Q", b))

    def canonical(self) -> str:
        return f"t_host_ns={self.t_host_ns}"


@dataclass
class Waypoint:
    t_us: int
    positions: tuple[float, ...]  # 6 joint positions, rad
    flags: int = 0


@dataclass
class Waypoints:
    TYPE: ClassVar[int] = 0x02
    points: list[Waypoint] = field(default_factory=list)

    def body(self) -> bytes:
        if not 1 <= len(self.points) <= MAX_WAYPOINTS_PER_FRAME:
            raise ValueError(f"WAYPOINTS carries 1..{MAX_WAYPOINTS_PER_FRAME} points, "
                             f"got {len(self.points)}")
        out = bytearray([len(self.points)])
        for p in self.points:
            if len(p.positions) != N_JOINTS:
                raise ValueError(f"waypoint needs {N_JOINTS} positions, got {len(p.positions)}")
            _check_finite("waypoint positions", p.positions)
            out += struct.pack("<Q6fB", p.t_us, *p.positions, p.flags)
        return bytes(out)

    @classmethod
    def parse(cls, b: bytes) -> "Waypoints":
        if not b:
            raise FrameError("length", "WAYPOINTS body is empty")
        n = b[0]
        if len(b) != 1 + n * WAYPOINT_SIZE:
            raise FrameError("length", f"WAYPOINTS with count {n} needs "
                                       f"{1 + n * WAYPOINT_SIZE} bytes, got {len(b)}")
        if not 1 <= n <= MAX_WAYPOINTS_PER_FRAME:
            raise FrameError("value", f"WAYPOINTS count {n} not in 1..{MAX_WAYPOINTS_PER_FRAME}")
        pts = []
        for i in range(n):
            t, *pos, flags = struct.unpack_from("<Q6fB", b, 1 + i * WAYPOINT_SIZE)
            _check_finite("waypoint positions", pos)
            pts.append(Waypoint(t, tuple(pos), flags))
        return cls(pts)

    def canonical(self) -> str:
        parts = [f"count={len(self.points)}"]
        for p in self.points:
            parts.append(f"[t_us={p.t_us} pos={_fmt_vec(p.positions)} flags={p.flags}]")
        return " ".join(parts)


@dataclass
class _Empty:
    def body(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, b: bytes):
        _need(b, 0)
        return cls()

    def canonical(self) -> str:
        return ""


@dataclass
class Hold(_Empty):
    TYPE: ClassVar[int] = 0x03


@dataclass
class Enable(_Empty):
    TYPE: ClassVar[int] = 0x04


@dataclass
class Disable(_Empty):
    TYPE: ClassVar[int] = 0x05


@dataclass
class GetState(_Empty):
    TYPE: ClassVar[int] = 0x08


@dataclass
class JointLimits:
    min_rad: float
    max_rad: float
    max_vel_rad_s: float
    max_acc_rad_s2: float


@dataclass
class Limits:
    TYPE: ClassVar[int] = 0x06
    joints: list[JointLimits] = field(default_factory=list)

    def body(self) -> bytes:
        if len(self.joints) != N_JOINTS:
            raise ValueError(f"LIMITS needs {N_JOINTS} joints, got {len(self.joints)}")
        out = bytearray()
        for j in self.joints:
            out += struct.pack("<4f", j.min_rad, j.max_rad, j.max_vel_rad_s, j.max_acc_rad_s2)
        return bytes(out)

    @classmethod
    def parse(cls, b: bytes) -> "Limits":
        _need(b, 16 * N_JOINTS)
        joints = []
        for i in range(N_JOINTS):
            lo, hi, v, a = struct.unpack_from("<4f", b, 16 * i)
            _check_finite("limits", (lo, hi, v, a))
            if not (lo <= hi and v > 0 and a > 0):
                raise FrameError("value", f"joint {i} limits need min<=max, vel>0, acc>0: "
                                          f"got {lo}, {hi}, {v}, {a}")
            joints.append(JointLimits(lo, hi, v, a))
        return cls(joints)

    def canonical(self) -> str:
        return " ".join(f"[{_fmt_f(j.min_rad)},{_fmt_f(j.max_rad)},{_fmt_f(j.max_vel_rad_s)},"
                        f"{_fmt_f(j.max_acc_rad_s2)}]" for j in self.joints)


@dataclass
class Config:
    TYPE: ClassVar[int] = 0x07
    watchdog_ms: int = 500
    state_period_ms: int = 10

    def body(self) -> bytes:
        return struct.pack("<HH", self.watchdog_ms, self.state_period_ms)

    @classmethod
    def parse(cls, b: bytes) -> "Config":
        _need(b, 4)
        return cls(*struct.unpack("<HH", b))

    def canonical(self) -> str:
        return f"watchdog_ms={self.watchdog_ms} state_period_ms={self.state_period_ms}"


@dataclass
class Pong:
    TYPE: ClassVar[int] = 0x81
    t_host_ns: int = 0
    t_mcu_us: int = 0

    def body(self) -> bytes:
        return struct.pack("<QQ", self.t_host_ns, self.t_mcu_us)

    @classmethod
    def parse(cls, b: bytes) -> "Pong":
        _need(b, 16)
        return cls(*struct.unpack("<QQ", b))

    def canonical(self) -> str:
        return f"t_host_ns={self.t_host_ns} t_mcu_us={self.t_mcu_us}"


_STATE_FMT = "<Q6f6fHHIIBBIIIIII"
assert struct.calcsize(_STATE_FMT) == 94


@dataclass
class StateReport:
    TYPE: ClassVar[int] = 0x82
    NAME: ClassVar[str] = "STATE"  # the packet's name in mcu/PROTOCOL.md
    t_mcu_us: int = 0
    measured: tuple[float, ...] = (0.0,) * N_JOINTS
    commanded: tuple[float, ...] = (0.0,) * N_JOINTS
    queue_depth: int = 0
    last_seq: int = 0
    underruns: int = 0
    faults: int = 0
    mode: int = 0
    late: int = 0
    duplicates: int = 0
    rx_frames: int = 0
    rx_errors: int = 0
    seq_gaps: int = 0
    ticks: int = 0

    def body(self) -> bytes:
        return struct.pack(_STATE_FMT, self.t_mcu_us, *self.measured, *self.commanded,
                           self.queue_depth, self.last_seq, self.underruns, self.faults,
                           self.mode, 0, self.late, self.duplicates, self.rx_frames,
                           self.rx_errors, self.seq_gaps, self.ticks)

    @classmethod
    def parse(cls, b: bytes) -> "StateReport":
        _need(b, 94)
        v = struct.unpack(_STATE_FMT, b)
        return cls(v[0], tuple(v[1:7]), tuple(v[7:13]), v[13], v[14], v[15], v[16], v[17],
                   v[19], v[20], v[21], v[22], v[23], v[24])

    def canonical(self) -> str:
        return (f"t_mcu_us={self.t_mcu_us} measured={_fmt_vec(self.measured)} "
                f"commanded={_fmt_vec(self.commanded)} queue_depth={self.queue_depth} "
                f"last_seq={self.last_seq} underruns={self.underruns} faults={self.faults} "
                f"mode={self.mode} late={self.late} duplicates={self.duplicates} "
                f"rx_frames={self.rx_frames} rx_errors={self.rx_errors} "
                f"seq_gaps={self.seq_gaps} ticks={self.ticks}")


@dataclass
class Error:
    TYPE: ClassVar[int] = 0x83
    code: int = 0
    ref_type: int = 0
    ref_seq: int = 0
    detail: int = 0

    def body(self) -> bytes:
        return struct.pack("<BBHI", self.code, self.ref_type, self.ref_seq, self.detail)

    @classmethod
    def parse(cls, b: bytes) -> "Error":
        _need(b, 8)
        return cls(*struct.unpack("<BBHI", b))

    def canonical(self) -> str:
        return (f"code={self.code} ref_type={self.ref_type} ref_seq={self.ref_seq} "
                f"detail={self.detail}")


LinkMessage = Union[Ping, Waypoints, Hold, Enable, Disable, Limits, Config, GetState, Pong, StateReport,
                Error]
MESSAGE_TYPES: dict[int, type] = {
    cls.TYPE: cls for cls in (Ping, Waypoints, Hold, Enable, Disable, Limits, Config, GetState,
                              Pong, StateReport, Error)
}
TYPE_NAMES = {t: getattr(cls, "NAME", cls.__name__.upper()) for t, cls in MESSAGE_TYPES.items()}
TYPE_NAMES[0x08] = "GET_STATE"


def _need(b: bytes, n: int) -> None:
    if len(b) != n:
        raise FrameError("length", f"body needs {n} bytes, got {len(b)}")


@dataclass
class LinkFrame:
    seq: int
    msg: LinkMessage

    def canonical(self) -> str:
        """One line naming every decoded field; the C codec prints the identical string."""
        body = self.msg.canonical()
        name = TYPE_NAMES[self.msg.TYPE]
        return f"{name} seq={self.seq}" + (f" {body}" if body else "")


# --------------------------------------------------------------------------------- frame codec

def encode_raw(msg: LinkMessage, seq: int) -> bytes:
    body = msg.body()
    if len(body) > MAX_BODY:
        raise ValueError(f"{type(msg).__name__} body of {len(body)} bytes exceeds {MAX_BODY}")
    head = struct.pack("<BBH", VERSION, msg.TYPE, seq & 0xFFFF) + body
    return head + struct.pack("<I", crc32(head))


def encode_frame(msg: LinkMessage, seq: int) -> bytes:
    """Wire bytes of one frame: COBS(header|body|crc) followed by the 0x00 delimiter."""
    return cobs_encode(encode_raw(msg, seq)) + b"\x00"


def decode_raw(raw: bytes) -> LinkFrame:
    if len(raw) < 8:
        raise FrameError("short", f"{len(raw)} bytes, a frame has at least 8")
    if len(raw) > MAX_RAW:
        raise FrameError("oversize", f"{len(raw)} bytes > {MAX_RAW}")
    (crc,) = struct.unpack_from("<I", raw, len(raw) - 4)
    if crc32(raw[:-4]) != crc:
        raise FrameError("crc")
    version, mtype, seq = struct.unpack_from("<BBH", raw)
    if version != VERSION:
        raise FrameError("version", f"version {version}, this codec speaks {VERSION}")
    cls = MESSAGE_TYPES.get(mtype)
    if cls is None:
        raise FrameError("type", f"unknown message type 0x{mtype:02x}")
    return LinkFrame(seq, cls.parse(raw[4:-4]))


def decode_frame(encoded: bytes) -> LinkFrame:
    """Decode the bytes of one frame between delimiters (COBS-encoded, without the 0x00)."""
    if len(encoded) + 1 > MAX_WIRE:
        raise FrameError("oversize", f"{len(encoded) + 1} wire bytes > {MAX_WIRE}")
    return decode_raw(cobs_decode(encoded))


class StreamDecoder:
    """Split a byte stream on 0x00 and decode each frame; survives any input.

    ``feed(data)`` returns the decoded frames; errors are counted by kind in ``errors``
    (an oversize frame is discarded up to its next delimiter, which is where we resynchronise).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.frames = 0
        self.errors: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def feed(self, data: bytes) -> list[LinkFrame]:
        out: list[LinkFrame] = []
        start = 0
        while True:
            z = data.find(b"\x00", start)
            if z < 0:
                if not self._discarding:
                    self._buf += data[start:]
                    if len(self._buf) >= MAX_WIRE:  # no room left for the delimiter
                        self._buf.clear()
                        self._discarding = True
                        self._count("oversize")
                break
            if self._discarding:
                self._discarding = False
            else:
                self._buf += data[start:z]
                if self._buf:
                    try:
                        out.append(decode_frame(bytes(self._buf)))
                        self.frames += 1
                    except FrameError as exc:
                        self._count(exc.kind)
            self._buf.clear()
            start = z + 1
        return out
