"""Feetech STS servo bus (SO-100 / SO-101 arms): codec and a bus-slave emulator.

Packets are ``FF FF ID LEN INSTR params CHK`` with ``LEN = len(params) + 2`` and
``CHK = ~(ID + LEN + INSTR + sum(params)) & 0xFF``; positions are u16 little-endian counts,
4096 counts per revolution, count 2048 = 0 rad (the project's joint convention).

`FeetechBusSim` plays the six servos behind the firmware's servo port (the host build exposes
it as a pty): it answers SYNC READ / READ of Present Position from ``read_positions_counts()``
and hands SYNC WRITE Goal Position to ``write_goals_counts(goals)``. The firmware's C driver
(mcu/core/evla_fw.c) is the bus master.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

COUNTS_PER_REV = 4096
CENTER_COUNTS = 2048
BROADCAST_ID = 0xFE

INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83

ADDR_TORQUE_ENABLE = 0x28
ADDR_GOAL_POSITION = 0x2A
ADDR_PRESENT_POSITION = 0x38


def rad_to_counts(rad) -> np.ndarray:
    """Radians of the servo shaft -> counts (rounded, clamped to 0..4095)."""
    c = CENTER_COUNTS + np.asarray(rad, dtype=np.float64) * (COUNTS_PER_REV / (2 * np.pi))
    return np.clip(np.round(c), 0, COUNTS_PER_REV - 1).astype(np.int64)


def counts_to_rad(counts) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    return ((c - CENTER_COUNTS) * (2 * np.pi / COUNTS_PER_REV)).astype(np.float32)


def checksum(body: bytes) -> int:
    return (~sum(body)) & 0xFF


@dataclass(frozen=True)
class Packet:
    id: int
    instr: int  # instruction, or the error byte of a status packet
    params: bytes

    def encode(self) -> bytes:
        if len(self.params) > 250:
            raise ValueError(f"Feetech packet params are at most 250 bytes, got {len(self.params)}")
        body = bytes([self.id, len(self.params) + 2, self.instr]) + self.params
        return b"\xff\xff" + body + bytes([checksum(body)])


def sync_write_u16(addr: int, ids: Sequence[int], values: Sequence[int]) -> bytes:
    params = bytearray([addr, 2])
    for i, v in zip(ids, values):
        v = int(v)
        if not 0 <= v <= 0xFFFF:
            raise ValueError(f"servo {i}: value {v} does not fit in u16")
        params += bytes([i, v & 0xFF, v >> 8])
    return Packet(BROADCAST_ID, INST_SYNC_WRITE, bytes(params)).encode()


def sync_read(addr: int, length: int, ids: Sequence[int]) -> bytes:
    return Packet(BROADCAST_ID, INST_SYNC_READ, bytes([addr, length, *ids])).encode()


def read(servo_id: int, addr: int, length: int) -> bytes:
    return Packet(servo_id, INST_READ, bytes([addr, length])).encode()


def status(servo_id: int, data: bytes = b"", error: int = 0) -> bytes:
    return Packet(servo_id, error, data).encode()


class PacketParser:
    """Streaming parser: feed bytes, get complete packets with valid checksums."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.bad_checksum = 0
        self.packets = 0

    def feed(self, data: bytes) -> Iterator[Packet]:
        self._buf += data
        buf = self._buf
        while True:
            start = buf.find(b"\xff\xff")
            if start < 0:
                del buf[:max(0, len(buf) - 1)]  # keep a lone trailing 0xFF
                return
            i = start + 2
            while i < len(buf) and buf[i] == 0xFF:  # extra 0xFF before the id
                i += 1
            if i + 2 > len(buf):
                del buf[:start]
                return
            length = buf[i + 1]
            if length < 2:
                del buf[:i]
                continue
            end = i + 2 + length  # id, len, then length bytes (instr, params, chk)
            if end > len(buf):
                del buf[:start]
                return
            body = bytes(buf[i:end - 1])
            chk = buf[end - 1]
            if checksum(body) == chk:
                self.packets += 1
                del buf[:end]
                yield Packet(body[0], body[2], body[3:])
            else:
                self.bad_checksum += 1
                del buf[:start + 1]


