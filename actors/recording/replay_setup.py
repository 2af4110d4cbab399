"""What a replay starts from: a recording's messages and step traces, and the live actors.

A replay (`step_replay`, `timed_replay`) republishes a recording with some recorded actors
swapped for live ones (``--replace``); their parameters can be overridden (``--set``).
"""

from __future__ import annotations

from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, Iterable

from edgevla.actors.recording.mcap_reader import RecordedMessage, read_recording, recording_files
from edgevla.actors.runtime.graph import expand_placeholders
from edgevla.actors.runtime.inprocess import ActorSetupError, ActorSpec, actor_specs
from edgevla.actors.wire.messages import TRACE_PREFIX, StepTrace


def load_recording(path: str | Path, topics: list[str] | None = None
                   ) -> tuple[list[RecordedMessage], dict[str, list[StepTrace]]]:
    """Messages of a recording (with its rotated / restarted continuations), in t_pub order,
    plus the step traces: actor -> its steps in time order."""
    files = recording_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no such recording")
    msgs: list[RecordedMessage] = []
    traces: dict[str, list[StepTrace]] = {}
    for f in files:
        for m in read_recording(f, include_internal=True):
            if m.topic.startswith(TRACE_PREFIX):
                step = StepTrace.from_record(bytes(m.frames[0]))
                traces.setdefault(step.actor, []).append(step)
            elif topics is None or m.topic in topics:
                msgs.append(m)
    msgs.sort(key=lambda m: (m.publish_time_ns, m.log_time_ns))
    for t in traces.values():
        t.sort(key=lambda s: s.t_ns)
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
    for name, spec in live.items():
        source = str(spec.params.get("source", "")) if spec.kind == "camera" else ""
        if source.startswith("/dev/"):
            raise ActorSetupError(f"--replace {name}: the camera would open the device {source}; "
                                  f"replay runs offline: give it a video file "
                                  f"(--set {name}.source=FILE)")
        if spec.kind == "mcu_firmware" and spec.params.get("servo_device"):
            raise ActorSetupError(f"--replace {name}: the firmware would drive the arm on "
                                  f"{spec.params['servo_device']}; replay runs offline: replace the "
                                  f"executor without it")
    return live
