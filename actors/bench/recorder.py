"""`edgevla bench recorder`: can the MCAP recorder keep up with three 640x480 cameras at 30 fps?

Rows, all measured in the same run on the same disk:

* ``raw write`` (baseline): ``os.write`` of 640x480x3 blocks to a file, the physical floor;
* ``recorder max, <compression>``: `RecorderActor.step` fed 3-frame batches as fast as it takes
  them, in process (no bus): what the recorder itself can sustain;
* ``live``: the ``--record`` recorder actor under the real supervisor and runtime, subscribed
  to three camera topics that get 640x480 frames at 30 fps each for 60 s (``--quick``: 10 s).
  Afterwards every recorded file is read back with the stock mcap reader and every frame sent
  is looked for: a missing one is a frame the recorder lost (HWM overflow, slow write). Run
  twice: with the runtime's image HWM (4 frames queued per subscriber at the camera) and with 32,
  which separates "the recorder is too slow" from "the machine stalled the recorder's socket
  thread for more than 4 frame periods".

Summary: ``dropped_messages`` (lost frames, the acceptance number: 0), ``keeps_up``,
``required_MB_s`` (3 x 921,600 B x 30), ``recorded_MB_s``, ``headroom_x`` (recorder max /
required), ``recorder_vs_raw_write`` (recorder max / raw write).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.console.bench_report import BenchResult
from edgevla.actors.recording.mcap_reader import recording_files
from edgevla.actors.recording.recorder import RecorderActor
from edgevla.actors.recording.tap import add_recorder
from edgevla.actors.runtime.graph import parse_graph
from edgevla.actors.runtime.replica import Replica
from edgevla.actors.runtime.supervisor import Supervisor
from edgevla.actors.wire.bus import IMAGE_HWM, Publisher
from edgevla.actors.wire.clock import WallClock
from edgevla.actors.wire.endpoints import topic_endpoint
from edgevla.actors.wire.messages import Frame

W, H, CAMS, FPS = 640, 480, 3, 30
FRAME_BYTES = W * H * 3


def _raw_write(dir_: Path, seconds: float) -> dict[str, Any]:
    block = np.random.default_rng(0).integers(0, 256, FRAME_BYTES, dtype=np.uint8).tobytes()
    path = dir_ / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            os.write(fd, block)
            n += 1
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    path.unlink()
    return {"case": "raw write (baseline)", "frames": n, "seconds": round(dt, 2),
            "MB_s": round(n * FRAME_BYTES / dt / 1e6, 1), "frames_per_s": round(n / dt, 1)}


def _recorder_max(dir_: Path, seconds: float, compression: str) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    # camera-like content: smooth gradient + noise (compresses like a real image, not zeros)
    base = (np.arange(W, dtype=np.uint16)[None, :, None] + np.arange(H, dtype=np.uint16)[:, None, None])
    img = ((base + rng.integers(0, 24, (H, W, 3))) % 256).astype(np.uint8)
    rec = RecorderActor("recorder")
    # inline writes: this row measures the writing itself, not how fast a queue fills
    rec.setup({"path": str(dir_ / f"max-{compression}.mcap"), "compression": compression,
               "writer_thread": False})
    clock = WallClock()
    n = 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            batch = {f"cam/{c}": [Frame(camera=str(c), image=img, seq=n + 1,
                                        t_pub_ns=clock.now_ns(), producer=f"cam{c}.0")]
                     for c in range(CAMS)}
            rec.step(clock, batch)
            n += CAMS
    finally:
        rec.close()
    dt = time.perf_counter() - t0
    size = sum(Path(f).stat().st_size for f in rec.stats()["files"])
    for f in rec.stats()["files"]:
        Path(f).unlink()
    return {"case": f"recorder max, {compression}", "frames": n, "seconds": round(dt, 2),
            "MB_s": round(n * FRAME_BYTES / dt / 1e6, 1), "frames_per_s": round(n / dt, 1),
            "file_MB": round(size / 1e6, 1)}


LIVE_GRAPH = f"""\
name: bench-recorder
external_topics: [{", ".join(f"cam/{c}" for c in range(CAMS))}]
actors:
  noop:
    kind: counter_sink
    inputs: {{in: cam/0}}
    restart: {{policy: never}}
