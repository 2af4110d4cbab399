"""The actor contract: a small class; the process around it belongs to the runtime.

An actor kind subclasses `Actor` and implements ``setup(params)`` and
``step(clock, inputs) -> outputs``. It names only its own ports: ``inputs`` and ``outputs`` are
port names, and the graph file maps ports to topics. The runtime (`edgevla.actors.runtime.process`) owns
sockets, the loop rate, heartbeats, the control channel and recording; tests and replay call
``step`` directly with a `VirtualClock` and no processes at all.

``step`` gets the newest message per input port that arrived since the last step (latest-value
semantics; ports with nothing new are absent; with ``collect_all`` a list per port) and returns ``{port: Message}`` or a list of
messages per port for what to publish. Rate-driven actors run ``step`` at ``rate_hz``;
an actor with ``trigger`` set runs when a message arrives on that input port instead.
A graph may declare ``inputs: "*"``: the actor then receives every topic of the graph, with
ports named after the topics.
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.messages import Message

Outputs = dict[str, Message | list[Message]]


class Actor:
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    # Output ports that carry camera frames (`Frame`): their topics get a short send queue
    # (frames are large, and latest-value readers only want the newest).
    image_outputs: ClassVar[tuple[str, ...]] = ()
    # input port that triggers a step (event-driven); None = run at the graph's rate_hz
    trigger: ClassVar[str | None] = None
    # False: latest-value inputs (newest message per port). True: every message received since
    # the last step, in arrival order, as a list per port (the recorder needs this).
    collect_all: ClassVar[bool] = False
    # True: large (shared-memory) input arrays arrive as read-only views into the producer's ring
    # instead of copies. Only for actors that use a frame within a few frame periods and check
    # `shm.still_valid(msg)` before publishing what they computed from it (see stages).
    borrow_inputs: ClassVar[bool] = False

    def __init__(self, name: str = "") -> None:
        self.name = name or type(self).__name__.lower()

    def setup(self, params: dict[str, Any]) -> None:
        """Build models, open devices. ``params`` is the graph's ``params:`` map."""

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        raise NotImplementedError

    def set_param(self, name: str, value: Any) -> None:
        """Runtime parameter change from the control channel (e.g. denoise steps)."""
        raise KeyError(f"{self.name}: no runtime parameter {name!r}")

    def stats(self) -> dict[str, Any]:
        """Actor-specific counters, merged into heartbeats and `edgevla status`."""
        return {}

    def close(self) -> None:
        """Release devices; called once on clean shutdown."""
