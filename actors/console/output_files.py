"""Files a command writes for a person: whole or not at all, at the path it reports.

Each goes to a temporary name beside its destination and is renamed into place, so a failed or
interrupted command leaves the previous file (or none), never a half-written one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def write_whole(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` and rename ``tmp`` to ``path``; the temporary file never stays."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(out.parent)) from exc
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    except OSError as exc:  # say which file the person asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(out)) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is not writable: there is no temporary file
    return out


def write_text_whole(path: str | os.PathLike, text: str) -> Path:
    return write_whole(path, lambda tmp: tmp.write_text(text))


def write_json_whole(path: str | os.PathLike, obj: Any, indent: int = 1) -> Path:
    """``obj`` as JSON (anything JSON does not know as its ``str``)."""
    return write_text_whole(path, json.dumps(obj, indent=indent, default=str))
