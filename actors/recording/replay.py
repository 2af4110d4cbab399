"""Replay a recording: timed republishing on the bus, or stepwise on a virtual clock, with
recorded actors swapped for live ones, and a comparison of what the live ones produced.

Two modes:

* **timed** (default): every recorded message is republished bit-identically (the stored wire
  frames, `bus.Publisher.send_raw`) on its topic's endpoint in ``--run-dir``, at its original
  ``t_pub_ns`` spacing divided by ``--speed``. Live actors (``--replace``) run in this process on
  a clock that reads *recording time* (so chunk ``t0_ns`` and capture stamps keep their meaning)
  and advances with wall time x speed; their outputs go on the bus too.
* **step** (``--step``): no sockets, no wall time. The live actors run in the in-process driver
  (`inprocess.InProcessGraph`) on a `VirtualClock`; recorded messages are injected at their
  ``t_pub_ns``, the live actors step when they stepped in the recording. The result does not
  depend on machine speed.

Deterministic step replay — how an actor's steps are reconstructed (in this order):

1. a step trace ``_trace/<actor>`` in the recording (written by the in-process driver: the step
   time and the (topic, producer, seq) of every input consumed) gives the exact step times;
2. otherwise, for an executor (outputs `JointCommand`), ``t_target_ns - link_latency_ms``
   of each recorded command: the exact clock value its step read, also in a wall-clock run;
3. otherwise, for a rate-driven actor, its recorded outputs' ``t_pub_ns`` (minus the modelled
   latency) are taken as its step times;
4. otherwise it steps at the graph's ``rate_hz`` from the first recorded message (or, trigger
   driven, on each message of its trigger input).

Inputs follow the driver's delivery rule (visible ``delivery_ns`` after ``t_pub_ns``), which is
the rule the in-process run used, so for an in-process recording step replay is bit-exact. For
a recording of a multi-process wall-clock run the step times come from (2) or (3); which
inputs a step saw is then inferred from ``t_pub_ns + delivery_ns``, so a message published
within one bus hop of a step may land one step early or late, and for actors other than the
executor the clock read inside a step is not on the wire at all: close, but not guaranteed
bit-exact (``--compare`` says how close).

``--replace`` suppresses the recorded messages of the replaced actors' output topics; the live
actors' outputs are compared with them (``--compare``): per topic, message counts, how many are
bit-identical, and max/mean absolute difference over every array field.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, Callable, Iterable

import msgpack
import numpy as np

from edgevla.actors.recording.recorder import (TRACE_PREFIX, McapRecording, RecordedMessage, next_free_path,
                                               read_recording, recording_files)
from edgevla.actors.runtime.actor import Actor
from edgevla.actors.runtime.graph import expand_placeholders
from edgevla.actors.runtime.inprocess import ActorSpec, InProcessGraph, Published, actor_specs
from edgevla.actors.runtime.registry import resolve
from edgevla.actors.wire.bus import Publisher
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.endpoints import topic_endpoint
from edgevla.actors.wire.codec import decode_header
from edgevla.actors.wire.messages import message_type, scalar_field_names

log = logging.getLogger("edgevla.replay")


# ------------------------------------------------------------------------------ loading

def load_recording(path: str | Path, topics: list[str] | None = None
                   ) -> tuple[list[RecordedMessage], dict[str, list[int]]]:
    """Messages of a recording (with its rotated / restarted continuations), in t_pub order,
    plus the step traces: actor -> sorted step times."""
    files = recording_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no such recording")
    msgs: list[RecordedMessage] = []
    traces: dict[str, list[int]] = {}
    for f in files:
        for m in read_recording(f, include_internal=True):
            if m.topic.startswith(TRACE_PREFIX):
                rec = msgpack.unpackb(bytes(m.frames[0]), raw=False)
                traces.setdefault(str(rec["actor"]), []).append(int(rec["t_ns"]))
            elif topics is None or m.topic in topics:
                msgs.append(m)
    msgs.sort(key=lambda m: (m.publish_time_ns, m.log_time_ns))
    for t in traces.values():
        t.sort()
    return msgs, traces


def parse_sets(sets: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["executor.strategy=latest", ...]`` -> {actor: {param: value}} (values parsed as YAML)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for s in sets:
        key, sep, value = s.partition("=")
        actor, dot, param = key.partition(".")
        if not sep or not dot or not actor or not param:
            raise ValueError(f"--set {s!r}: expected ACTOR.PARAM=VALUE, e.g. "
                             f"executor.strategy=latest")
        try:
            out.setdefault(actor, {})[param] = yaml.safe_load(value)
        except (yaml.YAMLError, ValueError) as exc:
            raise ValueError(f"--set {s!r}: the value is not valid YAML: "
                             f"{getattr(exc, 'problem', None) or exc}") from None
    return out


# Replay runs offline: parameters that open a device are dropped from the live actors.
DEVICE_PARAMS = {"executor": ("mcu_port",)}


def live_specs(graph: Any, replace: Iterable[str],
               overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, ActorSpec]:
    """The replaced actors as the graph declares them, placeholders expanded as `run` would
    (``${GRAPH_DIR}``; there is no run dir offline) and without their device parameters."""
    specs = actor_specs(graph)
    graph_path = str(getattr(graph, "path", "<memory>"))
    live: dict[str, ActorSpec] = {}
    for name in replace:
        if name not in specs:
            raise KeyError(f"--replace {name!r}: the graph has no such actor; "
                           f"its actors: {', '.join(specs)}")
        spec = specs[name]
        params = {k: v for k, v in expand_placeholders(spec.params, graph_path, None).items()
                  if k not in DEVICE_PARAMS.get(spec.kind, ())}
        live[name] = dc_replace(spec, params=params)
    for name, params in (overrides or {}).items():
        if name not in live:
            raise KeyError(f"--set {name}.*: {name!r} is not replaced (live actors: "
                           f"{', '.join(live) or 'none'})")
        live[name] = dc_replace(live[name], params={**live[name].params, **params})
    return live


# ------------------------------------------------------------------------------ step mode

@dataclass
class StepReplay:
    live: list[str]
    suppressed_topics: list[str]
    replayed: dict[str, list[Published]]  # live outputs per topic
    recorded: dict[str, list[RecordedMessage]]  # the recorded messages they replace
    steps: dict[str, int]
    tick_source: dict[str, str]
    t_start_ns: int
    t_end_ns: int
    missing_inputs: dict[str, list[str]] = field(default_factory=dict)  # actor -> topics
    # topic -> (step time of each recorded message, of each replayed message), when known
    pair_keys: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)


def _tick_times(name: str, spec: ActorSpec, cls: type[Actor], traces: dict[str, list[int]],
                recorded_out: list[RecordedMessage], latency_ns: int
                ) -> tuple[list[int] | None, str]:
    trig = cls.trigger if cls.trigger and cls.trigger in spec.inputs else None
    if trig is not None:
        return None, f"trigger ({trig})"
    if traces.get(name):
        return traces[name], "step trace"
    hinted = [m for m in recorded_out if m.schema == "joint_command"]
    if hinted:
        # An executor's command targets now + link_latency: the exact clock reading of its step,
        # even in a wall-clock run where t_pub_ns was stamped later by the bus.
        link_ns = int(round(float(spec.params.get("link_latency_ms", 0.0)) * 1e6))
        ticks = {int(m.decode().t_target_ns) - link_ns for m in hinted}
        # Before its first chunk an executor commands nothing but still ticks and asks for
        # chunks (startup requests): those steps are known only by what they published.
        first = min(ticks)
        ticks |= {m.publish_time_ns - latency_ns for m in recorded_out
                  if m.schema != "joint_command" and m.publish_time_ns - latency_ns < first}
        return sorted(ticks), "command t_target_ns - link_latency"
    if recorded_out:
        return sorted({m.publish_time_ns - latency_ns for m in recorded_out}), \
            "recorded output t_pub_ns"
    return None, f"graph rate {spec.rate_hz} Hz"


def replay_step(messages: list[RecordedMessage], graph: Any, replace: Iterable[str], *,
                traces: dict[str, list[int]] | None = None,
                overrides: dict[str, dict[str, Any]] | None = None,
                kinds: dict[str, type[Actor]] | None = None, delivery_ns: int = 1000,
                latency_ns: dict[str, int] | None = None,
                on_message: Callable[[Published], None] | None = None,
                progress: Callable[[int, int], None] | None = None) -> StepReplay:
    """Run the ``replace`` actors live on a VirtualClock against the recording."""

    live = live_specs(graph, replace, overrides)
    traces = traces or {}
    latency_ns = latency_ns or {}
    suppressed = sorted({t for s in live.values() for t in s.outputs.values()})
    by_topic: dict[str, list[RecordedMessage]] = {}
    for m in messages:
        by_topic.setdefault(m.topic, []).append(m)
    external = [m for m in messages if m.topic not in suppressed]
    t_start = messages[0].publish_time_ns if messages else 0
    t_end = messages[-1].publish_time_ns if messages else 0
    ticks: dict[str, list[int]] = {}
    source: dict[str, str] = {}
    for name, spec in live.items():
        cls = (kinds or {}).get(spec.kind) or resolve(spec.kind)
        rec_out = [m for t in spec.outputs.values() for m in by_topic.get(t, [])]
        tt, src = _tick_times(name, spec, cls, traces, rec_out, latency_ns.get(name, 0))
        source[name] = src
        if tt is not None:
            ticks[name] = tt
            if tt:
                t_start = min(t_start, tt[0])
                t_end = max(t_end, tt[-1])
    pinned = 0
    if not traces:
        external, pinned = _pin_chunks(external, live, by_topic, delivery_ns)
    if pinned:
        source = {k: v + f", {pinned} chunk arrivals pinned by chunk_seq" if "command" in v else v
                  for k, v in source.items()}
    g = InProcessGraph(live, clock=VirtualClock(t_start), kinds=kinds, delivery_ns=delivery_ns,
                       latency_ns=latency_ns, tick_times=ticks, external=external,
                       start_ns=t_start, on_message=on_message)
    try:
        # advance in slices so a progress bar can follow long recordings
        n = 200
        span = max(1, t_end - t_start)
        for i in range(1, n + 1):
            g.run_until(t_start + span * i // n)
            if progress:
                progress(i, n)
    finally:
        g.close()
    replayed: dict[str, list[Published]] = {t: [] for t in suppressed}
    for p in g.published:
        if p.source:
            replayed.setdefault(p.topic, []).append(p)
    pair_keys: dict[str, tuple[list[int], list[int]]] = {}
    originals = actor_specs(graph)
    for name, spec in live.items():
        lat = latency_ns.get(name, 0)
        for topic in spec.outputs.values():
            recs = by_topic.get(topic, [])
            reps = replayed.get(topic, [])
            # with step traces the replay runs every recorded step: position pairs exactly
            if not traces.get(name) and recs and all(m.schema == "joint_command" for m in recs):
                link = int(round(float(originals[name].params.get("link_latency_ms", 0.0)) * 1e6))
                pair_keys[topic] = ([int(m.decode().t_target_ns) - link for m in recs],
                                    [p.t_pub_ns - lat for p in reps])
    missing = {name: sorted(t for t in spec.inputs.values()
                            if t != "*" and t not in by_topic and t not in suppressed)
               for name, spec in live.items()}
    return StepReplay(live=list(live), suppressed_topics=suppressed, replayed=replayed,
                      recorded={t: by_topic.get(t, []) for t in suppressed},
                      steps=dict(g.steps), tick_source=source, t_start_ns=t_start,
                      t_end_ns=t_end, missing_inputs={k: v for k, v in missing.items() if v},
                      pair_keys=pair_keys)


def _pin_chunks(external: list[RecordedMessage], live: dict[str, ActorSpec],
                by_topic: dict[str, list[RecordedMessage]], delivery_ns: int
                ) -> tuple[list[RecordedMessage], int]:
    """Wall-clock recordings: deliver each chunk at the executor step that first used it.

    A command names the chunk it came from (``chunk_seq``), so the step where the executor first
    saw a chunk is on the wire even when the bus or the scheduler delayed it by a step; without
    this, a chunk published within one hop of a tick may land a tick early in the replay.
    Assumes a chunk covers its own arrival tick (``t0_ns`` not in the future), as chunks built
    from an observation's capture time do.
    """
    pins: dict[tuple[str, int], int] = {}
    for spec in live.values():
        topic = spec.inputs.get("chunks")
        outs = [m for t in spec.outputs.values() for m in by_topic.get(t, [])
                if m.schema == "joint_command"]
        if not topic or not outs:
            continue
        chunks = [m for m in by_topic.get(topic, [])]
        if len({m.seq for m in chunks}) != len(chunks):
            continue  # several producers: seq alone does not name a chunk
        link_ns = int(round(float(spec.params.get("link_latency_ms", 0.0)) * 1e6))
        first_use: dict[int, int] = {}
        ticks = []
        for m in outs:
            c = m.decode()
            ticks.append(int(c.t_target_ns) - link_ns)
            first_use.setdefault(int(c.chunk_seq), ticks[-1])
        ticks.sort()
        # A chunk no command names was rejected or, in a stalled step, superseded by a newer
        # one before the executor stepped (latest-value input): deliver it with the next used
        # chunk, where the newer one replaces it, so it cannot act a step early here either.
        later_use: int | None = None
        for m in sorted(chunks, key=lambda m: m.publish_time_ns, reverse=True):
            t = first_use.get(m.seq)
            if t is None:
                t = later_use
            else:
                later_use = t
            if t is None:
                continue
            k = bisect.bisect_left(ticks, m.publish_time_ns + delivery_ns)
            if k >= len(ticks) or ticks[k] != t:  # the bus rule alone would pick another step
                pins[(topic, m.seq)] = t - delivery_ns
    if not pins:
        return external, 0
    out = []
    n = 0
    for m in external:
        t = pins.get((m.topic, m.seq))
        if t is not None and t != m.publish_time_ns:
            m = dc_replace(m, publish_time_ns=t)  # frames untouched: only when it is delivered
            n += 1
        out.append(m)
    out.sort(key=lambda m: m.publish_time_ns)
    return out, n


# ------------------------------------------------------------------------------ compare

@dataclass
class TopicDiff:
    topic: str
    recorded: int
    replayed: int
    compared: int
    identical_frames: int  # byte-for-byte equal wire messages (header + buffers)
    identical_payload: int  # equal fields + arrays (envelope t_pub_ns/seq/producer ignored)
    max_abs_diff: float
    mean_abs_diff: float
    per_field: dict[str, dict[str, float]] = field(default_factory=dict)
    # positions (in the recording's order) of the first and last pair whose content differs:
    # a late-starting recording shows as differences confined to its first messages
    first_diff: int | None = None
    last_diff: int | None = None

    @property
    def bit_identical(self) -> bool:
        return self.recorded == self.replayed == self.identical_frames > 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bit_identical"] = self.bit_identical
        return d


def _buf_bytes(b: Any) -> bytes:
    mv = memoryview(b)
    return bytes(mv.cast("B")) if mv.ndim != 1 or mv.format != "B" else bytes(mv)


def _payload(frames: list[Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The message itself: its fields, capture time and arrays. The envelope (``t_pub_ns``,
    ``seq``, ``producer``) is left out: the bus stamps the send time, a replay the step time,
    and a counter started before the recording did is offset in the file."""
    header = decode_header(frames[1])
    arrays = {}
    for (name, _dt, _shape, *_), buf in zip(header.get("a", []), frames[2:]):
        arrays[name] = np.frombuffer(memoryview(buf).cast("B"),
                                     dtype=np.dtype(_dt)).reshape(_shape)
    # by field name, so a version-1 recording compares equal to its version-2 replay
    f = header.get("f")
    schema = header.get("schema")
    cls = message_type(schema)
    if cls is not None and isinstance(f, dict):
        f = {n: f.get(n) for n in scalar_field_names(cls)}
    fields = {"schema": schema, "t_capture_ns": header.get("t_capture_ns"), "f": f}
    return fields, arrays


