"""The Cortex-M7 image end to end on qemu-system-arm -M mps2-an500: PING, WAYPOINTS, STATE."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from edgevla.firmware_bridge.link import codec as p
from edgevla.firmware_bridge.link.connection import McuLink
from edgevla.firmware_bridge.firmware.launch import QemuFirmware

pytestmark = [pytest.mark.timing, pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi (make install adds them)")]


def test_qemu_m7_ping_waypoints_state():
    with QemuFirmware() as fw, McuLink(fw.link_port) as link:
        # QEMU polls a pty's peer about once a second: wait until STATE flows
        assert link.wait_state(timeout_s=10.0) is not None, fw.log_lines
        rtts = [link.ping(timeout_s=1.0) for _ in range(30)]
        assert sum(r is not None for r in rtts) >= 29
        est = link.sync_clock(16)
        assert est.n_samples >= 4
        link.set_limits(-1.5, 1.5, 3.0, 30.0)
        link.enable()
        st = link.wait_state(lambda s: s.mode == p.MODE_RUNNING, timeout_s=2.0)
        assert st is not None
        # the points are due 2 s after sending: QEMU was seen stalling for over 0.5 s on a host
        # loaded by two busy loops, and a point that arrives after its time is counted late
        t0 = time.monotonic_ns() + 2_000_000_000
        ts = [t0 + k * 10_000_000 for k in range(40)]
        pos = np.zeros((40, 6), np.float32)
        pos[:, 0] = np.linspace(0.0, 0.6, 40)
        pos[:, 5] = np.linspace(0.0, -0.3, 40)
        flags = [0] * 39 + [p.WP_END]
        assert link.send_waypoints(ts, pos, flags)  # 3 frames of <= 14 points
        st = link.wait_state(lambda s: s.queue_depth == 0 and
                             np.allclose(s.commanded, pos[-1], atol=1e-4), timeout_s=10.0)
        assert st is not None, link.latest_state()
        assert st.late == 0 and st.underruns == 0 and st.seq_gaps == 0 and st.rx_errors == 0
        # the simulated servos in the image follow the goals the driver wrote
        st = link.wait_state(lambda s: np.allclose(s.measured, pos[-1], atol=2e-3),
                             timeout_s=2.0)
        assert st is not None, link.latest_state()
        assert st.ticks > 500  # SysTick drove the 1 kHz loop
