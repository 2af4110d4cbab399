"""The graph file: the one place topology lives (dora-rs style).

A graph YAML names every actor with its kind, the topics its ports map to, its rate, replicas,
restart policy, heartbeat timeout, CPU affinity, nice level and parameters. `load_graph` checks
all of it before any process starts and reports every problem at once, each as
``file:line: actors.<name>.<field> <what was expected>, got <value>``.

    name: skeleton
    defaults:
      restart: {policy: on-failure, max_restarts: 5, backoff_s: 0.2}
    actors:
      camera:
        kind: synthetic_camera
        outputs: {frames: cam/top}
        rate_hz: 30
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from edgevla.actors.console.user_files import UserFileError, read_text
from edgevla.actors.runtime.placement import check_actor_machines, parse_jpeg, parse_machines
from edgevla.actors.runtime.registry import KINDS, resolve

RESTART_POLICIES = ("never", "on-failure", "always")
TRANSPORTS = ("ipc", "tcp")
_TOPIC_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/.")


class GraphError(ValueError):
    """All problems found in a graph file; str() lists one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RestartPolicy:
    policy: str = "on-failure"
    max_restarts: int = 10
    backoff_s: float = 0.2  # first delay; doubles each consecutive restart
    backoff_max_s: float = 10.0
    reset_after_s: float = 30.0  # a run this long without failing resets the backoff


@dataclass(frozen=True)
class ActorConfig:
    name: str
    kind: str
    inputs: dict[str, str] = field(default_factory=dict)  # port -> topic ({"*": "*"}: all)
    outputs: dict[str, str] = field(default_factory=dict)  # port -> topic
    rate_hz: float | None = None
    replicas: int = 1
    max_replicas: int = 1
    restart: RestartPolicy = RestartPolicy()
    heartbeat_timeout_s: float = 3.0
    cpu_affinity: tuple[int, ...] = ()
    nice: int = 0
    realtime_priority: int = 0  # > 0: SCHED_FIFO at this priority (executor, bridge on a board)
    params: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()  # start only once these actors are up (first heartbeat)
    machine: str = ""  # where it runs when the graph names machines (`placement`)
    line: int = 0

    @property
    def all_inputs(self) -> bool:
        return self.inputs.get("*") == "*"


@dataclass(frozen=True)
class NetworkConfig:
    transport: str = "ipc"
    host: str = "127.0.0.1"
    base_port: int = 5600
    curve: bool = False
    keys_dir: str | None = None
    # Fault injection (reliability tests): every subscriber also connects to
    # ipc://<run_dir>/inject.<topic>.sock, where a test can bind and send anything.
    inject: bool = False
    jpeg: dict[str, int] = field(default_factory=dict)  # camera topic -> quality, between machines


@dataclass(frozen=True)
class GraphConfig:
    name: str
    actors: dict[str, ActorConfig]
    network: NetworkConfig = NetworkConfig()
    external_topics: tuple[str, ...] = ()
    path: str = "<memory>"
    machines: dict[str, str] = field(default_factory=dict)  # name -> address
    placement: Any = None  # `placement.Placement` of one machine's share

    def producers(self) -> dict[str, str]:
        """topic -> producing actor."""
        return {t: a.name for a in self.actors.values() for t in a.outputs.values()}

    def topics(self) -> list[str]:
        return sorted(set(self.producers()) | set(self.external_topics))

    def tcp_ports(self) -> dict[tuple[str, int], int]:
        """(topic, replica) -> port, deterministic from the graph, for the tcp transport."""
        ports: dict[tuple[str, int], int] = {}
        n = self.network.base_port
        for topic in self.topics():
            producer = self.actors.get(self.producers().get(topic, ""))
            for r in range(producer.max_replicas if producer else 1):
                ports[(topic, r)] = n
                n += 1
        return ports

    def balanced_topics(self) -> set[str]:
        """Topics that feed the trigger port of a replicated actor: sent as a work queue."""

        out = set()
        for a in self.actors.values():
            if a.max_replicas > 1:
                trig = resolve(a.kind).trigger
                if trig and trig in a.inputs:
                    out.add(a.inputs[trig])
        return out

    def start_order(self) -> list[str]:
        """Producers before consumers (cycles broken by file order); stop in reverse."""
        producers = self.producers()
        deps = {a.name: {producers[t] for p, t in a.inputs.items()
                         if t in producers and producers[t] != a.name} | set(a.after)
                for a in self.actors.values()}
        order: list[str] = []
        visiting: set[str] = set()

        def visit(n: str) -> None:
            if n in order or n in visiting:
                return
            visiting.add(n)
            for d in sorted(deps[n], key=list(self.actors).index):
                visit(d)
            visiting.discard(n)
            order.append(n)

        for n in self.actors:
            visit(n)
        return order

    def with_actor(self, actor: ActorConfig) -> "GraphConfig":
        actors = dict(self.actors)
        actors[actor.name] = actor
        return replace(self, actors=actors)