def compare_topic(topic: str, recorded: list[Any], replayed: list[Any],
                  keys: tuple[list[int], list[int]] | None = None) -> TopicDiff:
    """Pair recorded and replayed messages and measure how they differ.

    With ``keys`` (the step time of each recorded / replayed message) messages pair by the step
    that produced them, so a recording that starts late, or a replay that cannot run steps whose
    inputs predate the recording, still lines up; otherwise the i-th pairs with the i-th.
    """
    rec_frames = [m.frames if hasattr(m, "frames") else m for m in recorded]
    rep_frames = [m.frames if hasattr(m, "frames") else m for m in replayed]
    if keys is not None and len(set(keys[0])) == len(keys[0]) \
            and len(set(keys[1])) == len(keys[1]):
        by_key = dict(zip(keys[1], rep_frames))
        pairs = [(a, by_key[k]) for a, k in zip(rec_frames, keys[0]) if k in by_key]
    else:
        pairs = list(zip(rec_frames, rep_frames))
    n = len(pairs)
    ident = ident_payload = 0
    fmax: dict[str, float] = {}
    fsum: dict[str, float] = {}
    fcount: dict[str, int] = {}
    first_diff = last_diff = None
    for i, (a, b) in enumerate(pairs):
        fa, aa = _payload(a)
        if len(a) == len(b) and all(_buf_bytes(x) == _buf_bytes(y) for x, y in zip(a[1:], b[1:])):
            ident += 1
            ident_payload += 1
            for name, x in aa.items():  # identical messages count as zero difference
                fmax.setdefault(name, 0.0)
                fcount[name] = fcount.get(name, 0) + x.size
            continue
        fb, ab = _payload(b)
        same = fa == fb and aa.keys() == ab.keys()
        for name in aa.keys() & ab.keys():
            x, y = aa[name], ab[name]
            if x.shape != y.shape:
                same = False
                fmax[name] = float("inf")
                continue
            d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            fcount[name] = fcount.get(name, 0) + d.size
            if d.size:
                fmax[name] = max(fmax.get(name, 0.0), float(d.max()))
                fsum[name] = fsum.get(name, 0.0) + float(d.sum())
                same = same and not d.max() > 0
        ident_payload += same
        if not same:
            first_diff = i if first_diff is None else first_diff
            last_diff = i
    per_field = {k: {"max_abs_diff": fmax.get(k, 0.0),
                     "mean_abs_diff": fsum.get(k, 0.0) / fcount[k] if fcount.get(k) else 0.0}
                 for k in sorted(set(fmax) | set(fcount))}
    total = sum(fcount.values())
    return TopicDiff(topic=topic, recorded=len(rec_frames), replayed=len(rep_frames), compared=n,
                     identical_frames=ident, identical_payload=ident_payload,
                     max_abs_diff=max(fmax.values(), default=0.0),
                     mean_abs_diff=sum(fsum.values()) / total if total else 0.0,
                     per_field=per_field, first_diff=first_diff, last_diff=last_diff)


