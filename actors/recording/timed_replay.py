"""Timed replay (``edgevla replay``, the default): republishing a recording on the bus.

Every recorded message is republished bit-identically (the stored wire frames,
`bus.Publisher.send_raw`) on its topic's endpoint in ``--run-dir``, at its original ``t_pub_ns``
spacing divided by ``--speed``. Live actors (``--replace``) run in this process on a clock that
reads *recording time* (so chunk ``t0_ns`` and capture stamps keep their meaning) and advances
with wall time x speed; their outputs go on the bus too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from edgevla.actors.recording.mcap_reader import RecordedMessage
from edgevla.actors.recording.replay_setup import live_specs
from edgevla.actors.runtime.actor import Actor
from edgevla.actors.runtime.inprocess import InProcessGraph, Published
from edgevla.actors.wire.bus import Publisher
from edgevla.actors.wire.endpoints import topic_endpoint


class ReplayClock:
    """Recording time that advances with wall time x speed (for live actors in timed mode)."""

    def __init__(self, t_rec0_ns: int, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"--speed must be > 0, got {speed}")
        self.t_rec0 = int(t_rec0_ns)
        self.speed = float(speed)
        self.t_wall0 = time.monotonic_ns()

    def now_ns(self) -> int:
        return self.t_rec0 + int((time.monotonic_ns() - self.t_wall0) * self.speed)

    def sleep_until_ns(self, t_ns: int) -> None:
        wall = self.t_wall0 + (t_ns - self.t_rec0) / self.speed
        dt = (wall - time.monotonic_ns()) / 1e9
        if dt > 0:
            time.sleep(dt)


@dataclass
class TimedReplayStats:
    published: dict[str, int]
    dropped: dict[str, int]
    live_outputs: dict[str, int]
    wall_s: float
    recording_s: float
    max_lateness_ms: float  # how far behind schedule a publish ever was
    run_dir: str


def replay_timed(messages: list[RecordedMessage], run_dir: str | Path, *, speed: float = 1.0,
                 graph: Any = None, replace: Iterable[str] = (),
                 overrides: dict[str, dict[str, Any]] | None = None,
                 kinds: dict[str, type[Actor]] | None = None, warmup_s: float = 0.3,
                 progress: Callable[[int, int], None] | None = None) -> TimedReplayStats:
    """Republish on the bus with original timing / speed; live actors run in this process."""
    import zmq

    live = live_specs(graph, replace, overrides) if replace else {}
    suppressed = {t for s in live.values() for t in s.outputs.values()}
    external = [m for m in messages if m.topic not in suppressed]
    topics = sorted({m.topic for m in external} | suppressed)
    ctx = zmq.Context()
    pubs = {t: Publisher(ctx, topic_endpoint(run_dir, t, 0), producer="replay") for t in topics}
    time.sleep(warmup_s)  # let subscribers (re)connect: PUB/SUB drops until they have
    published: dict[str, int] = {t: 0 for t in topics}
    dropped: dict[str, int] = {t: 0 for t in topics}
    live_out: dict[str, int] = {}
    lateness = [0.0]
    t0 = messages[0].publish_time_ns if messages else 0
    t_end = messages[-1].publish_time_ns if messages else 0
    clock = ReplayClock(t0, speed)
    count = [0]

    def on_message(p: Published) -> None:
        late = (clock.now_ns() - p.t_pub_ns) / speed / 1e6
        lateness[0] = max(lateness[0], late)
        ok = pubs[p.topic].send_raw(p.frames)
        published[p.topic] += ok
        dropped[p.topic] += not ok
        if p.source:
            live_out[p.topic] = live_out.get(p.topic, 0) + 1
        else:
            count[0] += 1
            if progress and count[0] % 50 == 0:
                progress(count[0], len(external))

    g = InProcessGraph(live, clock=clock, kinds=kinds, external=external, start_ns=t0,
                       on_message=on_message, keep_published=False)
    wall0 = time.monotonic()
    try:
        g.run_until(t_end)
    finally:
        g.close()
        for p in pubs.values():
            p.close()
        ctx.term()
    if progress:
        progress(len(external), len(external))
    return TimedReplayStats(published=published, dropped=dropped, live_outputs=live_out,
                            wall_s=time.monotonic() - wall0, recording_s=(t_end - t0) / 1e9,
                            max_lateness_ms=round(lateness[0], 3), run_dir=str(run_dir))
