"""Step replay (``edgevla replay --step``): the live actors on a virtual clock, no sockets.

The live actors run in the in-process driver (`inprocess.InProcessGraph`) on a `VirtualClock`;
recorded messages are injected at their ``t_pub_ns``, the live actors step when they stepped in
the recording. The result does not depend on machine speed.

How an actor's steps are reconstructed (in this order):

1. a step trace ``_trace/<actor>`` in the recording gives each step's time and the (topic,
   producer, seq) of every message it consumed. The in-process driver writes one per step;
   so does the multi-process runtime for every actor with inputs while a recorder runs
   (`messages.StepTrace`: the time is the step's first clock reading). A traced step is fed
   exactly the messages it consumed, so a wall-clock run replays as exactly as an in-process
   one, except for steps that consumed a message sent before the recorder connected;
2. otherwise, for an executor (outputs `JointCommand`), ``t_target_ns - link_latency_ms``
   of each recorded command: the exact clock value its step read, also in a wall-clock run;
3. otherwise, for a rate-driven actor, its recorded outputs' ``t_pub_ns`` (minus the modelled
   latency) are taken as its step times;
4. otherwise it steps at the graph's ``rate_hz`` from the first recorded message (or, trigger
   driven, on each message of its trigger input).

Untraced steps get their inputs by the driver's delivery rule (visible ``delivery_ns`` after
``t_pub_ns``). For a wall-clock recording without traces (made before they existed) a message
published within one bus hop of a step may then land one step early or late, and a stage that
skipped messages while busy is fed every one: close, not bit-exact (`replay_compare` says how
close).

``--replace`` suppresses the recorded messages of the replaced actors' output topics; the live
actors' outputs are kept apart (`StepReplay.replayed`) to be compared with them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, Callable, Iterable

from edgevla.actors.recording.mcap_reader import RecordedMessage
from edgevla.actors.recording.mcap_writer import McapRecording, next_free_path
from edgevla.actors.recording.replay_setup import live_specs
from edgevla.actors.runtime.actor import Actor
from edgevla.actors.runtime.inprocess import ActorSpec, InProcessGraph, Published, actor_specs
from edgevla.actors.runtime.registry import resolve
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.codec import decode
from edgevla.actors.wire.messages import StepTrace


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
    pair_kind: dict[str, str] = field(default_factory=dict)  # topic -> "step" | field name
    # actor -> times of traced steps with a consumed message the replay did not have (those
    # steps were fed by the delivery rule): at the start, messages sent before the recorder
    # connected; later, a hole in the recording
    inputs_not_found: dict[str, list[int]] = field(default_factory=dict)
    # actor -> its step at which the recording begins, where that is not its first: the replay
    # starts it fresh there, so what it counts or times from its own start (sequence numbers,
    # startup requests) can differ from the recording while its step-for-step outputs match
    joined_at_step: dict[str, int] = field(default_factory=dict)


def _tick_times(name: str, spec: ActorSpec, cls: type[Actor],
                traces: dict[str, list[StepTrace]], recorded_out: list[RecordedMessage],
                latency_ns: int) -> tuple[list[int] | None, str]:
    if traces.get(name):
        return [s.t_ns for s in traces[name]], "step trace"
    trig = cls.trigger if cls.trigger and cls.trigger in spec.inputs else None
    if trig is not None:
        return None, f"trigger ({trig})"
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
                traces: dict[str, list[StepTrace]] | None = None,
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
    untraced = {n: s for n, s in live.items() if not traces.get(n)}
    external, pinned = _pin_chunks(external, untraced, by_topic, delivery_ns)
    if pinned:
        source = {k: v + f", {pinned} chunk arrivals pinned by chunk_seq" if "command" in v else v
                  for k, v in source.items()}
    # a traced step is fed what it consumed in the recording, not what the delivery rule infers
    step_inputs = {n: {s.t_ns: s.inputs for s in traces[n]} for n in live if traces.get(n)}
    g = InProcessGraph(live, clock=VirtualClock(t_start), kinds=kinds, delivery_ns=delivery_ns,
                       latency_ns=latency_ns, tick_times=ticks, external=external,
                       start_ns=t_start, on_message=on_message, step_inputs=step_inputs)
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
    pair_keys, pair_kind = _pair_keys(live, actor_specs(graph), by_topic, replayed, latency_ns)
    missing = {name: sorted(t for t in spec.inputs.values()
                            if t != "*" and t not in by_topic and t not in suppressed)
               for name, spec in live.items()}
    return StepReplay(live=list(live), suppressed_topics=suppressed, replayed=replayed,
                      recorded={t: by_topic.get(t, []) for t in suppressed},
                      steps=dict(g.steps), tick_source=source, t_start_ns=t_start,
                      t_end_ns=t_end, missing_inputs={k: v for k, v in missing.items() if v},
                      pair_keys=pair_keys, pair_kind=pair_kind,
                      inputs_not_found=dict(g.inputs_not_found),
                      joined_at_step={n: traces[n][0].step for n in live
                                      if traces.get(n) and traces[n][0].step > 0})


def _pair_keys(live: dict[str, ActorSpec], originals: dict[str, ActorSpec],
               by_topic: dict[str, list[RecordedMessage]], replayed: dict[str, list[Published]],
               latency_ns: dict[str, int]
               ) -> tuple[dict[str, tuple[list[int], list[int]]], dict[str, str]]:
    """What pairs a recorded output with its replayed twin, per topic, so that a recording
    which begins between two steps, or a step the replay lacks, shifts nothing: a command's
    step (``t_target_ns`` - link latency), else the capture time of the data it derives from,
    else its ``seq`` (the stages and the executor number their outputs themselves), each only
    where it names one message on both sides; topics with none of them pair in order.
    -> (keys per topic, what they are per topic: "step" or the field's name)"""
    keys: dict[str, tuple[list[int], list[int]]] = {}
    kinds: dict[str, str] = {}
    for name, spec in live.items():
        lat = latency_ns.get(name, 0)
        for topic in spec.outputs.values():
            recs = by_topic.get(topic, [])
            reps = replayed.get(topic, [])
            if recs and all(m.schema == "joint_command" for m in recs):
                link = int(round(float(originals[name].params.get("link_latency_ms", 0.0)) * 1e6))
                keys[topic] = ([int(m.decode().t_target_ns) - link for m in recs],
                               [p.t_pub_ns - lat for p in reps])
                kinds[topic] = "step"
                continue
            rec_msgs = [m.decode() for m in recs]
            rep_msgs = [decode(p.frames)[1] for p in reps]
            for key in ("t_capture_ns", "seq"):
                rec_k = [int(getattr(m, key)) for m in rec_msgs]
                rep_k = [int(getattr(m, key)) for m in rep_msgs]
                if _names_one(rec_k) and _names_one(rep_k):
                    keys[topic] = (rec_k, rep_k)
                    kinds[topic] = key
                    break
    return keys, kinds


def _names_one(keys: list[int]) -> bool:
    """Every key set (non-zero) and none shared by two messages."""
    return all(keys) and len(set(keys)) == len(keys)


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
