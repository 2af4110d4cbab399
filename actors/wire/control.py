"""The control vocabulary on the wire: the commands a supervisor and an actor process answer, and
the states a replica goes through.

String-valued enums, so what travels in the msgpack/JSON maps stays the plain words ("status",
"running", ...) and old clients and scripts keep working.
"""

from __future__ import annotations

from enum import StrEnum


class SupervisorCommand(StrEnum):
    """``{"cmd": ...}`` requests on the supervisor's control socket (`edgevla status` etc.)."""

    STATUS = "status"
    SCALE = "scale"
    SET_PARAM = "set_param"
    RESTART = "restart"
    STOP = "stop"


class GovernorCommand(StrEnum):
    """`Command.name` of what a governor publishes on a ``control`` output for the supervisor."""

    SET_RATE = "set_rate"
    SET_PARAM = "set_param"


class ActorCommand(StrEnum):
    """``{"cmd": ...}`` requests on an actor process's control socket."""

    PING = "ping"
    STATS = "stats"
    SET_RATE = "set_rate"
    SET_PARAM = "set_param"
    STOP = "stop"


class ReplicaState(StrEnum):
    """Where one process of an actor stands; `edgevla status` and status.json show the value."""

    PENDING = "pending"  # waiting for its `after:` actors
    RUNNING = "running"
    BACKOFF = "backoff"  # exited, restarts once its back-off delay is over
    HUNG = "hung"  # silent past its heartbeat timeout: SIGKILLed, its exit not yet seen
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"  # ended cleanly and its policy does not restart it
    FAILED = "failed"  # failed and will not be restarted