class _PtyMaster:
    """The master end of a pseudo-terminal, with the few pyserial calls the bus sim makes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, n: int) -> bytes:
        import select

        r, _, _ = select.select([self.fd], [], [], 0.05)
        return os.read(self.fd, max(n, 4096)) if r else b""

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)


class FeetechBusSim:
    """Emulate servos ``servo_ids`` on the bus at ``port_path`` (a pty/UART) in a thread.

    read_positions_counts() -> array of len(servo_ids) present positions (counts);
    write_goals_counts(goals) receives the array of goal positions (counts) after every
    SYNC WRITE (ids the packet did not mention keep their previous goal).
    ``error_bits[j]``: the error byte servo j puts in its status packets (0x20 overload, 0x04
    overheat); ``silent``: no servo answers (a cable pulled).

    `FeetechBusSim.on_pty` makes a new pseudo-terminal for a master that opens a serial device
    (the host firmware's ``--servo-device``): the sim holds the master end, ``device_path`` is
    the end to open. With ``pace`` the answers take the wire time of request and reply at
    ``baudrate`` (10 bits a byte, 8N1), as on a real bus.
    """

    @classmethod
    def on_pty(cls, servo_ids: Sequence[int], read_positions_counts: Callable[[], np.ndarray],
               write_goals_counts: Callable[[np.ndarray], None], *, baudrate: int = 1_000_000,
               pace: bool = True) -> "FeetechBusSim":
        master, slave = os.openpty()
        sim = cls(os.ttyname(slave), servo_ids, read_positions_counts, write_goals_counts,
                  baudrate=baudrate)
        sim._master_fd, sim._slave_fd, sim.pace = master, slave, pace
        return sim

    @property
    def device_path(self) -> str:
        return self.port_path

    def __init__(self, port_path: str, servo_ids: Sequence[int],
                 read_positions_counts: Callable[[], np.ndarray],
                 write_goals_counts: Callable[[np.ndarray], None], *,
                 baudrate: int = 1_000_000) -> None:
        self.port_path = port_path
        self.servo_ids = [int(i) for i in servo_ids]
        if len(set(self.servo_ids)) != len(self.servo_ids):
            raise ValueError(f"servo ids must be unique, got {self.servo_ids}")
        self.read_positions_counts = read_positions_counts
        self.write_goals_counts = write_goals_counts
        self.baudrate = baudrate
        self.goals = np.full(len(self.servo_ids), CENTER_COUNTS, dtype=np.int64)
        self.torque = False
        self.counters = {"packets": 0, "sync_writes": 0, "sync_reads": 0, "reads": 0,
                         "writes": 0, "pings": 0, "bad_checksum": 0}
        self._parser = PacketParser()
        self._ser = None
        self._master_fd: int | None = None
        self._slave_fd: int | None = None  # held open: the master never sees a hangup
        self.pace = False
        self.error_bits = [0] * len(self.servo_ids)
        self.silent = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "FeetechBusSim":
        import serial

        if self._master_fd is not None:
            self._ser = _PtyMaster(self._master_fd)
        else:
            self._ser = serial.Serial(self.port_path, self.baudrate, timeout=0.05)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="feetech-bus-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._ser is not None:
            self._ser.close()
            self._ser = None
        if self._slave_fd is not None:
            os.close(self._slave_fd)
            self._slave_fd = self._master_fd = None

    def __enter__(self) -> "FeetechBusSim":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _index(self, servo_id: int) -> int | None:
        try:
            return self.servo_ids.index(servo_id)
        except ValueError:
            return None

    def handle(self, pkt: Packet) -> bytes:
        """Apply one master packet; returns the bytes the servos answer (maybe empty)."""
        c = self.counters
        c["packets"] += 1
        out = bytearray()
        if pkt.instr == INST_SYNC_WRITE and len(pkt.params) >= 2:
            addr, n = pkt.params[0], pkt.params[1]
            if addr == ADDR_GOAL_POSITION and n == 2:
                data = pkt.params[2:]
                for k in range(0, len(data) - 2, 3):
                    j = self._index(data[k])
                    if j is not None:
                        self.goals[j] = data[k + 1] | (data[k + 2] << 8)
                c["sync_writes"] += 1
                self.write_goals_counts(self.goals.copy())
        elif pkt.instr == INST_SYNC_READ and len(pkt.params) >= 2:
            addr, n = pkt.params[0], pkt.params[1]
            if addr == ADDR_PRESENT_POSITION and n == 2:
                c["sync_reads"] += 1
                pos = np.asarray(self.read_positions_counts(), dtype=np.int64)
                for sid in pkt.params[2:]:
                    j = self._index(sid)
                    if j is not None and not self.silent:
                        v = int(np.clip(pos[j], 0, 0xFFFF))
                        out += status(sid, bytes([v & 0xFF, v >> 8]), self.error_bits[j])
        elif pkt.instr == INST_READ and len(pkt.params) == 2:
            j = self._index(pkt.id)
            if j is not None and pkt.params[0] == ADDR_PRESENT_POSITION:
                c["reads"] += 1
                v = int(np.clip(np.asarray(self.read_positions_counts())[j], 0, 0xFFFF))
                out += status(pkt.id, bytes([v & 0xFF, v >> 8]))
        elif pkt.instr == INST_WRITE and len(pkt.params) >= 2:
            c["writes"] += 1
            if pkt.params[0] == ADDR_TORQUE_ENABLE:
                self.torque = bool(pkt.params[1])
            if pkt.id != BROADCAST_ID and self._index(pkt.id) is not None:
                out += status(pkt.id)
        elif pkt.instr == INST_PING and self._index(pkt.id) is not None:
            c["pings"] += 1
            out += status(pkt.id)
        return bytes(out)

    def _run(self) -> None:
        import serial

        while not self._stop.is_set():
            try:
                data = self._ser.read(max(1, self._ser.in_waiting))
            except (serial.SerialException, OSError, TypeError) as exc:
                log.warning("servo bus %s closed: %s", self.port_path, exc)
                return
            if not data:
                continue
            reply = bytearray()
            for pkt in self._parser.feed(data):
                try:
                    reply += self.handle(pkt)
                except Exception:  # noqa: BLE001 - a callback bug must not kill the bus
                    log.exception("servo bus callback failed")
            self.counters["bad_checksum"] = self._parser.bad_checksum
            if reply and self.pace:  # the request's and the answer's time on the wire, 8N1
                time.sleep((len(data) + len(reply)) * 10 / self.baudrate)
            if reply:
                try:
                    self._ser.write(bytes(reply))
                except (serial.SerialException, OSError) as exc:
                    log.warning("servo bus %s write failed: %s", self.port_path, exc)
                    return
