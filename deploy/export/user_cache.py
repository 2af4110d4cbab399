"""Where export keeps what it builds for the user outside any checkout: the LiteRT conversion
environment and the stand-in SmolVLM backbone (``$XDG_CACHE_HOME/edgevla``, else
``~/.cache/edgevla``). Third-party code and generated files stay out of the project's tree, and
every checkout of the machine shares them."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgevla"
