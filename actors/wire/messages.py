"""The typed messages of the bus: one dataclass a message kind, registered by schema name.

Every message has the common fields ``seq``, ``t_capture_ns`` (when the data it derives from was
captured), ``t_pub_ns`` and ``producer``. Array-valued fields are either ``np.ndarray`` or
``dict[str, np.ndarray]``. How they go on the wire: `codec`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
import numpy as np

SCHEMA_VERSION = 2


@dataclass(kw_only=True)
class Message:
    """Fields every message carries (docs/ARCHITECTURE.md, "The bus")."""

    SCHEMA: ClassVar[str] = "message"
    seq: int = 0
    t_capture_ns: int = 0  # CLOCK_MONOTONIC of the observation this derives from
    t_pub_ns: int = 0  # set by the publisher at send time
    producer: str = ""


@dataclass(kw_only=True)
class Frame(Message):
    """One camera image, HxWx3 uint8 RGB, stamped at capture."""

    SCHEMA: ClassVar[str] = "frame"
    camera: str
    image: np.ndarray


@dataclass(kw_only=True)
class Observation(Message):
    """What a policy sees at one instant: all cameras plus robot state, one capture time."""

    SCHEMA: ClassVar[str] = "observation"
    images: dict[str, np.ndarray]
    state: np.ndarray
    task: str = ""


@dataclass(kw_only=True)
class Features(Message):
    """Output of a vision encoder (per camera or merged), plus whatever later stages need."""

    SCHEMA: ClassVar[str] = "features"
    tensors: dict[str, np.ndarray]
    model_id: str = ""


@dataclass(kw_only=True)
class Prefix(Message):
    """LLM prefill output: the KV cache / prefix that the action expert attends to."""

    SCHEMA: ClassVar[str] = "prefix"
    tensors: dict[str, np.ndarray]
    model_id: str = ""


@dataclass(kw_only=True)
class ActionChunk(Message):
    """H future actions: action i is meant to run at ``t0_ns + i * dt_ns`` (host monotonic)."""

    SCHEMA: ClassVar[str] = "action_chunk"
    t0_ns: int
    dt_ns: int
    actions: np.ndarray  # H x D float32
    obs_seq: int = 0
    model_id: str = ""


@dataclass(kw_only=True)
class RobotState(Message):
    """Measured joint positions (joint units: rad for arm joints, normalised gripper)."""

    SCHEMA: ClassVar[str] = "robot_state"
    joints: np.ndarray
    commanded: np.ndarray | None = None
    faults: int = 0


@dataclass(kw_only=True)
class JointCommand(Message):
    """What the executor sent at one control tick: position target for time ``t_target_ns``."""

    SCHEMA: ClassVar[str] = "joint_command"
    t_target_ns: int
    positions: np.ndarray
    starved: bool = False
    chunk_seq: int = -1


@dataclass(frozen=True)
class Commitment:
    """What the executor will command whatever the next chunk says (real-time chunking).

    ``actions[i]`` (servo radians, the bus's joint units) runs at ``t0_ns + i * dt_ns`` on the
    executor's clock; ``delay_ns`` is the executor's expected capture -> first-executable-action
    delay of the chunk this request asks for (the slowest recent one plus the link latency,
    RTC's Algorithm 1). On the wire: `Request.committed` and `Request.committed_timing`.
    """

    actions: np.ndarray  # [n, D] float32
    t0_ns: int
    dt_ns: int
    delay_ns: int

    @property
    def end_ns(self) -> int:
        """Time of the last committed action."""
        return self.t0_ns + (len(self.actions) - 1) * self.dt_ns


@dataclass(kw_only=True)
class Request(Message):
    """The executor asks upstream for a new observation/inference, and says why; with real-time
    chunking on, it also says what it has committed to (`commitment`)."""

    SCHEMA: ClassVar[str] = "request"
    reason: str = ""
    horizon_left_ns: int = 0
    committed: np.ndarray | None = None  # Commitment.actions
    committed_timing: np.ndarray | None = None  # int64 [t0_ns, dt_ns, delay_ns]

    @property
    def commitment(self) -> Commitment | None:
        """The commitment this request carries; None without one or when it is malformed
        (a guidance built on a wrong shape would steer the arm, so it is ignored instead)."""
        a, t = self.committed, self.committed_timing
        if a is None or t is None or a.ndim != 2 or len(a) < 1 or t.shape != (3,):
            return None
        t0, dt, delay = (int(x) for x in t)
        if dt <= 0 or delay < 0 or not np.all(np.isfinite(a)):
            return None
        return Commitment(np.asarray(a, np.float32), t0, dt, delay)

    def commit(self, c: Commitment) -> "Request":
        """This request carrying ``c``."""
        self.committed = np.ascontiguousarray(c.actions, np.float32)
        self.committed_timing = np.array([c.t0_ns, c.dt_ns, c.delay_ns], np.int64)
        return self


@dataclass(kw_only=True)
class Command(Message):
    """Control-channel command (get stats, set rate, set param, stop, ...)."""

    SCHEMA: ClassVar[str] = "command"
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Heartbeat(Message):
    """Liveness and loop health of one actor process."""

    SCHEMA: ClassVar[str] = "heartbeat"
    actor: str
    pid: int
    loop_latency_ns: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


# Step traces go on topic TRACE_PREFIX + actor; a recorder keeps them apart from bus messages.
TRACE_PREFIX = "_trace/"


@dataclass(kw_only=True)
class StepTrace(Message):
    """One step of an actor, published only while a recorder runs: when it stepped (its first
    clock reading) and which messages it consumed, so a replay feeds it exactly those."""

    SCHEMA: ClassVar[str] = "step_trace"
    actor: str
    t_ns: int
    inputs: dict[str, list[list[Any]]] = field(default_factory=dict)  # port -> [[topic,
    # producer, seq], ...]
    # which step of the actor since it started (0 = its first): a recording that begins later
    # cannot give a replay the state the actor had built up; -1 = not known (older records)
    step: int = -1

    def record(self) -> bytes:
        """The step as a recording stores it (channel ``TRACE_PREFIX + actor``)."""
        rec: dict[str, Any] = {"actor": self.actor, "t_ns": int(self.t_ns), "inputs": self.inputs}
        if self.step >= 0:
            rec["step"] = int(self.step)
        return msgpack.packb(rec, use_bin_type=True)

    @classmethod
    def from_record(cls, data: bytes) -> "StepTrace":
        """The step back from `record`'s bytes (older records carry no ``inputs``, no ``step``)."""
        rec = msgpack.unpackb(data, raw=False)
        return cls(actor=str(rec["actor"]), t_ns=int(rec["t_ns"]), inputs=rec.get("inputs") or {},
                   step=int(rec.get("step", -1)))


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.SCHEMA: cls
    for cls in (Frame, Observation, Features, Prefix, ActionChunk, RobotState, JointCommand,
                Request, Command, Heartbeat, StepTrace)
}


COMMON_FIELDS = ("seq", "t_capture_ns", "t_pub_ns", "producer")


_ANNOTATIONS: dict[type, dict[str, str]] = {}


def annotations_of(cls: type[Message]) -> dict[str, str]:
    ann = _ANNOTATIONS.get(cls)
    if ann is None:
        ann = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        _ANNOTATIONS[cls] = ann
    return ann


def _is_array_field(tp: Any) -> str | None:
    """'array' / 'dict' / 'optarray' for array-valued annotations, else None."""
    text = str(tp)
    if text.startswith("dict[str, np.ndarray]"):
        return "dict"
    if text == "np.ndarray":
        return "array"
    if text.startswith("np.ndarray | None"):
        return "optarray"
    return None


_FIELD_KINDS: dict[type, list[tuple[str, str | None]]] = {}


def field_kinds(cls: type[Message]) -> list[tuple[str, str | None]]:
    kinds = _FIELD_KINDS.get(cls)
    if kinds is None:
        kinds = [(f.name, _is_array_field(f.type)) for f in dataclasses.fields(cls)
                 if f.name not in COMMON_FIELDS]
        _FIELD_KINDS[cls] = kinds
    return kinds


_SCALAR_NAMES: dict[type, list[str]] = {}


def message_type(schema: Any) -> type[Message] | None:
    """The message class a header's schema names; None for anything else (any wire value)."""
    return MESSAGE_TYPES.get(schema) if type(schema) is str else None


def scalar_field_names(cls: type[Message]) -> list[str]:
    """The class's non-array fields: the order of the header's scalar list."""
    names = _SCALAR_NAMES.get(cls)
    if names is None:
        names = _SCALAR_NAMES[cls] = [n for n, k in field_kinds(cls) if k is None]
    return names
