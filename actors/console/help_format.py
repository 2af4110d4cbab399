"""`--help` text: a flag's default shown once, and only when it says something."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" unless the help already names its default, or the default is None,
    False or empty (a flag that is off, a repeatable one not given, or a value taken from
    elsewhere, which the help says)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if d is None or d is False or d == [] or d == argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)
