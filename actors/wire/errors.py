"""The one error of the wire: a frame list that is not a valid message."""

from __future__ import annotations


class MalformedMessage(ValueError):
    """A frame list that is not a valid message; ``kind`` groups drops for counting."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
