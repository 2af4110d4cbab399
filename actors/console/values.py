"""Command-line values checked where they are parsed: argparse types that refuse a bad value
with one line naming what was expected (argparse adds the flag and exits 2)."""

from __future__ import annotations

import argparse
from typing import Callable


def number(cast: Callable[[str], float], unit: str, low: float | None = None,
           high: float | None = None, low_open: bool = False,
           hint: str = "") -> Callable[[str], float]:
    """A number in [low, high] (``low_open``: strictly above ``low``)."""
    def parse(text: str) -> float:
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {unit}, got {text!r}") from None
        too_low = low is not None and (v <= low if low_open else v < low)
        if too_low or (high is not None and v > high):
            lo = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
            hi = "" if high is None else f"<= {high:g}"
            raise argparse.ArgumentTypeError(
                f"must be {' and '.join(x for x in (lo, hi) if x)} {unit}{hint}, got {text!r}")
        return v

    return parse


def number_list(cast: Callable[[str], float], unit: str, low: float,
                example: str) -> Callable[[str], list]:
    """A comma list of numbers, each >= ``low``."""
    def parse(text: str) -> list:
        try:
            values = [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {unit} like {example}; got {text!r}") from None
        if not values or any(v < low for v in values):
            raise argparse.ArgumentTypeError(f"{unit} must be >= {low:g}, got {text!r}")
        return values

    return parse


def count(low: int = 1) -> Callable[[str], int]:
    """A whole number >= ``low`` (episodes, frames, samples, steps)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        return v

    return parse


# The two values `run` and `demo` share.
DURATION_S = number(float, "s", low=0.0, low_open=True, hint=" (leave it out to run until stopped)")
LATENCY_MS = number(float, "ms", low=0.0, high=60_000.0)
