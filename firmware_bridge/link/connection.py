"""`McuLink`: the host end of the M7 link over pyserial (UART, pty or /dev/ttyRPMSG* alike).

    with McuLink("/dev/ttyRPMSG30") as link:        # or the host build's pty
        link.sync_clock()
        link.enable()
        link.send_waypoints(t_host_ns, positions)    # N host monotonic ns, N x 6 rad
        state = link.latest_state()

A reader thread decodes frames (PONG, STATE, ERROR), keeps the newest STATE and feeds the
clock model; it also pings periodically so the offset/drift estimate stays fresh. If the port
goes away (firmware restarted, cable pulled) the reader closes it and reopens the same path
until it is back; sends while it is down return False and are counted, never raise.
Waypoint times are converted from host CLOCK_MONOTONIC ns to MCU µs with that estimate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgevla.actors.wire.clock import WallClock
from edgevla.firmware_bridge.link import codec as p
from edgevla.firmware_bridge.link.clock_sync import ClockEstimate, ClockSync

log = logging.getLogger(__name__)


@dataclass
class McuState:
    """The newest STATE report; ``t_host_ns`` is when the host received it."""

    t_mcu_us: int
    measured: np.ndarray  # (6,) float32 rad
    commanded: np.ndarray  # (6,) float32 rad
    queue_depth: int
    underruns: int
    last_seq: int
    faults: int
    t_host_ns: int
    mode: int = 0
    late: int = 0
    duplicates: int = 0
    rx_frames: int = 0
    rx_errors: int = 0
    seq_gaps: int = 0
    ticks: int = 0

    @property
    def mode_name(self) -> str:
        return p.MODE_NAMES.get(self.mode, str(self.mode))

    @property
    def faults_str(self) -> str:
        return p.faults_str(self.faults)

    @classmethod
    def from_msg(cls, s: p.StateReport, t_host_ns: int) -> "McuState":
        return cls(t_mcu_us=s.t_mcu_us, measured=np.asarray(s.measured, np.float32),
                   commanded=np.asarray(s.commanded, np.float32), queue_depth=s.queue_depth,
                   underruns=s.underruns, last_seq=s.last_seq, faults=s.faults,
                   t_host_ns=t_host_ns, mode=s.mode, late=s.late, duplicates=s.duplicates,
                   rx_frames=s.rx_frames, rx_errors=s.rx_errors, seq_gaps=s.seq_gaps,
                   ticks=s.ticks)


@dataclass
class _Counters:
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_failed: int = 0
    rx_frames: int = 0
    rx_bytes: int = 0
    states: int = 0
    pongs: int = 0
    waypoints_sent: int = 0
    reconnects: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)


class LinkDown(ConnectionError):
    """Raised only by calls that need an answer (ping, sync_clock) while the port is down."""


class McuLink:
    def __init__(self, port: str, *, baudrate: int = 1_000_000, clock=None,
                 ping_period_s: float = 0.25, reconnect_period_s: float = 0.2) -> None:
        if clock is None:
            clock = WallClock()
        self.port = port
        self.baudrate = baudrate
        self.clock = clock
        self.ping_period_s = ping_period_s
        self.reconnect_period_s = reconnect_period_s
        self._ser = None
        self._tx_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._seq = 0
        self._decoder = p.StreamDecoder()
        self._sync = ClockSync()
        self._estimate: ClockEstimate | None = None
        self._estimate_version = -1
        self._state: McuState | None = None
        self._state_event = threading.Condition(self._state_lock)
        self._pending: dict[int, list] = {}  # t_host_ns -> [event, pong t_mcu_us, t_recv]
        self._errors: deque[tuple[int, p.Error]] = deque(maxlen=100)
        self._c = _Counters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ping_ns = 0
        self._rtts_ns: deque[int] = deque(maxlen=4096)

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> bool:
        import serial

        try:
            self._ser = serial.Serial(self.port, self.baudrate, timeout=0.05, write_timeout=5.0)
            return True
        except (serial.SerialException, OSError) as exc:
            log.debug("cannot open %s: %s", self.port, exc)
            self._ser = None
            return False

    def _drop(self, why: str) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            log.warning("M7 link %s lost (%s); reconnecting", self.port, why)
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - already broken; closing is best effort
                pass
            # the far end may have restarted: its clock and our decoder state are stale
            self._sync.clear()
            self._estimate = None
            self._decoder = p.StreamDecoder()

    @property
    def connected(self) -> bool:
        return self._ser is not None

    def start(self) -> "McuLink":
        if self._thread is not None:
            return self
        if not self._open():
            raise LinkDown(f"cannot open M7 link port {self.port!r} (does it exist? is the "
                           f"firmware running?)")
        self._stop.clear()
        self._thread = threading.Thread(target=self._reader, name=f"mculink:{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> "McuLink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ reader thread
    def _reader(self) -> None:
        import serial

        while not self._stop.is_set():
            ser = self._ser
            if ser is None:
                if self._open():
                    self._c.reconnects += 1
                    log.info("M7 link %s reconnected", self.port)
                else:
                    self._stop.wait(self.reconnect_period_s)
                continue
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError, TypeError) as exc:
                self._drop(str(exc))
                continue
            if data:
                self._c.rx_bytes += len(data)
                for frame in self._decoder.feed(data):
                    self._dispatch(frame)
            if self.ping_period_s and (self.clock.now_ns() - self._last_ping_ns
                                       > self.ping_period_s * 1e9):
                self._send_ping()

    def _dispatch(self, frame: p.LinkFrame) -> None:
        now = self.clock.now_ns()
        self._c.rx_frames += 1
        msg = frame.msg
        if isinstance(msg, p.StateReport):
            st = McuState.from_msg(msg, now)
            with self._state_event:
                self._state = st
                self._c.states += 1
                self._state_event.notify_all()
        elif isinstance(msg, p.Pong):
            self._c.pongs += 1
            if msg.t_host_ns <= now:
                self._sync.add(msg.t_host_ns, msg.t_mcu_us, now)
                self._rtts_ns.append(now - msg.t_host_ns)
            waiter = self._pending.pop(msg.t_host_ns, None)
            if waiter is not None:
                waiter[1], waiter[2] = msg.t_mcu_us, now
                waiter[0].set()
        elif isinstance(msg, p.Error):
            name = p.ERROR_NAMES.get(msg.code, str(msg.code))
            self._c.errors_by_code[name] = self._c.errors_by_code.get(name, 0) + 1
            self._errors.append((now, msg))
            log.warning("M7 reports ERROR %s (ref %s seq %d, detail %d)", name,
                        p.TYPE_NAMES.get(msg.ref_type, msg.ref_type), msg.ref_seq, msg.detail)

    # ------------------------------------------------------------------ sending
    def _send(self, msg: p.LinkMessage) -> bool:
        import serial

        with self._tx_lock:
            ser = self._ser
            if ser is None:
                self._c.tx_failed += 1
                return False
            wire = p.encode_frame(msg, self._seq)
            try:
                ser.write(wire)
            except serial.SerialTimeoutException:
                # the far end is slow to drain (QEMU's UART, a stalled RPMsg peer): the frame
                # may be cut short, which the MCU counts as a decode error; the link stays up
                self._c.tx_failed += 1
                return False
            except (serial.SerialException, OSError) as exc:
                self._c.tx_failed += 1
                self._drop(f"write failed: {exc}")
                return False
            self._seq = (self._seq + 1) & 0xFFFF
            self._c.tx_frames += 1
            self._c.tx_bytes += len(wire)
            return True

    def _send_ping(self) -> int:
        t = self.clock.now_ns()
        self._last_ping_ns = t
        self._send(p.Ping(t))
        return t

    def ping(self, timeout_s: float = 0.5) -> int | None:
        """One round trip; returns the RTT in ns (None on timeout)."""
        sample = self.ping_sample(timeout_s)
        return None if sample is None else sample[2] - sample[0]

    def ping_sample(self, timeout_s: float = 0.5) -> tuple[int, int, int] | None:
        """One round trip as (host send ns, MCU stamp us, host receive ns), None on timeout."""
        if self._ser is None:
            raise LinkDown(f"M7 link {self.port} is down")
        ev = threading.Event()
        waiter = [ev, None, None]
        t = self.clock.now_ns()
        while t in self._pending:  # two pings in the same ns on a coarse clock
            t += 1
        self._pending[t] = waiter
        self._last_ping_ns = t
        if not self._send(p.Ping(t)):
            self._pending.pop(t, None)
            return None
        if not ev.wait(timeout_s):
            self._pending.pop(t, None)
            return None
        return t, int(waiter[1]), int(waiter[2])

    def sync_clock(self, n_pings: int = 32, timeout_s: float = 0.5) -> ClockEstimate:
        """Ping ``n_pings`` times and (re)estimate offset and drift; raises LinkDown if the
        MCU never answers."""
        got = 0
        for _ in range(n_pings):
            if self.ping(timeout_s) is not None:
                got += 1
        est = self._sync.estimate()
        if got == 0 or est is None:
            raise LinkDown(f"no PONG from the M7 on {self.port} within {timeout_s} s "
                           f"({n_pings} pings)")
        self._estimate = est
        return est

    def clock_estimate(self) -> ClockEstimate | None:
        """The freshest estimate (refit when the periodic pings brought new samples)."""
        version = self._sync.version
        if version != self._estimate_version:
            est = self._sync.estimate()
            self._estimate_version = version
            if est is not None:
                self._estimate = est
        return self._estimate

    def host_to_mcu_us(self, t_host_ns) -> np.ndarray:
        est = self.clock_estimate()
        if est is None:
            est = self.sync_clock(n_pings=8)
        return est.host_to_mcu_us(t_host_ns)

    def send_waypoints(self, t_host_ns: Sequence[int], positions: np.ndarray,
                       flags: int | Sequence[int] = 0) -> bool:
        """Send N waypoints (host monotonic ns, N x 6 float32 rad) in frames of <= 14;
        ``flags`` (protocol.WP_LINEAR | WP_RESET | WP_END) for all or one per waypoint.
        Returns False if any frame could not be written (link down)."""
        t = np.asarray(t_host_ns, dtype=np.int64).reshape(-1)
        pos = np.asarray(positions, dtype=np.float32)
        if pos.ndim == 1:
            pos = pos.reshape(1, -1)
        if pos.shape != (len(t), p.N_JOINTS):
            raise ValueError(f"positions must be (N, {p.N_JOINTS}) with N = len(t_host_ns) = "
                             f"{len(t)}, got {pos.shape}")
        if not np.all(np.isfinite(pos)):
            raise ValueError("positions contain NaN or inf")
        fl = np.broadcast_to(np.asarray(flags, dtype=np.int64), (len(t),))
        if len(t) == 0:
            return True
        t_mcu = self.host_to_mcu_us(t)
        ok = True
        step = p.MAX_WAYPOINTS_PER_FRAME
        for i in range(0, len(t), step):
            pts = [p.Waypoint(int(t_mcu[k]), tuple(float(x) for x in pos[k]), int(fl[k]))
                   for k in range(i, min(i + step, len(t)))]
            if self._send(p.Waypoints(pts)):
                self._c.waypoints_sent += len(pts)
            else:
                ok = False
        return ok

    def send_waypoints_mcu(self, t_mcu_us: Sequence[int], positions: np.ndarray,
                           flags: int | Sequence[int] = 0) -> bool:
        """Same as send_waypoints with times already in MCU µs (tests, tools)."""
        t = np.asarray(t_mcu_us, dtype=np.int64).reshape(-1)
        pos = np.asarray(positions, dtype=np.float32).reshape(len(t), p.N_JOINTS)
        fl = np.broadcast_to(np.asarray(flags, dtype=np.int64), (len(t),))
        ok = True
        for i in range(0, len(t), p.MAX_WAYPOINTS_PER_FRAME):
            pts = [p.Waypoint(int(t[k]), tuple(float(x) for x in pos[k]), int(fl[k]))
                   for k in range(i, min(i + p.MAX_WAYPOINTS_PER_FRAME, len(t)))]
            if self._send(p.Waypoints(pts)):
                self._c.waypoints_sent += len(pts)
            else:
                ok = False
        return ok

    def hold(self) -> bool:
        return self._send(p.Hold())

    def enable(self) -> bool:
        return self._send(p.Enable())

    def disable(self) -> bool:
        return self._send(p.Disable())

    def request_state(self) -> bool:
        return self._send(p.GetState())

    def set_config(self, watchdog_ms: int = 500, state_period_ms: int = 10) -> bool:
        for name, v in (("watchdog_ms", watchdog_ms), ("state_period_ms", state_period_ms)):
            if not 0 <= int(v) <= 0xFFFF:
                raise ValueError(f"{name} must be in 0..65535, got {v}")
        return self._send(p.Config(int(watchdog_ms), int(state_period_ms)))

    def set_limits(self, min_rad, max_rad, max_vel_rad_s, max_acc_rad_s2) -> bool:
        """Per-joint limits; each argument a scalar (all joints) or 6 values."""
        cols = [np.broadcast_to(np.asarray(v, dtype=np.float32), (p.N_JOINTS,))
                for v in (min_rad, max_rad, max_vel_rad_s, max_acc_rad_s2)]
        joints = []
        for j in range(p.N_JOINTS):
            lo, hi, v, a = (float(c[j]) for c in cols)
            if not (np.isfinite([lo, hi, v, a]).all() and lo <= hi and v > 0 and a > 0):
                raise ValueError(f"joint {j}: limits need finite min<=max, max_vel>0, "
                                 f"max_acc>0; got min={lo} max={hi} vel={v} acc={a}")
            joints.append(p.JointLimits(lo, hi, v, a))
        return self._send(p.Limits(joints))

    # ------------------------------------------------------------------ reading
    def latest_state(self) -> McuState | None:
        with self._state_lock:
            return self._state

    def barrier(self, timeout_s: float = 5.0) -> McuState:
        """Send GET_STATE and wait for the STATE that answers it: everything sent before has
        then been processed by the MCU (frames are handled in order). Raises LinkDown."""
        with self._tx_lock:
            seq = self._seq
        if not self.request_state():
            raise LinkDown(f"M7 link {self.port} is down")
        st = self.wait_state(lambda s: s.last_seq == seq, timeout_s=timeout_s)
        if st is None:
            raise LinkDown(f"no STATE answering GET_STATE seq {seq} within {timeout_s} s")
        return st

    def wait_state(self, predicate=None, timeout_s: float = 2.0) -> McuState | None:
        """Wait for a STATE newer than the current one (and matching ``predicate``)."""
        deadline = time.monotonic() + timeout_s
        with self._state_event:
            first = self._state
            while True:
                st = self._state
                if st is not None and st is not first and (predicate is None or predicate(st)):
                    return st
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._state_event.wait(left)

    def errors(self) -> list[tuple[int, p.Error]]:
        """Recent ERROR frames from the MCU as (host receive ns, Error)."""
        return list(self._errors)

    def rtts_ns(self) -> np.ndarray:
        return np.array(self._rtts_ns, dtype=np.int64)

    def stats(self) -> dict:
        c = self._c
        est = self._estimate
        rtts = self.rtts_ns()
        return {
            "port": self.port, "connected": self.connected,
            "tx_frames": c.tx_frames, "tx_bytes": c.tx_bytes, "tx_failed": c.tx_failed,
            "rx_frames": c.rx_frames, "rx_bytes": c.rx_bytes,
            "rx_errors": dict(self._decoder.errors), "states": c.states, "pongs": c.pongs,
            "waypoints_sent": c.waypoints_sent, "reconnects": c.reconnects,
            "mcu_errors": dict(c.errors_by_code),
            "rtt_p50_ms": float(np.percentile(rtts, 50)) / 1e6 if len(rtts) else None,
            "rtt_p99_ms": float(np.percentile(rtts, 99)) / 1e6 if len(rtts) else None,
            "clock_offset_ns": est.offset_ns if est else None,
            "clock_drift_ppm": est.drift_ppm if est else None,
        }
