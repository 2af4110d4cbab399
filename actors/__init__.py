"""edgevla.actors: the actor runtime (bus, messages, actor base, supervisor, CLI)."""

__version__ = "0.1.0"