def compare_replay(result: StepReplay) -> list[TopicDiff]:
    return [compare_topic(t, result.recorded.get(t, []), result.replayed.get(t, []),
                          result.pair_keys.get(t))
            for t in result.suppressed_topics]


# ------------------------------------------------------------------------------ timed mode

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


# ------------------------------------------------------------------------------ output

def write_replay_mcap(path: str | Path, messages: list[RecordedMessage],
                      result: StepReplay) -> Path:
    """The replayed run as a recording: recorded inputs + the live actors' new outputs."""

    out = next_free_path(path)
    rec = McapRecording(out, metadata={"replay_of": "recording", "live": ",".join(result.live)})
    try:
        suppressed = set(result.suppressed_topics)
        items: list[tuple[int, list[Any]]] = [(m.publish_time_ns, m.frames) for m in messages
                                              if m.topic not in suppressed]
        items += [(p.t_pub_ns, p.frames) for ps in result.replayed.values() for p in ps]
        items.sort(key=lambda x: x[0])
        for t, frames in items:
            rec.write_frames(frames, t)
    finally:
        rec.close()
    return out


def diff_report_json(diffs: list[TopicDiff], result: StepReplay) -> dict[str, Any]:
    return {"live": result.live, "tick_source": result.tick_source, "steps": result.steps,
            "topics": [d.as_dict() for d in diffs],
            "bit_identical": all(d.bit_identical for d in diffs) if diffs else None}


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
