"""The profile without an M7: the firmware's host build on a serial servo bus at 1 Mbaud.

The bus is a pseudo-terminal the firmware opens as a serial device (``--servo-device``), with
the Feetech servo simulator on the other end answering at the wire time of 1 Mbaud 8N1. A host
process streams 100 Hz waypoints (EDGEVLA_USB_SOAK_S seconds, 10 by default; the closing note
of the host profile ran 60) and is then SIGKILLed: nothing may be lost while it runs, the
firmware's watchdog must hold the arm without a jump, and torque must go off after the stated
torque_off_ms.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import termios
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgevla.firmware_bridge.firmware.launch import HostFirmware
from edgevla.firmware_bridge.link.connection import McuLink
from edgevla.firmware_bridge.servos.feetech import FeetechBusSim, rad_to_counts

pytestmark = [pytest.mark.timing, pytest.mark.timeout(300)]

WATCHDOG_MS = 300
TORQUE_OFF_MS = 1500
MAX_VEL_RAD_S = 4.0  # the firmware's default velocity limit bounds each 10 ms goal step

SENDER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from edgevla.firmware_bridge.link.connection import McuLink

    port, seconds, report = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    link = McuLink(port).start()
    link.sync_clock()
    t0 = time.monotonic_ns()
    period = 10_000_000
    n, k = 0, 0
    reported = False
    while True:  # until killed: the report is written after `seconds`, the stream goes on
        k += 1
        t_next = t0 + k * period
        while time.monotonic_ns() < t_next:
            time.sleep(0.0005)
        t = (t_next - t0) / 1e9
        pos = 0.3 * np.sin(2 * np.pi * 0.5 * t + np.arange(6)) * np.ones(6)
        pos[5] = 0.4 + 0.3 * np.sin(2 * np.pi * 0.5 * t)
        if link.send_waypoints([t_next + 60_000_000], pos[None, :]):
            n += 1
        if not reported and t >= seconds:
            st = link.barrier()
            s = link.stats()
            out = {"waypoint_frames": n, "tx_frames": s["tx_frames"], "tx_failed": s["tx_failed"],
                   "fw_rx_frames": st.rx_frames, "fw_rx_errors": st.rx_errors,
                   "fw_seq_gaps": st.seq_gaps, "fw_late": st.late, "fw_underruns": st.underruns,
                   "mode": st.mode_name, "faults": st.faults_str, "mcu_errors": s["mcu_errors"]}
            open(report + ".tmp", "w").write(json.dumps(out))
            import os; os.replace(report + ".tmp", report)
            reported = True
""")


class ServoArm:
    """Six ideal servos: present position = the last goal while torque is on."""

    def __init__(self) -> None:
        self.pos = np.full(6, 2048, np.int64)
        self.goals: list[tuple[float, np.ndarray]] = []
        self.lock = threading.Lock()

    def read(self) -> np.ndarray:
        return self.pos.copy()

    def write(self, goals: np.ndarray) -> None:
        with self.lock:
            self.goals.append((time.monotonic(), goals.copy()))
        self.pos = goals.copy()


