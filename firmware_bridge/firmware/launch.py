"""Run the firmware from Python: the host build behind ptys, or the M7 build on QEMU.

    with HostFirmware(watchdog_ms=500) as fw:          # builds mcu/ if needed
        bus = FeetechBusSim(fw.servo_port, ...)        # the simulated arm answers as servos
        with McuLink(fw.link_port) as link: ...

    with QemuFirmware() as fw:                         # qemu-system-arm -M mps2-an500
        with McuLink(fw.link_port) as link: ...

`link_port` is a symlink in a private temp folder that points at the current pty, so a
restarted firmware (`fw.restart()`) keeps the same path and `McuLink` reconnects to it.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgevla.firmware_bridge.firmware.build import TARGETS, FirmwareBuildError, ensure_built, mcu_dir


@dataclass(frozen=True)
class JointLimitsArg:
    """The same limits for all joints, as the host build's --limits flag takes them."""

    min_rad: float = -3.14159265
    max_rad: float = 3.14159265
    max_vel_rad_s: float = 4.0
    max_acc_rad_s2: float = 40.0

    def as_arg(self) -> str:
        return f"{self.min_rad},{self.max_rad},{self.max_vel_rad_s},{self.max_acc_rad_s2}"


def make_realtime(pid: int, priority: int = 10) -> bool:
    """SCHED_FIFO for every thread of ``pid``: the emulated M7 is a dedicated real-time core,
    and on a loaded host a normal-priority firmware process stalls for 100s of ms. Returns
    False (and changes nothing) where the OS does not allow it (no CAP_SYS_NICE)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    try:
        for tid in tids:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError, AttributeError):
        return False
    return True


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the launching process dies (PR_SET_PDEATHSIG), so a
    killed test, CLI or mcu actor never leaves a firmware process or an emulator running."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass


@contextlib.contextmanager
def realtime_self(priority: int = 5):
    """Run the calling process's threads SCHED_FIFO (where permitted) for the block, then
    back to SCHED_OTHER. For the executor side of streaming tests and benchmarks: on a shared
    2-core machine a normal-priority Python thread was measured stalling up to 1.9 s.
    Yields whether real-time scheduling is active."""
    active = make_realtime(os.getpid(), priority)
    try:
        yield active
    finally:
        if active:
            for tid in os.listdir(f"/proc/{os.getpid()}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))


class _Process:
    """Shared start/stop of a firmware process and its private folder."""

    name = "firmware"

    def __init__(self, realtime: bool = False) -> None:
        self._proc: subprocess.Popen | None = None
        self._dir: str | None = None
        self.log_lines: list[str] = []
        self.realtime = realtime
        self.realtime_active = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _read_lines_until(self, stream, pattern: re.Pattern, count: int,
                          timeout_s: float) -> list[re.Match]:
        found: list[re.Match] = []
        deadline = time.monotonic() + timeout_s
        buf = b""
        fd = stream.fileno()
        while len(found) < count:
            left = deadline - time.monotonic()
            if left <= 0 or self._proc.poll() is not None:
                break
            r, _, _ = select.select([fd], [], [], min(left, 0.1))
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.log_lines.append(text)
                m = pattern.search(text)
                if m:
                    found.append(m)
        if len(found) < count:
            rc = self._proc.poll()
            self.stop()
            raise RuntimeError(f"{self.name} did not report its ports within {timeout_s} s "
                               f"(exit code {rc}); output:\n" + "\n".join(self.log_lines[-20:]))
        return found

    def stop(self, timeout_s: float = 3.0) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        for s in (proc.stdout, proc.stderr):
            if s is not None:
                try:
                    rest = s.read()
                    if rest:
                        self.log_lines.extend(rest.decode(errors="replace").splitlines())
                finally:
                    s.close()
        return proc.returncode

    def _cleanup_dir(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def close(self) -> None:
        self.stop()
        self._cleanup_dir()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HostFirmware(_Process):
    """The host build (`make -C mcu host`) as a child process with link and servo ptys.

    servo: "pty" exposes the Feetech bus on ``servo_port`` for a FeetechBusSim (the simulated
    arm); "loopback" simulates six servos inside the firmware process (servo_port is None);
    "device" drives the real bus on ``servo_device`` (a USB serial adapter, 1 Mbaud).
    torque_off_ms: torque off after that long holding, and a stop holds first (0 = never).
    servo_miss_hold: hold after that many read cycles with a servo silent (0 = never).
    sanitize: run the ASan/UBSan build (tests).
    realtime: run it SCHED_FIFO if the OS allows (``realtime_active`` tells), as the M7 would be.
    """

    name = "host firmware"

    def __init__(self, *, watchdog_ms: int = 500, state_period_ms: int = 10,
                 servo_period_ms: int = 10, servo: str = "pty",
                 limits: JointLimitsArg | None = None, enable_at_boot: bool = False,
                 sanitize: bool = False, clock_offset_us: int = 0,
                 clock_drift_ppm: float = 0.0, build: bool = True,
                 binary: str | os.PathLike | None = None, realtime: bool = False,
                 servo_device: str | None = None, torque_off_ms: int = 0,
                 servo_miss_hold: int = 0) -> None:
        super().__init__(realtime)
        if servo not in ("pty", "loopback", "device"):
            raise ValueError(f"servo must be 'pty', 'loopback' or 'device', got {servo!r}")
        if (servo == "device") != bool(servo_device):
            raise ValueError("servo='device' goes with servo_device=PATH (the serial port)")
        for n, v in (("watchdog_ms", watchdog_ms), ("state_period_ms", state_period_ms),
                     ("servo_period_ms", servo_period_ms), ("torque_off_ms", torque_off_ms)):
            if not 0 <= int(v) <= 0xFFFF:
                raise ValueError(f"{n} must be in 0..65535, got {v}")
        if not 0 <= int(servo_miss_hold) <= 255:
            raise ValueError(f"servo_miss_hold must be in 0..255, got {servo_miss_hold}")
        self.servo_device = servo_device
        self.torque_off_ms = int(torque_off_ms)
        self.servo_miss_hold = int(servo_miss_hold)
        self.watchdog_ms = watchdog_ms
        self.state_period_ms = state_period_ms
        self.servo_period_ms = servo_period_ms
        self.servo = servo
        self.limits = limits
        self.enable_at_boot = enable_at_boot
        self.sanitize = sanitize
        self.clock_offset_us = clock_offset_us
        self.clock_drift_ppm = clock_drift_ppm
        self.build = build
        self.binary = Path(binary) if binary else None
        self.link_port: str | None = None
        self.servo_port: str | None = None
        self.link_pty: str | None = None
        self.servo_pty: str | None = None

    def _binary(self) -> Path:
        if self.binary:
            return self.binary
        target = "host-asan" if self.sanitize else "host"
        if self.build:
            return ensure_built(target)
        path = mcu_dir() / TARGETS[target]
        if not path.exists():
            raise FirmwareBuildError(f"{path} does not exist: run `make -C mcu {target}`")
        return path

    def start(self) -> "HostFirmware":
        if self.alive:
            return self
        exe = self._binary()
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="edgevla-fw-")
        link_sym = os.path.join(self._dir, "link")
        servo_sym = os.path.join(self._dir, "servo")
        args = [str(exe), "--link-symlink", link_sym, "--watchdog-ms", str(self.watchdog_ms),
                "--state-period-ms", str(self.state_period_ms),
                "--servo-period-ms", str(self.servo_period_ms),
                "--clock-offset-us", str(int(self.clock_offset_us)),
                "--clock-drift-ppm", repr(float(self.clock_drift_ppm)),
                "--torque-off-ms", str(self.torque_off_ms),
                "--servo-miss-hold", str(self.servo_miss_hold)]
        if self.servo == "device":
            args += ["--servo-device", str(self.servo_device)]
        else:
            args += ["--servo", self.servo]
        if self.servo == "pty":
            args += ["--servo-symlink", servo_sym]
        if self.limits is not None:
            args += ["--limits", self.limits.as_arg()]
        if self.enable_at_boot:
            args.append("--enable-at-boot")
        env = dict(os.environ)
        if self.sanitize:
            # leak checking needs ptrace, which containers often forbid
            env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env, preexec_fn=_die_with_parent)
        found = self._read_lines_until(self._proc.stdout, re.compile(r"^(LINK|SERVO) (\S+)"),
                                       2, timeout_s=10.0)
        if self.realtime:
            self.realtime_active = make_realtime(self._proc.pid)
        ports = {m.group(1): m.group(2) for m in found}
        self.link_pty = ports["LINK"]
        self.link_port = link_sym
        if self.servo == "pty":
            self.servo_pty = ports["SERVO"]
            self.servo_port = servo_sym
        elif self.servo == "device":
            self.servo_port = str(self.servo_device)
        return self

    def stop(self, timeout_s: float | None = None) -> int | None:
        # a stop holds the arm for torque_off_ms before the torque goes off: wait for it
        return super().stop(timeout_s if timeout_s is not None else 3.0 + self.torque_off_ms / 1000)

    def restart(self) -> "HostFirmware":
        """Kill and start again; link_port/servo_port keep their (symlink) paths."""
        self.stop()
        return self.start()

    def stderr_text(self) -> str:
        return "\n".join(self.log_lines)


class QemuFirmware(_Process):
    """The Cortex-M7 build on `qemu-system-arm -M mps2-an500`, UART0 on a pty.

    The emulated board has no servo bus: six simulated servos run inside the firmware image.
    Watchdog, state period and limits are set over the link (McuLink.set_config/set_limits).
    """

    name = "QEMU M7 firmware"

    def __init__(self, *, build: bool = True, elf: str | os.PathLike | None = None,
                 qemu: str = "qemu-system-arm", realtime: bool = False) -> None:
        super().__init__(realtime)
        self.build = build
        self.elf = Path(elf) if elf else None
        self.qemu = qemu
        self.link_port: str | None = None
        self.link_pty: str | None = None
        self.servo_port: str | None = None

    def start(self) -> "QemuFirmware":
        if self.alive:
            return self
        if shutil.which(self.qemu) is None:
            raise FirmwareBuildError(f"{self.qemu} not found: apt-get install qemu-system-arm "
                                     "(or `make install`)")
        elf = self.elf or ensure_built("qemu-m7")
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="edgevla-qemu-")
        args = [self.qemu, "-M", "mps2-an500", "-nographic", "-monitor", "none",
                "-serial", "pty", "-kernel", str(elf)]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        (m,) = self._read_lines_until(
            self._proc.stdout, re.compile(r"char device redirected to (\S+)"), 1, timeout_s=15.0)
        self.link_pty = m.group(1)
        if self.realtime:
            self.realtime_active = make_realtime(self._proc.pid)
        link_sym = os.path.join(self._dir, "link")
        tmp = link_sym + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.link_pty, tmp)
        os.replace(tmp, link_sym)
        self.link_port = link_sym
        return self

    def restart(self) -> "QemuFirmware":
        self.stop()
        return self.start()


def start_firmware(qemu: bool = False, **kwargs) -> HostFirmware | QemuFirmware:
    """HostFirmware(**kwargs) or QemuFirmware(**kwargs), not yet started."""
    return QemuFirmware(**kwargs) if qemu else HostFirmware(**kwargs)