"""


def _camera_images() -> list[np.ndarray]:
    """One pre-rendered image per camera: a gradient plus noise, like a real frame."""
    rng = np.random.default_rng(2)
    base = (np.arange(W, dtype=np.uint16)[None, :, None]
            + np.arange(H, dtype=np.uint16)[:, None, None])
    return [((base + 40 * c + rng.integers(0, 24, (H, W, 3))) % 256).astype(np.uint8)
            for c in range(CAMS)]


def _send_cameras(sup: Supervisor, pubs: list[Publisher], images: list[np.ndarray],
                  seconds: float) -> tuple[int, int, dict[int, float]]:
    """Frames on every camera topic at FPS, the supervisor polled in between.

    Returns (frames sent, ticks the loop itself missed by > 1 period, tick -> how late it was
    sent in ms).
    """
    sent = 0
    late_ticks = 0
    late_ms: dict[int, float] = {}
    period = 1.0 / FPS
    t0 = time.monotonic()
    n = 0
    while n < int(seconds * FPS):
        t_next = t0 + n * period
        while (now := time.monotonic()) < t_next:
            sup.poll_once(max(0, int((t_next - now) * 1000)))
        if now - t_next > period:
            late_ticks += 1
        n += 1
        late_ms[n] = (now - t_next) * 1e3
        for c, pub in enumerate(pubs):
            pub.send(f"cam/{c}", Frame(camera=f"c{c}", image=images[c], seq=n,
                                       t_capture_ns=time.monotonic_ns()))
            sent += 1
    return sent, late_ticks, late_ms


def _read_back(files: list[Path]) -> tuple[dict[str, list[int]], float]:
    """Per camera topic the sequence numbers in the files (stock mcap reader), and the seconds
    between the first and the last frame received."""
    from mcap.reader import make_reader

    seqs: dict[str, list[int]] = {f"cam/{c}": [] for c in range(CAMS)}
    t_first = t_last = None
    for f in files:
        with open(f, "rb") as fh:
            for _, ch, m in make_reader(fh).iter_messages(log_time_order=False):
                if ch.topic in seqs:
                    seqs[ch.topic].append(m.sequence)
                    t_first = m.log_time if t_first is None else min(t_first, m.log_time)
                    t_last = m.log_time if t_last is None else max(t_last, m.log_time)
    return seqs, ((t_last or 0) - (t_first or 0)) / 1e9


def _count_lost(seqs: dict[str, list[int]], n_ticks: int,
                late_ms: dict[int, float]) -> tuple[int, int, int]:
    """(lost, recorded, lost in a burst the source sent after stalling itself)."""
    lost = 0
    recorded = 0
    lost_late = 0
    for s in seqs.values():
        a = np.unique(np.array(s, dtype=np.int64))
        # every frame 1..N was sent while the recorder was subscribed: anything missing is lost
        missing = sorted(set(range(1, n_ticks + 1)) - set(a.tolist()))
        lost += len(missing)
        # lost in a burst the source sent after stalling itself (> 2 periods late)?
        lost_late += sum(1 for k in missing if late_ms.get(k, 0) > 2e3 / FPS)
        recorded += a.size
    return lost, recorded, lost_late


def _record_live(sup: Supervisor, rec: Replica, pubs: list[Publisher], images: list[np.ndarray],
                 seconds: float) -> tuple[dict[str, Any], int, int, dict[int, float]]:
    """Wait for the recorder, send, let it drain; returns its stats and what `_send_cameras`
    returns."""
    deadline = time.monotonic() + 15
    while not rec.last_stats and time.monotonic() < deadline:  # recorder up
        sup.poll_once(50)
    time.sleep(0.3)  # its SUB sockets connect
    sent, late_ticks, late_ms = _send_cameras(sup, pubs, images, seconds)
    end = time.monotonic() + 1.0  # let the recorder drain
    while time.monotonic() < end:
        sup.poll_once(50)
    reply = sup.actor_request(rec, {"cmd": "stats"}, timeout_ms=3000)
    rec_stats = reply["stats"] if reply and reply.get("ok") else {}
    return rec_stats, sent, late_ticks, late_ms


def _live(dir_: Path, seconds: float, run_base: Path, hwm: int) -> tuple[dict[str, Any], int]:
    """The recorder actor under the real supervisor/runtime, fed three 30 fps camera streams.

    The cameras are one light publisher loop in this process (pre-rendered frames, zero-copy
    sends on the graph's external topics) so that on a loaded machine the cameras, not the
    recorder, are not what limits the rate.
    """
    import zmq

    out = dir_ / "live.mcap"
    graph = add_recorder(parse_graph(LIVE_GRAPH, "bench-recorder.yaml"), str(out))
    sup = Supervisor(graph, base_dir=str(run_base))
    ctx = zmq.Context()
    pubs = [Publisher(ctx, topic_endpoint(sup.run_dir, f"cam/{c}", 0), producer=f"cam{c}.0",
                      hwm=hwm) for c in range(CAMS)]
    images = _camera_images()
    sup.start()
    rec = sup.replicas["recorder"][0]
    try:
        rec_stats, sent, late_ticks, late_ms = _record_live(sup, rec, pubs, images, seconds)
    finally:
        sup.stop()
        for p in pubs:
            p.close()
        ctx.term()
    files = recording_files(out)
    seqs, span = _read_back(files)
    lost, recorded, lost_late = _count_lost(seqs, int(seconds * FPS), late_ms)
    for f in files:
        f.unlink()
    return ({"case": f"live {CAMS}x cam {W}x{H} @{FPS} fps -> recorder actor (runtime), "
                     f"camera HWM {hwm}" + (" (runtime default)" if hwm == IMAGE_HWM else ""),
             "frames": recorded, "seconds": round(span, 2),
             "MB_s": round(recorded * FRAME_BYTES / span / 1e6, 1) if span else 0.0,
             "frames_per_s": round(recorded / span, 1) if span else 0.0,
             "sent": sent, "lost": lost, "lost_in_source_bursts": lost_late,
             "files": len(files), "late_ticks": late_ticks,
             "source_late_p99_ms": round(float(np.percentile(list(late_ms.values()), 99)), 1),
             "loadavg_1min": round(os.getloadavg()[0], 2),
             "recorder_loop_p99_ms": rec_stats.get("loop_p99_ms"),
             "recorder_cpu_s": rec_stats.get("cpu_s"),
             "recorder_error": (rec_stats.get("actor_stats") or {}).get("error")}, lost)


def run(quick: bool = False) -> BenchResult:
    seconds_live = 10.0 if quick else 60.0
    seconds_tp = 2.0 if quick else 5.0
    tmp = Path(tempfile.mkdtemp(prefix="edgevla-bench-rec-"))
    run_base = Path(tempfile.mkdtemp(prefix="evb"))
    try:
        rows = [_raw_write(tmp, seconds_tp)]
        rows.append(_recorder_max(tmp, seconds_tp, "none"))
        rows.append(_recorder_max(tmp, seconds_tp, "lz4"))
        live, holes = _live(tmp, seconds_live, run_base, IMAGE_HWM)
        rows.append(live)
        live32, holes32 = _live(tmp, seconds_live, run_base, 32)
        rows.append(live32)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(run_base, ignore_errors=True)
    required = CAMS * FRAME_BYTES * FPS / 1e6
    rec_max = rows[1]["MB_s"]
    summary = {
        "dropped_messages": holes,
        "keeps_up": holes == 0 and not live.get("recorder_error"),
        # the recorder itself: no loss once the camera keeps more than 4 frames for it
        "recorder_keeps_up_hwm32": holes32 == 0 and not live32.get("recorder_error"),
        "source_late_ticks": live["late_ticks"],
        "lost_in_source_bursts": live["lost_in_source_bursts"],
        "dropped_messages_hwm32": holes32,
        "loadavg_1min": live["loadavg_1min"],
        "live_seconds": live["seconds"],
        "required_MB_s": round(required, 1),
        "recorded_MB_s": live["MB_s"],
        "headroom_x": round(rec_max / required, 2),
        "recorder_vs_raw_write": round(rec_max / rows[0]["MB_s"], 3),
    }
    return BenchResult(
        title=f"recorder: {CAMS}x {W}x{H} @ {FPS} fps to MCAP",
        rows=rows, summary=summary,
        columns=["case", "frames", "seconds", "MB_s", "frames_per_s", "file_MB", "sent", "lost",
                 "lost_in_source_bursts", "recorder_loop_p99_ms", "recorder_cpu_s"],
        notes=["live: frames are sent only once the recorder is subscribed; lost = sent - "
               "distinct frames in the file (read back with the stock mcap reader)",
               "source_late_ticks: camera ticks the sending loop itself missed by > 1 period; "
               "lost_in_source_bursts: lost frames of ticks sent > 2 periods late, i.e. in a "
               "burst after the machine stalled the sender (camera publishers keep only 4 "
               "frames, the runtime's image HWM)",
               "default recorder settings: compression none, 1 MiB chunks, commit every 200 ms"])