def _wait(pred, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_host_firmware_drives_a_1mbaud_bus_holds_when_the_host_dies_then_torque_off(tmp_path):
    seconds = float(os.environ.get("EDGEVLA_USB_SOAK_S", "10"))
    arm = ServoArm()
    sim = FeetechBusSim.on_pty(range(1, 7), arm.read, arm.write, pace=True).start()
    fw = HostFirmware(servo="device", servo_device=sim.device_path, watchdog_ms=WATCHDOG_MS,
                      torque_off_ms=TORQUE_OFF_MS, servo_miss_hold=5, enable_at_boot=True)
    sender = None
    try:
        fw.start()
        # the firmware set the port up as a Feetech bus wants it: raw 8N1 at 1 Mbaud
        iflag, oflag, cflag, lflag, ispeed, ospeed, _ = termios.tcgetattr(sim._slave_fd)
        assert ispeed == ospeed == termios.B1000000
        assert cflag & termios.CSIZE == termios.CS8 and not cflag & (termios.PARENB | termios.CSTOPB)
        assert not lflag & (termios.ICANON | termios.ECHO) and not oflag & termios.OPOST
        # torque on only once every servo has reported its position
        assert _wait(lambda: sim.torque, 5.0), "torque never went on"

        report = tmp_path / "sender.json"
        sender = subprocess.Popen([sys.executable, "-c", SENDER, fw.link_port, str(seconds),
                                   str(report)], stderr=subprocess.PIPE)
        assert _wait(report.exists, seconds + 30), sender.stderr.read1().decode() \
            if sender.poll() is not None else "no report from the sender"
        r = json.loads(report.read_text())
        print(f"host profile, {seconds:g} s at 100 Hz: {json.dumps(r)}; servo bus {sim.counters}")
        # nothing lost: every frame the host sent arrived intact, in order, none late
        assert r["waypoint_frames"] >= 100 * seconds * 0.95, r
        assert r["tx_failed"] == 0 and r["fw_rx_errors"] == 0 and r["fw_seq_gaps"] == 0, r
        assert r["fw_rx_frames"] == r["tx_frames"], r
        assert r["fw_late"] == 0 and r["mode"] == "RUNNING", r
        assert "SERVO" not in r["faults"] and not r["mcu_errors"], r
        assert sim.counters["bad_checksum"] == 0
        # the firmware wrote goals every 10 ms and read the servos back every cycle
        assert sim.counters["sync_writes"] >= 100 * seconds * 0.9
        assert sim.counters["sync_reads"] >= sim.counters["sync_writes"]

        t_kill = time.monotonic()
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        # a listener only: its pings would feed the watchdog the dead host no longer feeds
        link = McuLink(fw.link_port, ping_period_s=0).start()
        try:
            held = link.wait_state(lambda s: s.mode_name == "HOLDING", timeout_s=3.0)
            assert held is not None and "WATCHDOG" in held.faults_str
            assert _wait(lambda: not sim.torque, TORQUE_OFF_MS / 1000 + 3.0), "torque stayed on"
            t_off = time.monotonic()
            off = link.wait_state(lambda s: s.mode_name == "DISABLED", timeout_s=2.0)
            assert off is not None
        finally:
            link.close()
        # torque off no sooner than watchdog + torque_off_ms after the last frame
        assert t_off - t_kill >= (WATCHDOG_MS + TORQUE_OFF_MS) / 1000 - 0.1
        assert t_off - t_kill <= (WATCHDOG_MS + TORQUE_OFF_MS) / 1000 + 2.0
        print(f"host killed -> HOLDING ({held.faults_str}); torque off {t_off - t_kill:.2f} s "
              f"after the kill (watchdog {WATCHDOG_MS} ms + torque_off {TORQUE_OFF_MS} ms)")
        # no jump anywhere: successive goals (10 ms apart) within the velocity limit
        with arm.lock:
            goals = np.stack([g for _, g in arm.goals])
        step = np.abs(np.diff(goals, axis=0)).max()
        assert step <= rad_to_counts(MAX_VEL_RAD_S * 0.011) - 2048 + 1, step
    finally:
        if sender is not None and sender.poll() is None:
            sender.kill()
        fw.close()
        sim.stop()


def test_a_missing_servo_device_is_one_line(tmp_path):
    fw = HostFirmware(servo="device", servo_device=str(tmp_path / "ttyACM9"))
    with pytest.raises(RuntimeError, match="ttyACM9: cannot open it as a 1 Mbaud serial port"):
        fw.start()
    fw.close()


def _arm_on_usb(torque_off_ms: int) -> tuple[FeetechBusSim, HostFirmware]:
    """Simulated servos behind a 1 Mbaud serial device, and the host firmware (not started) on it."""
    arm = ServoArm()
    sim = FeetechBusSim.on_pty(range(1, 7), arm.read, arm.write, pace=True).start()
    return sim, HostFirmware(servo="device", servo_device=sim.device_path, watchdog_ms=0,
                             torque_off_ms=torque_off_ms, enable_at_boot=True)


def test_an_overloaded_servo_stops_the_arm_and_shows_in_the_state():
    sim, fw = _arm_on_usb(torque_off_ms=500)
    try:
        fw.start()
        with McuLink(fw.link_port, ping_period_s=0) as link:
            assert link.wait_state(lambda s: s.mode_name == "RUNNING", timeout_s=5.0)
            sim.error_bits[3] = 0x20  # overload on wrist_flex
            st = link.wait_state(lambda s: s.mode_name == "HOLDING", timeout_s=3.0)
            assert st is not None and "SERVO_ERROR" in st.faults_str
            assert _wait(lambda: not sim.torque, 3.0)
    finally:
        fw.close()
        sim.stop()


def test_host_bundle_writes_the_usb_graph(tmp_path):
    """`edgevla bundle --target host`: the mcu actor on the serial port, the calibration on
    every actor that converts or clamps, no M7 image, no systemd units."""
    import yaml

    from edgevla.deploy.bundle.manifest import BundleError, write_board_bundle
    from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE

    model = Path(__file__).resolve().parents[2] / "models" / "default" / "bundle"
    if not (model / "manifest.json").exists():
        pytest.skip("no default model bundle in this checkout")
    out = write_board_bundle(model, tmp_path / "usb", target="host", tarball=False,
                             calibration=SIM_CALIBRATION_FILE, servo_device="/dev/ttyUSB0")
    g = yaml.safe_load((out / "graph.yaml").read_text())
    mcu = g["actors"]["mcu"]["params"]
    assert mcu["servo_device"] == "/dev/ttyUSB0" and mcu["torque_off_ms"] > 0
    assert g["actors"]["executor"]["params"]["mcu_port"] == "${RUN_DIR}/mcu.link"
    assert all(g["actors"][a]["params"]["calibration"] == "${GRAPH_DIR}/calibration.json"
               for a in ("vision", "executor"))
    assert (out / "calibration.json").is_file() and not (out / "systemd").exists()
    assert "torque goes off" in (out / "README.md").read_text()
    with pytest.raises(BundleError, match="host build"):
        write_board_bundle(model, tmp_path / "x", target="host", firmware=__file__)
    from edgevla.actors.runtime.graph import load_graph

    load_graph(out / "graph.yaml")  # a graph the runtime accepts


def test_stopping_the_host_firmware_holds_then_switches_torque_off():
    """What `edgevla stop` does to the host profile's mcu actor: SIGTERM to the firmware, which
    holds the arm for torque_off_ms, switches torque off, and only then exits."""
    sim, fw = _arm_on_usb(torque_off_ms=800)
    try:
        fw.start()
        assert _wait(lambda: sim.torque, 5.0)
        t0 = time.monotonic()
        rc = fw.stop()
        elapsed = time.monotonic() - t0
        assert rc == 0 and not sim.torque
        assert 0.75 <= elapsed <= 3.0, elapsed
        assert any("torque off in 800 ms" in line for line in fw.log_lines)
    finally:
        fw.close()
        sim.stop()
