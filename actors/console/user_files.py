"""The one way a command reads a file a person named: one line naming it when it is not usable.

Any bytes, a directory, a missing or unreadable path, an empty file: each gives a
`UserFileError` (a ValueError) whose text is one line with the path and what was expected,
before the command has created anything.
"""

from __future__ import annotations

import os
from pathlib import Path


class UserFileError(ValueError):
    """A file given on the command line cannot be used; the message is one line."""


def usable_file(path: str | os.PathLike, expected: str) -> Path:
    """``path`` if it is a non-empty, readable regular file; else `UserFileError`.

    ``expected`` says what the file should be ("a graph YAML file", "an MCAP recording").
    """
    p = Path(path)
    if not p.exists():
        raise UserFileError(f"{p}: no such file (expected {expected})")
    if p.is_dir():
        raise UserFileError(f"{p}: is a directory (expected {expected})")
    if not p.is_file():
        raise UserFileError(f"{p}: not a regular file (expected {expected})")
    if not os.access(p, os.R_OK):
        raise UserFileError(f"{p}: not readable (permission denied; expected {expected})")
    if p.stat().st_size == 0:
        raise UserFileError(f"{p}: is empty (expected {expected})")
    return p


def read_text(path: str | os.PathLike, expected: str) -> str:
    """The UTF-8 text of ``path``; a binary file (a recording, a model) is a `UserFileError`."""
    p = usable_file(path, expected)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        head = p.read_bytes()[:8]
        what = "an MCAP recording" if head.startswith(b"\x89MCAP") else "binary data"
        raise UserFileError(f"{p}: holds {what}, not text (byte {exc.start} is not UTF-8; "
                            f"expected {expected})") from None
    except OSError as exc:
        raise UserFileError(f"{p}: cannot be read ({exc.strerror}; expected {expected})") from None
