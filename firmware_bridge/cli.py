"""`edgevla mcu ...`: build, run and talk to the M7 firmware.

    edgevla mcu build [--target host|host-asan|qemu-m7|all]
    edgevla mcu sim [--qemu] [--servo pty|loopback] [--watchdog-ms N] [--enable-at-boot]
    edgevla mcu ping PORT [-n N]          round trips, clock offset/drift, one STATE
    edgevla mcu state PORT [--watch S]    print STATE reports
    edgevla mcu size                      flash/RAM of the Cortex-M7 image
"""

from __future__ import annotations

import argparse
import sys

from edgevla.actors.console.values import count
from edgevla.firmware_bridge.firmware.build import FirmwareBuildError, ensure_built
from edgevla.firmware_bridge.firmware.launch import HostFirmware, QemuFirmware
from edgevla.firmware_bridge.link.connection import LinkDown, McuLink


def _cmd_build(args) -> int:
    targets = ["host", "host-asan", "qemu-m7"] if args.target == "all" else [args.target]
    for t in targets:
        try:
            path = ensure_built(t)
        except FirmwareBuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{t}: {path}")
    return 0


def _cmd_size(args) -> int:
    import shutil
    import subprocess

    try:
        elf = ensure_built("qemu-m7")
    except FirmwareBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tool = shutil.which("arm-none-eabi-size")
    if tool is None:
        print("error: arm-none-eabi-size not found (apt-get install gcc-arm-none-eabi)",
              file=sys.stderr)
        return 1
    out = subprocess.run([tool, str(elf)], capture_output=True, text=True, check=True).stdout
    print(out.rstrip())
    text, data, bss = (int(x) for x in out.splitlines()[1].split()[:3])
    print(f"flash (text+data): {text + data} bytes, RAM (data+bss incl. 8 KiB stack): "
          f"{data + bss} bytes")
    return 0


