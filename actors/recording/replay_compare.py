"""Comparing a step replay's live outputs with the recorded ones (``edgevla replay --compare``).

Per topic: message counts, how many are bit-identical, and max/mean absolute difference over
every array field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgevla.actors.recording.step_replay import StepReplay
from edgevla.actors.wire.codec import decode_header
from edgevla.actors.wire.messages import message_type, scalar_field_names


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
    paired_by: str = "order"  # what paired them: "step", a field ("t_capture_ns", "seq"), "order"

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
                  keys: tuple[list[int], list[int]] | None = None, kind: str = "key") -> TopicDiff:
    """Pair recorded and replayed messages and measure how they differ.

    With ``keys`` (the step time of each recorded / replayed message) messages pair by the step
    that produced them, so a recording that starts late, or a replay that cannot run steps whose
    inputs predate the recording, still lines up; otherwise the i-th pairs with the i-th.
    ``kind`` names what the keys are (``paired_by`` in the result).
    """
    rec_frames = [m.frames if hasattr(m, "frames") else m for m in recorded]
    rep_frames = [m.frames if hasattr(m, "frames") else m for m in replayed]
    if keys is not None and len(set(keys[0])) == len(keys[0]) \
            and len(set(keys[1])) == len(keys[1]):
        by_key = dict(zip(keys[1], rep_frames))
        pairs = [(a, by_key[k]) for a, k in zip(rec_frames, keys[0]) if k in by_key]
        paired_by = kind
    else:
        pairs = list(zip(rec_frames, rep_frames))
        paired_by = "order"
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
                     per_field=per_field, first_diff=first_diff, last_diff=last_diff,
                     paired_by=paired_by)


def compare_replay(result: StepReplay) -> list[TopicDiff]:
    return [compare_topic(t, result.recorded.get(t, []), result.replayed.get(t, []),
                          result.pair_keys.get(t), result.pair_kind.get(t, "key"))
            for t in result.suppressed_topics]


def diff_report_json(diffs: list[TopicDiff], result: StepReplay) -> dict[str, Any]:
    return {"live": result.live, "tick_source": result.tick_source, "steps": result.steps,
            "topics": [d.as_dict() for d in diffs],
            "inputs_not_found_ns": result.inputs_not_found,
            "joined_at_step": result.joined_at_step,
            "bit_identical": all(d.bit_identical for d in diffs) if diffs else None}


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
