"""Kind `mcu_firmware`: the M7 firmware of the sim profile, started and watched by the graph.

On a board the M7 is loaded by remoteproc and this actor is not in the graph: the executor opens
/dev/ttyRPMSG* directly. In the sim profile the firmware is a process of ours (the host build
behind ptys, or the Cortex-M7 build on QEMU), and making it an actor gives it what every other
part has: a restart policy, a heartbeat, a row in the dashboard. It publishes stable symlinks
(``link_path``, ``servo_path``) so the executor and the simulated arm find it again after a
restart without rewiring.

Params: ``link_path``; ``servo_path`` (the simulated arm's bus, a pty symlink) or
``servo_device`` (the arm's real Feetech bus on a USB serial adapter: the profile without an
M7, `edgevla bundle --target host`); ``watchdog_ms``, ``state_period_ms``, ``limits``,
``enable``; ``torque_off_ms`` (hold that long after the host is lost or the graph stops, then
torque off; 0 = never) and ``servo_miss_hold`` (hold after that many silent read cycles).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

from edgevla.actors.runtime.actor import Actor, Outputs
from edgevla.actors.wire.clock import Clock
from edgevla.firmware_bridge.firmware.launch import HostFirmware, JointLimitsArg, QemuFirmware

log = logging.getLogger("edgevla.mcu_actor")


def _replace_symlink(target: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)


class McuFirmwareActor(Actor):
    outputs = ()

    def setup(self, params: dict[str, Any]) -> None:
        self.qemu = bool(params.get("qemu", False))
        self.link_path = Path(params["link_path"])
        self.servo_path = Path(params["servo_path"]) if params.get("servo_path") else None
        self.pid_file = self.link_path.with_suffix(".pid")
        self._kill_stale()
        if self.qemu:
            self.fw = QemuFirmware()
        else:
            lim = params.get("limits") or {}
            limits = JointLimitsArg(**lim) if lim else None
            device = params.get("servo_device")
            servo = "device" if device else "pty" if self.servo_path else "loopback"
            self.fw = HostFirmware(watchdog_ms=int(params.get("watchdog_ms", 300)),
                                   state_period_ms=int(params.get("state_period_ms", 10)),
                                   servo=servo, servo_device=device and str(device),
                                   torque_off_ms=int(params.get("torque_off_ms", 0)),
                                   servo_miss_hold=int(params.get("servo_miss_hold", 0)),
                                   limits=limits, enable_at_boot=bool(params.get("enable", True)))
        self.fw.start()
        self.pid_file.write_text(str(self.fw.pid))
        _replace_symlink(self.fw.link_port, self.link_path)
        if self.servo_path and self.fw.servo_port and not params.get("servo_device"):
            _replace_symlink(self.fw.servo_port, self.servo_path)
        self.starts = 1
        log.info("%s firmware pid %s, link %s", "QEMU M7" if self.qemu else "host",
                 self.fw.pid, self.link_path)

    def _kill_stale(self) -> None:
        """A SIGKILLed previous incarnation could not stop its firmware: do it now."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def step(self, clock: Clock, inputs: dict) -> Outputs | None:
        if not self.fw.alive:
            # Let the supervisor's restart policy handle it (and count it).
            raise RuntimeError(f"firmware process exited: {self.fw.stderr_text()[-500:]}"
                               if hasattr(self.fw, "stderr_text") else "firmware process exited")
        return None

    def stats(self) -> dict[str, Any]:
        return {"firmware_pid": self.fw.pid, "qemu": self.qemu, "link": str(self.link_path)}

    def close(self) -> None:
        self.fw.close()
        try:
            self.pid_file.unlink()
        except OSError:
            pass
