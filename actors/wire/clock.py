"""One clock for the whole runtime: wall time on the board, virtual time in tests and replay.

Everything that reads time takes a `Clock` (copper-rs style: the clock is passed in, never read
from the OS inside an actor's step), so the same code runs bit-identically on a virtual clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...

    def sleep_until_ns(self, t_ns: int) -> None: ...


class WallClock:
    """CLOCK_MONOTONIC, the host timebase every message timestamp uses."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def sleep_until_ns(self, t_ns: int) -> None:
        dt = (t_ns - time.monotonic_ns()) / 1e9
        if dt > 0:
            time.sleep(dt)


class StepWallClock(WallClock):
    """Wall time that remembers its first reading since `begin_step`: the instant a step acted
    on, which a step trace records and a replay's virtual clock shows that step again."""

    def __init__(self) -> None:
        self.first_read_ns: int | None = None

    def begin_step(self) -> None:
        self.first_read_ns = None

    def now_ns(self) -> int:
        t = time.monotonic_ns()
        if self.first_read_ns is None:
            self.first_read_ns = t
        return t


class VirtualClock:
    """A clock that only moves when told to; sleeping advances it instantly."""

    def __init__(self, start_ns: int = 0) -> None:
        self._t = int(start_ns)

    def now_ns(self) -> int:
        return self._t

    def advance_ns(self, dt_ns: int) -> None:
        if dt_ns < 0:
            raise ValueError(f"virtual clock cannot go backwards (dt_ns={dt_ns})")
        self._t += int(dt_ns)

    def set_ns(self, t_ns: int) -> None:
        if t_ns < self._t:
            raise ValueError(f"virtual clock cannot go backwards ({t_ns} < {self._t})")
        self._t = int(t_ns)

    def sleep_until_ns(self, t_ns: int) -> None:
        if t_ns > self._t:
            self._t = int(t_ns)