def _cmd_sim(args) -> int:
    import signal
    import threading

    try:
        if args.qemu:
            fw = QemuFirmware(realtime=args.realtime)
        else:
            fw = HostFirmware(servo=args.servo, watchdog_ms=args.watchdog_ms,
                              state_period_ms=args.state_period_ms,
                              enable_at_boot=args.enable_at_boot, sanitize=args.sanitize,
                              realtime=args.realtime)
        fw.start()
    except (FirmwareBuildError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"firmware: {'QEMU Cortex-M7 (mps2-an500)' if args.qemu else 'host build'}, "
              f"pid {fw.pid}")
        print(f"link port:  {fw.link_port}  (-> {fw.link_pty})")
        if getattr(fw, "servo_port", None):
            print(f"servo port: {fw.servo_port}  (-> {fw.servo_pty}; Feetech STS bus, "
                  "attach a FeetechBusSim)")
        else:
            print("servo port: none (servos simulated inside the firmware)")
        if args.realtime and not fw.realtime_active:
            print("note: SCHED_FIFO not permitted here; running at normal priority")
        print("Ctrl-C to stop.", flush=True)
        while not stop.is_set() and fw.alive:
            stop.wait(0.5)
        if not fw.alive:
            print("firmware exited:\n" + "\n".join(fw.log_lines[-10:]), file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        fw.close()
    return 0


def _cmd_ping(args) -> int:
    import numpy as np

    try:
        with McuLink(args.port, baudrate=args.baudrate) as link:
            rtts = [link.ping(args.timeout) for _ in range(args.n)]
            ok = np.array([r for r in rtts if r is not None], dtype=np.float64) / 1e6
            if len(ok) == 0:
                print(f"no answer from {args.port} ({args.n} pings)", file=sys.stderr)
                return 1
            print(f"{len(ok)}/{args.n} pongs; RTT ms p50 {np.percentile(ok, 50):.3f} "
                  f"p99 {np.percentile(ok, 99):.3f} max {ok.max():.3f}")
            est = link.clock_estimate()
            if est:
                print(f"clock: mcu - host offset {est.offset_ns / 1e6:.3f} ms, drift "
                      f"{est.drift_ppm:.2f} ppm, residual {est.residual_ns / 1e3:.1f} us")
            link.request_state()
            st = link.wait_state(timeout_s=1.0)
            if st:
                _print_state(st)
    except LinkDown as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_state(st) -> None:
    fmt = lambda v: " ".join(f"{x:+.4f}" for x in v)  # noqa: E731
    print(f"t_mcu={st.t_mcu_us} us mode={st.mode_name} faults={st.faults_str} "
          f"queue={st.queue_depth} underruns={st.underruns} late={st.late} "
          f"dups={st.duplicates} seq_gaps={st.seq_gaps} rx={st.rx_frames}/{st.rx_errors} err")
    print(f"  measured  [{fmt(st.measured)}] rad")
    print(f"  commanded [{fmt(st.commanded)}] rad")


def _cmd_state(args) -> int:
    import time

    try:
        with McuLink(args.port, baudrate=args.baudrate, ping_period_s=0) as link:
            end = time.monotonic() + args.watch
            while True:
                link.request_state()
                st = link.wait_state(timeout_s=1.0)
                if st is None:
                    print(f"no STATE from {args.port}", file=sys.stderr)
                    return 1
                _print_state(st)
                if time.monotonic() >= end:
                    return 0
                time.sleep(0.5)
    except LinkDown as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def add_parser(sub) -> None:
    p = sub.add_parser("mcu", help="build, run (host pty or QEMU M7) and talk to the M7 firmware",
                       description="The Cortex-M7 motor firmware (mcu/) and its link. "
                                   "Protocol: mcu/PROTOCOL.md.")
    msub = p.add_subparsers(dest="mcu_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    b = msub.add_parser("build", help="make -C mcu TARGET")
    b.add_argument("--target", default="host", choices=["host", "host-asan", "qemu-m7", "all"])
    b.set_defaults(func=_cmd_build)

    s = msub.add_parser("sim", help="run the host build (or --qemu the M7 build) and print "
                                    "its ports until Ctrl-C",
                        description="Start the firmware the sim profile uses. The host build "
                                    "exposes the link and the Feetech servo bus on ptys; "
                                    "--qemu runs the Cortex-M7 image on qemu-system-arm "
                                    "-M mps2-an500 with UART0 on a pty.")
    s.add_argument("--qemu", action="store_true", help="run the Cortex-M7 build on QEMU")
    s.add_argument("--servo", choices=["pty", "loopback"], default="pty",
                   help="servo bus on a pty (default) or simulated inside the firmware")
    s.add_argument("--watchdog-ms", type=count(0), default=500,
                   help="host silence before the firmware holds (0 = off)")
    s.add_argument("--state-period-ms", type=count(0), default=10,
                   help="STATE report period (0 = only on GET_STATE)")
    s.add_argument("--enable-at-boot", action="store_true", help="start RUNNING, not DISABLED")
    s.add_argument("--sanitize", action="store_true", help="run the ASan/UBSan build")
    s.add_argument("--realtime", action="store_true",
                   help="run the firmware SCHED_FIFO (needs CAP_SYS_NICE), as the M7 would be")
    s.set_defaults(func=_cmd_sim)

    pg = msub.add_parser("ping", help="round-trip times, clock estimate and one STATE")
    pg.add_argument("port", help="serial port: /dev/ttyRPMSG*, /dev/ttyUSB*, a pty")
    pg.add_argument("-n", type=int, default=50, help="number of pings")
    pg.add_argument("--timeout", type=float, default=0.5, help="seconds to wait per ping")
    pg.add_argument("--baudrate", type=int, default=1_000_000)
    pg.set_defaults(func=_cmd_ping)

    st = msub.add_parser("state", help="print the firmware's STATE")
    st.add_argument("port")
    st.add_argument("--watch", type=float, default=0.0, metavar="S",
                    help="keep printing for S seconds")
    st.add_argument("--baudrate", type=int, default=1_000_000)
    st.set_defaults(func=_cmd_state)

    sz = msub.add_parser("size", help="flash/RAM of the Cortex-M7 image (arm-none-eabi-size)")
    sz.set_defaults(func=_cmd_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgevla")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
