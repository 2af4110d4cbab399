"""The CURVE keys of a graph's machines: made once (`edgevla keys`), handed out as files.

``<keys_dir>/<machine>.key`` is a machine's public key (Z85): every machine of the graph gets
every public key. ``<machine>.key_secret`` (mode 0600) stays on that machine alone. The folder is
the graph's ``network.keys_dir``, relative to the graph file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq


@dataclass(frozen=True)
class MachineKeys:
    public: dict[str, str]  # machine -> its public key (Z85)
    secret: str  # this machine's secret key (Z85)


def keys_dir(graph) -> Path:
    """Where a graph's machine keys live (``network.keys_dir``, default ``keys`` next to it)."""
    raw = Path(graph.network.keys_dir or "keys")
    return raw if raw.is_absolute() else Path(graph.path).resolve().parent / raw


def write_keys(graph, folder: Path | None = None) -> list[tuple[Path, bool]]:
    """A key pair for each machine that has none yet; -> (public key file, made now)."""
    folder = folder or keys_dir(graph)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = []
    for machine in sorted(graph.machines):
        pub, sec = folder / f"{machine}.key", folder / f"{machine}.key_secret"
        made = not (pub.exists() and sec.exists())
        if made:  # never replaced: the other machines already trust the old one
            public, secret = zmq.curve_keypair()
            old = os.umask(0o077)
            try:
                sec.write_bytes(secret + b"\n")
            finally:
                os.umask(old)
            pub.write_bytes(public + b"\n")
        out.append((pub, made))
    return out


def load_keys(graph, machine: str) -> MachineKeys:
    """Every machine's public key and ``machine``'s secret; a missing file is one line."""
    folder = keys_dir(graph)
    public = {}
    for m in sorted(graph.machines):
        public[m] = _read(folder / f"{m}.key", graph)
    return MachineKeys(public=public, secret=_read(folder / f"{machine}.key_secret", graph))


def _read(path: Path, graph) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        raise ValueError(f"{path}: missing; `edgevla keys {graph.path}` makes the machines' keys "
                         f"once, then each machine needs every .key file and its own "
                         f".key_secret") from None
    if len(text) != 40:
        raise ValueError(f"{path}: not a CURVE key (40 Z85 characters), got {len(text)} characters")
    return text