# ---------------------------------------------------------------- YAML with line numbers

class _Lines:
    """Maps dotted paths ('actors.vision.rate_hz') to 1-based line numbers."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[str, int] = {}

    def at(self, dotted: str) -> str:
        parts = dotted.split(".")
        while parts:
            key = ".".join(parts)
            if key in self.lines:
                return f"{self.path}:{self.lines[key]}"
            parts.pop()
        return f"{self.path}:1"


def _to_python(node: yaml.Node, dotted: str, lines: _Lines) -> Any:
    lines.lines.setdefault(dotted, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            key = yaml.SafeLoader.construct_scalar(yaml.SafeLoader(""), k_node) \
                if isinstance(k_node, yaml.ScalarNode) else str(k_node.value)
            child = f"{dotted}.{key}" if dotted else str(key)
            lines.lines[child] = k_node.start_mark.line + 1
            if key in out:
                raise GraphError([f"{lines.path}:{k_node.start_mark.line + 1}: "
                                  f"{child} is defined twice"])
            out[key] = _to_python(v_node, child, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, f"{dotted}.{i}", lines) for i, v in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # e.g. a bare "=" (YAML's value tag) or "!!int x": the text parsed but is no value
        problem = getattr(exc, "problem", None) or exc
        raise GraphError([f"{lines.path}:{node.start_mark.line + 1}: "
                          f"{dotted or 'the document'} is not a valid YAML value: {problem}"]) \
            from None


def _parse_yaml(text: str, path: str) -> tuple[Any, _Lines]:
    lines = _Lines(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise GraphError([f"{path}:1: the graph file is empty"])
        return _to_python(node, "", lines), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise GraphError([f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) \
            from None


# ---------------------------------------------------------------- validation

_ACTOR_FIELDS = {"kind", "inputs", "outputs", "rate_hz", "replicas", "max_replicas", "restart",
                 "heartbeat_timeout_s", "cpu_affinity", "nice", "params", "enabled", "after",
                 "realtime_priority", "machine"}
_TOP_FIELDS = {"name", "actors", "network", "defaults", "external_topics", "description",
               "machines"}
_RESTART_FIELDS = {"policy", "max_restarts", "backoff_s", "backoff_max_s", "reset_after_s"}
_NETWORK_FIELDS = {"transport", "host", "base_port", "curve", "keys_dir", "inject", "jpeg"}


class _Checker:
    def __init__(self, lines: _Lines) -> None:
        self.lines = lines
        self.problems: list[str] = []

    def err(self, dotted: str, msg: str) -> None:
        self.problems.append(f"{self.lines.at(dotted)}: {dotted} {msg}")

    def unknown(self, dotted: str, data: dict, allowed: set[str]) -> None:
        for k in data:
            if k not in allowed:
                hint = difflib.get_close_matches(str(k), sorted(allowed), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else \
                    f" (expected one of: {', '.join(sorted(allowed))})"
                self.err(f"{dotted}.{k}" if dotted else str(k), f"is not a known field{extra}")

    def number(self, dotted: str, v: Any, *, positive: bool = False, minimum: float | None = None,
               integer: bool = False) -> Any:
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type:
            self.err(dotted, f"must be {'an integer' if integer else 'a number'}, got {v!r}")
            return None
        if positive and v <= 0:
            self.err(dotted, f"must be > 0, got {v}")
            return None
        if minimum is not None and v < minimum:
            self.err(dotted, f"must be >= {minimum}, got {v}")
            return None
        return v

    def mapping(self, dotted: str, v: Any) -> dict:
        if not isinstance(v, dict):
            self.err(dotted, f"must be a mapping, got {type(v).__name__} {v!r}")
            return {}
        return v


def _restart(c: _Checker, dotted: str, raw: Any, base: RestartPolicy) -> RestartPolicy:
    if isinstance(raw, str):  # shorthand: restart: always
        raw = {"policy": raw}
    d = c.mapping(dotted, raw)
    c.unknown(dotted, d, _RESTART_FIELDS)
    kw: dict[str, Any] = {}
    if "policy" in d:
        if d["policy"] not in RESTART_POLICIES:
            c.err(f"{dotted}.policy", f"must be one of {', '.join(RESTART_POLICIES)}, "
                                      f"got {d['policy']!r}")
        else:
            kw["policy"] = d["policy"]
    if "max_restarts" in d and c.number(f"{dotted}.max_restarts", d["max_restarts"], minimum=0,
                                        integer=True) is not None:
        kw["max_restarts"] = d["max_restarts"]
    for f in ("backoff_s", "backoff_max_s", "reset_after_s"):
        if f in d and c.number(f"{dotted}.{f}", d[f], minimum=0) is not None:
            kw[f] = float(d[f])
    return replace(base, **kw)


def _ports(c: _Checker, dotted: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if raw == "*":
        return {"*": "*"}
    if isinstance(raw, list):  # shorthand: a list of topics, ports named after them
        raw = {str(t): t for t in raw}
    d = c.mapping(dotted, raw)
    out = {}
    for port, topic in d.items():
        if not isinstance(topic, str) or not topic or not set(topic) <= _TOPIC_CHARS:
            c.err(f"{dotted}.{port}", f"must be a topic name (letters, digits, _-/.), "
                                      f"got {topic!r}")
            continue
        out[str(port)] = topic
    return out


def _actor(c: _Checker, name: str, raw: Any, defaults: dict) -> ActorConfig | None:
    dotted = f"actors.{name}"
    d = c.mapping(dotted, raw)
    if not d:
        return None
    c.unknown(dotted, d, _ACTOR_FIELDS)
    merged = {**defaults, **d}
    kind = merged.get("kind")
    line = int(c.lines.at(dotted).rsplit(":", 1)[1])
    if not isinstance(kind, str):
        c.err(f"{dotted}.kind", f"is required (an actor kind name), got {kind!r}")
        return None

    cls = None
    if kind not in KINDS:
        hint = difflib.get_close_matches(kind, sorted(KINDS), n=1)
        c.err(f"{dotted}.kind", f"must be a known actor kind"
              f"{f' (did you mean {hint[0]!r}?)' if hint else ''}, got {kind!r}; "
              f"known: {', '.join(sorted(KINDS))}")
    else:
        try:
            cls = resolve(kind)
        except Exception as exc:  # noqa: BLE001 - report, don't crash validation
            c.err(f"{dotted}.kind", f"kind {kind!r} cannot be loaded: {exc!r}")
    inputs = _ports(c, f"{dotted}.inputs", merged.get("inputs"))
    outputs = _ports(c, f"{dotted}.outputs", merged.get("outputs"))
    if cls is not None:
        if cls.inputs and inputs != {"*": "*"}:
            for port in inputs:
                if port not in cls.inputs:
                    c.err(f"{dotted}.inputs.{port}", f"is not an input port of kind {kind!r} "
                          f"(its inputs: {', '.join(cls.inputs)})")
        if cls.outputs:
            for port in outputs:
                if port not in cls.outputs:
                    c.err(f"{dotted}.outputs.{port}", f"is not an output port of kind {kind!r} "
                          f"(its outputs: {', '.join(cls.outputs)})")
    rate = merged.get("rate_hz")
    if rate is not None:
        rate = c.number(f"{dotted}.rate_hz", rate, positive=True)
    elif cls is not None and not (cls.trigger and cls.trigger in inputs):
        c.err(f"{dotted}.rate_hz", f"is required: kind {kind!r} is rate-driven unless its "
                                   f"trigger input {cls.trigger!r} is wired" if cls.trigger else
              f"is required for kind {kind!r} (a rate in Hz > 0)")
    replicas = c.number(f"{dotted}.replicas", merged.get("replicas", 1), minimum=1,
                        integer=True) or 1
    max_replicas = c.number(f"{dotted}.max_replicas", merged.get("max_replicas", replicas),
                            minimum=1, integer=True) or replicas
    if max_replicas < replicas:
        c.err(f"{dotted}.max_replicas", f"must be >= replicas ({replicas}), got {max_replicas}")
    restart = _restart(c, f"{dotted}.restart", merged.get("restart", {}), RestartPolicy())
    hb = c.number(f"{dotted}.heartbeat_timeout_s", merged.get("heartbeat_timeout_s", 3.0),
                  positive=True) or 3.0
    aff_raw = merged.get("cpu_affinity", [])
    affinity: tuple[int, ...] = ()
    if not isinstance(aff_raw, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                and x >= 0 for x in aff_raw):
        c.err(f"{dotted}.cpu_affinity", f"must be a list of CPU numbers >= 0, got {aff_raw!r}")
    else:
        affinity = tuple(aff_raw)
    nice = c.number(f"{dotted}.nice", merged.get("nice", 0), integer=True)
    if nice is not None and not -20 <= nice <= 19:
        c.err(f"{dotted}.nice", f"must be between -20 and 19, got {nice}")
    rt = c.number(f"{dotted}.realtime_priority", merged.get("realtime_priority", 0),
                  integer=True)
    if rt is not None and not 0 <= rt <= 99:
        c.err(f"{dotted}.realtime_priority", f"must be 0 (off) or a SCHED_FIFO priority 1..99, "
                                             f"got {rt}")
    params = c.mapping(f"{dotted}.params", merged.get("params", {}) or {})
    after = merged.get("after", []) or []
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list) or not all(isinstance(x, str) for x in after):
        c.err(f"{dotted}.after", f"must be a list of actor names, got {after!r}")
        after = []
    return ActorConfig(name=name, kind=kind, inputs=inputs, outputs=outputs, rate_hz=rate,
                       replicas=replicas, max_replicas=max_replicas, restart=restart,
                       heartbeat_timeout_s=float(hb), cpu_affinity=affinity, nice=nice or 0,
                       realtime_priority=rt or 0, params=params, after=tuple(after),
                       machine=str(merged.get("machine") or ""), line=line)


def parse_graph(text: str, path: str = "<memory>") -> GraphConfig:
    data, lines = _parse_yaml(text, path)
    c = _Checker(lines)
    if not isinstance(data, dict):
        raise GraphError([f"{path}:1: a graph file must be a mapping with 'actors:', "
                          f"got {type(data).__name__}"])
    c.unknown("", data, _TOP_FIELDS)
    name = data.get("name", Path(path).stem)
    net_raw = c.mapping("network", data.get("network", {}) or {})
    c.unknown("network", net_raw, _NETWORK_FIELDS)
    network = NetworkConfig()
    if net_raw.get("transport", "ipc") not in TRANSPORTS:
        c.err("network.transport", f"must be one of {', '.join(TRANSPORTS)}, "
                                   f"got {net_raw.get('transport')!r}")
    else:
        port = net_raw.get("base_port", 5600)
        if c.number("network.base_port", port, integer=True, minimum=1024) is None or port > 65000:
            if isinstance(port, int) and port > 65000:
                c.err("network.base_port", f"must be <= 65000, got {port}")
            port = 5600
        network = NetworkConfig(transport=net_raw.get("transport", "ipc"),
                                host=str(net_raw.get("host", "127.0.0.1")), base_port=port,
                                curve=bool(net_raw.get("curve", False)),
                                keys_dir=net_raw.get("keys_dir"),
                                inject=bool(net_raw.get("inject", False)),
                                jpeg=parse_jpeg(net_raw.get("jpeg"), c.err))
    if network.host not in ("127.0.0.1", "localhost", "::1") and not network.curve:
        c.err("network.curve", f"must be true when binding beyond loopback "
                               f"(host {network.host!r}): remote links use CURVE keys")
    machines = parse_machines(data.get("machines"), c.err)
    if not network.curve and any(not ipaddress.ip_address(a).is_loopback for a in machines.values()):
        c.err("network.curve", "must be true when machines are beyond loopback: topics between "
                               "machines use CURVE keys")
    defaults = c.mapping("defaults", data.get("defaults", {}) or {})
    c.unknown("defaults", defaults, _ACTOR_FIELDS - {"kind", "inputs", "outputs"})
    actors_raw = data.get("actors")
    if not isinstance(actors_raw, dict) or not actors_raw:
        c.err("actors", f"must be a non-empty mapping of actor name -> settings, "
                        f"got {actors_raw!r}")
        raise GraphError(c.problems)
    actors: dict[str, ActorConfig] = {}
    for aname, raw in actors_raw.items():
        if not isinstance(aname, str) or not set(aname) <= _TOPIC_CHARS - {"/"}:
            c.err(f"actors.{aname}", "actor names use letters, digits, '_', '-', '.'")
            continue
        if isinstance(raw, dict) and raw.get("enabled", True) is False:
            continue
        a = _actor(c, aname, raw, defaults)
        if a is not None:
            actors[aname] = a
    external = data.get("external_topics", []) or []
    if not isinstance(external, list) or not all(isinstance(t, str) for t in external):
        c.err("external_topics", f"must be a list of topic names, got {external!r}")
        external = []
    # topology: one producer per topic; every consumed topic is produced somewhere
    seen: dict[str, str] = {}
    for a in actors.values():
        for port, topic in a.outputs.items():
            if topic in seen and seen[topic] != a.name:
                c.err(f"actors.{a.name}.outputs.{port}", f"topic {topic!r} is already produced "
                      f"by actor {seen[topic]!r}: one producer per topic")
            seen[topic] = a.name
    for a in actors.values():
        for i, dep in enumerate(a.after):
            if dep not in actors or dep == a.name:
                hint = difflib.get_close_matches(dep, sorted(actors), n=1)
                c.err(f"actors.{a.name}.after", f"names {dep!r}, which is not another actor of "
                      f"this graph{f' (did you mean {hint[0]!r}?)' if hint else ''}")
        for port, topic in a.inputs.items():
            if topic != "*" and topic not in seen and topic not in external:
                hint = difflib.get_close_matches(topic, sorted(seen), n=1)
                c.err(f"actors.{a.name}.inputs.{port}", f"reads topic {topic!r} that no actor "
                      f"produces{f' (did you mean {hint[0]!r}?)' if hint else ''}; produced: "
                      f"{', '.join(sorted(seen)) or 'none'} (or list it in external_topics)")
    check_actor_machines(actors, machines, c.err)
    if c.problems:
        raise GraphError(c.problems)
    return GraphConfig(name=str(name), actors=actors, network=network,
                       external_topics=tuple(external), path=path, machines=machines)


def expand_placeholders(value: Any, graph_path: str, run_dir: Path | None) -> Any:
    """``${RUN_DIR}`` / ``${GRAPH_DIR}`` in parameters: per-run paths (ptys, sockets, logs) and
    files next to the graph (models). Without a run dir, ``${RUN_DIR}`` stays as written.

    The one rule: run, check, replay and the demo all expand a graph's parameters through it."""
    if isinstance(value, str):
        graph_dir = str(Path(graph_path).resolve().parent) if graph_path != "<memory>" \
            else os.getcwd()
        if run_dir is not None:
            value = value.replace("${RUN_DIR}", str(run_dir))
        return value.replace("${GRAPH_DIR}", graph_dir)
    if isinstance(value, dict):
        return {k: expand_placeholders(v, graph_path, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_placeholders(v, graph_path, run_dir) for v in value]
    return value


def load_graph(path: str | os.PathLike) -> GraphConfig:
    p = Path(path)
    if p.is_dir():  # a board bundle: graph.yaml at its root, model paths relative to it
        p = p / "graph.yaml"
    if not p.exists():
        raise GraphError([f"{p}: no such graph file"])
    try:
        text = read_text(p, "a graph YAML file, or a bundle directory with graph.yaml")
    except UserFileError as exc:
        raise GraphError([str(exc)]) from None
    return parse_graph(text, str(p))
