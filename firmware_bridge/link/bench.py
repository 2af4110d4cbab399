"""`edgevla bench link`: the M7 link on the host build (pty) and on the QEMU Cortex-M7.

Per target: PING/PONG round trip p50/p99, sustained waypoint rate (full 14-point frames sent
back to back), a 100 Hz waypoint stream (lost = late + sequence gaps + decode errors + queue
overflow; underruns), and the clock-sync error (the host build runs with a known simulated
drift, so the drift error is exact; the offset error is how far fresh PONG stamps land from
the model). Baseline measured in the same run: a pty echo between two Python threads, the
floor any pty link pays, so the headline is a ratio.
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np

from edgevla.actors.console.bench_report import BenchResult
from edgevla.firmware_bridge.firmware.build import ensure_built
from edgevla.firmware_bridge.firmware.launch import HostFirmware, QemuFirmware, realtime_self
from edgevla.firmware_bridge.link import codec as p
from edgevla.firmware_bridge.link.connection import McuLink


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _pct(x, q) -> float:
    return float(np.percentile(np.asarray(x, dtype=np.float64), q)) if len(x) else float("nan")


def _pty_echo_rtts(n: int) -> np.ndarray:
    """Round trip of an 18-byte frame through a pty pair and a Python echo thread."""
    import serial

    master, slave = os.openpty()
    name = os.ttyname(slave)
    stop = threading.Event()

    def echo():
        while not stop.is_set():
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            os.write(master, data)

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    ser = serial.Serial(name, 1_000_000, timeout=1.0)
    frame = p.encode_frame(p.Ping(1), 1)
    out = []
    try:
        for _ in range(n):
            t0 = time.monotonic_ns()
            ser.write(frame)
            got = b""
            while len(got) < len(frame):
                got += ser.read(len(frame) - len(got))
            out.append(time.monotonic_ns() - t0)
    finally:
        stop.set()
        ser.close()
        os.close(slave)
        os.close(master)  # unblocks the echo thread's read
        th.join(1.0)
    return np.array(out[5:], dtype=np.int64)


def _rtts(link, n: int) -> np.ndarray:
    for _ in range(5):  # warm up (QEMU notices a pty peer only after its first poll)
        link.ping(timeout_s=1.0)
    r = [link.ping(timeout_s=1.0) for _ in range(n)]
    return np.array([x for x in r if x is not None], dtype=np.int64)


def _fresh_state(link, timeout_s: float = 30.0):
    """The STATE after everything sent so far was processed (QEMU's UART may lag behind)."""
    return link.barrier(timeout_s)


def _sustained_rate(link, seconds: float) -> dict:
    """Full WAYPOINTS frames as fast as the link takes them; RESET on each frame keeps the
    queue short (no overflow), so this measures the link and decoder, not the queue."""
    link.enable()
    before = _fresh_state(link)
    tx0 = link.stats()["tx_frames"]
    t_end = time.monotonic() + seconds
    frames = 0
    pos = np.zeros((14, 6), np.float32)
    flags = [p.WP_RESET] + [0] * 13
    t_start = time.monotonic()
    while time.monotonic() < t_end:
        now_mcu = int(link.host_to_mcu_us(time.monotonic_ns()))
        # far enough ahead that a backlog in the pty (QEMU drains ~35 kB/s) is never late
        ts = now_mcu + 10_000_000 + np.arange(14) * 1000
        if not link.send_waypoints_mcu(ts, pos, flags):
            break
        frames += 1
    elapsed = time.monotonic() - t_start
    after = _fresh_state(link)
    sent = link.stats()["tx_frames"] - tx0  # waypoint frames + the GET_STATE
    received = after.rx_frames - before.rx_frames
    elapsed_drained = time.monotonic() - t_start
    lost_frames = max(0, sent - received)
    # the rate the MCU took them in: until the last one was processed (a pty buffers ~KBs)
    return {"waypoints_per_s": frames * 14 / max(elapsed, elapsed_drained), "frames": frames,
            "lost": lost_frames * 14 + (after.late - before.late),
            "seq_gaps": after.seq_gaps - before.seq_gaps,
            "kbytes_per_s": frames * len(p.encode_frame(p.Waypoints(
                [p.Waypoint(1, (0.0,) * 6)] * 14), 0)) / max(elapsed, elapsed_drained) / 1e3}


STREAM_LEAD_S = 0.5  # each waypoint is sent this long before it is due


def _stream(link, seconds: float, rate_hz: int = 100, lead_s: float = STREAM_LEAD_S) -> dict:
    link.enable()
    link.wait_state(lambda s: s.mode == p.MODE_RUNNING)
    before = _fresh_state(link)
    n = int(seconds * rate_hz)
    period = int(1e9 / rate_hz)
    t_start = time.monotonic_ns() + int(lead_s * 1e9)
    max_send_lag_ms = 0.0
    for k in range(n):
        t_k = t_start + k * period
        pos = (0.8 * np.sin(2 * np.pi * 0.25 * k / rate_hz + np.arange(6) * 0.5))
        link.send_waypoints([t_k], pos[None].astype(np.float32),
                            flags=p.WP_END if k == n - 1 else 0)
        due = t_k - int(lead_s * 1e9)
        max_send_lag_ms = max(max_send_lag_ms, (time.monotonic_ns() - due) / 1e6)
        dt = (due + period - time.monotonic_ns()) / 1e9
        if dt > 0:
            time.sleep(dt)
    time.sleep(lead_s + 0.2)
    after = _fresh_state(link)
    lost = ((after.late - before.late) + (after.seq_gaps - before.seq_gaps) +
            (after.rx_errors - before.rx_errors) +
            (1 if after.faults & p.FAULT_QUEUE_OVERFLOW else 0) * n)
    return {"sent": n, "lost": int(lost), "underruns": after.underruns - before.underruns,
            "max_send_lag_ms": max_send_lag_ms}


def _clock_error(link, settle_s: float, true_drift_ppm: float | None) -> dict:
    old = link.ping_period_s
    link.ping_period_s = 0.02
    time.sleep(settle_s)
    link.ping_period_s = old
    est = link.sync_clock(20)
    errs = []
    for _ in range(30):
        sample = link.ping_sample(timeout_s=1.0)
        if sample is None:
            continue
        t_send, stamp, t_recv = sample
        errs.append(abs(int(est.host_to_mcu_us((t_send + t_recv) // 2)) - stamp))
    out = {"offset_err_us_p50": _pct(errs, 50), "offset_err_us_max": float(max(errs)),
           "drift_ppm": est.drift_ppm}
    if true_drift_ppm is not None:
        out["drift_err_ppm"] = abs(est.drift_ppm - true_drift_ppm)
    return out


def _m7_size() -> tuple[int, int] | None:
    import subprocess

    if shutil.which("arm-none-eabi-size") is None:
        return None
    elf = ensure_built("qemu-m7")
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    text, data, bss = (int(x) for x in out.splitlines()[1].split()[:3])
    return text + data, data + bss


def _bench_target(name: str, fw, link_kwargs, n_pings, rate_s, stream_s, clock_s,
                  true_drift_ppm, con, config: tuple[int, int] | None = None) -> dict:
    with fw, McuLink(fw.link_port, **link_kwargs) as link:
        if link.wait_state(timeout_s=10.0) is None:
            raise RuntimeError(f"{name}: no STATE from the firmware")
        if config is not None:
            link.set_config(*config)
        con.print(f"[link bench] {name}: {n_pings} pings")
        rtts = _rtts(link, n_pings)
        con.print(f"[link bench] {name}: clock sync ({clock_s:.0f} s)")
        clock = _clock_error(link, clock_s, true_drift_ppm)
        link.ping_period_s = 0  # keep the counters clean during the throughput tests
        con.print(f"[link bench] {name}: sustained waypoint rate ({rate_s:.0f} s)")
        rate = _sustained_rate(link, rate_s)
        link.ping_period_s = 0.25
        con.print(f"[link bench] {name}: 100 Hz stream ({stream_s:.0f} s)")
        with realtime_self() as rt:
            stream = _stream(link, stream_s)
        link.hold()
    return {"target": name, "pings": len(rtts), "rtt_p50_ms": _pct(rtts, 50) / 1e6,
            "rtt_p99_ms": _pct(rtts, 99) / 1e6, "rtt_max_ms": float(rtts.max()) / 1e6,
            "waypoints_per_s": rate["waypoints_per_s"], "link_kB_per_s": rate["kbytes_per_s"],
            "rate_lost": rate["lost"], "stream_s": stream_s, "stream_sent": stream["sent"],
            "stream_lost": stream["lost"], "underruns": stream["underruns"],
            "max_send_lag_ms": stream["max_send_lag_ms"], "realtime": bool(rt and
                                                                         fw.realtime_active),
            "clock_offset_err_us_p50": clock["offset_err_us_p50"],
            "clock_drift_err_ppm": clock.get("drift_err_ppm", float("nan")),
            "seq_gaps": rate["seq_gaps"]}


def run(quick: bool = False):
    con = _console()
    n_pings = 300 if quick else 2000
    rate_s = 3.0 if quick else 10.0
    stream_s = 10.0 if quick else 60.0
    clock_s = 3.0 if quick else 10.0
    drift_ppm = 100.0
    rows = []
    notes = []

    con.print("[link bench] baseline: pty echo between two Python threads")
    echo = _pty_echo_rtts(n_pings)
    rows.append({"target": "baseline: pty echo (python)", "pings": len(echo),
                 "rtt_p50_ms": _pct(echo, 50) / 1e6, "rtt_p99_ms": _pct(echo, 99) / 1e6,
                 "rtt_max_ms": float(echo.max()) / 1e6})

    host = _bench_target("host build (pty)",
                         HostFirmware(servo="loopback", clock_drift_ppm=drift_ppm,
                                      clock_offset_us=5_000_000, realtime=True),
                         {}, n_pings, rate_s, stream_s, clock_s, drift_ppm, con)
    rows.append(host)
    qemu = None
    if shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"):
        # STATE at 20 Hz instead of 100 Hz: every byte costs QEMU's UART a main-loop round
        # trip, and the 10 kB/s of reports alone took half of its measured capacity here
        qemu = _bench_target("QEMU Cortex-M7 (mps2-an500, UART0 pty)", QemuFirmware(), {},
                             n_pings, rate_s, stream_s, clock_s, None, con,
                             config=(2000, 50))
        rows.append(qemu)
    else:
        notes.append("qemu-system-arm or gcc-arm-none-eabi missing: QEMU row skipped")
    size = _m7_size()
    lost = host["stream_lost"] + host["rate_lost"] + (
        (qemu["stream_lost"] + qemu["rate_lost"]) if qemu else 0)
    summary = {
        "host_rtt_p50_ms": host["rtt_p50_ms"], "host_rtt_p99_ms": host["rtt_p99_ms"],
        "qemu_rtt_p50_ms": qemu["rtt_p50_ms"] if qemu else None,
        "qemu_rtt_p99_ms": qemu["rtt_p99_ms"] if qemu else None,
        "pty_echo_rtt_p50_ms": rows[0]["rtt_p50_ms"],
        "host_rtt_p50_vs_echo": host["rtt_p50_ms"] / rows[0]["rtt_p50_ms"],
        "waypoints_lost": int(lost),
        "underruns": int(host["underruns"] + (qemu["underruns"] if qemu else 0)),
        "host_waypoints_per_s": host["waypoints_per_s"],
        "qemu_waypoints_per_s": qemu["waypoints_per_s"] if qemu else None,
        "clock_sync_err_us_p50": host["clock_offset_err_us_p50"],
        "clock_drift_err_ppm": host["clock_drift_err_ppm"],
        "qemu_clock_sync_err_us_p50": qemu["clock_offset_err_us_p50"] if qemu else None,
        "m7_flash_bytes": size[0] if size else None,
        "m7_ram_bytes": size[1] if size else None,
    }
    notes.append(f"100 Hz streams of {stream_s:.0f} s per target; waypoints sent "
                 f"{STREAM_LEAD_S * 1e3:.0f} ms ahead of time; lost = late + sequence gaps + "
                 "decode errors (+ overflow); firmware processes SCHED_FIFO where permitted")
    notes.append(f"host build runs with a simulated MCU clock drift of {drift_ppm:.0f} ppm; "
                 "clock_drift_err_ppm is |estimate - truth|")
    notes.append("QEMU without -icount: guest time follows the host clock; RTT includes "
                 "QEMU's UART/pty emulation, which moves one byte per main-loop round trip "
                 "(the CMSDK UART has no FIFO), so a loaded host stalls it for 100s of ms")
    load = os.getloadavg()
    notes.append("QEMU target: watchdog 2000 ms and STATE every 50 ms (set over the link)")
    notes.append(f"host load average during the run: {load[0]:.1f} / {load[1]:.1f} / "
                 f"{load[2]:.1f} on {os.cpu_count()} CPUs")
    summary["load_avg_1min"] = round(load[0], 2)
    cols = ["target", "pings", "rtt_p50_ms", "rtt_p99_ms", "rtt_max_ms", "waypoints_per_s",
            "rate_lost", "stream_sent", "stream_lost", "underruns", "max_send_lag_ms",
            "clock_offset_err_us_p50", "clock_drift_err_ppm"]
    return BenchResult(title="M7 link: round trip, waypoint rate, 100 Hz stream, clock sync",
                       rows=rows, summary=summary, columns=cols, notes=notes)
