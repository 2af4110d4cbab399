"""`CheckpointFile`: the crash-safe sink the MCAP writer appends through.

Crash safety ("checkpointed MCAP"): the file stays a complete, valid MCAP after every commit
(every ``flush_ms`` and every finished chunk). After each commit the file ends with an
empty-summary footer (``Footer(0, 0, 0)`` + magic), so the stock reader treats it as an
unindexed file and reads it linearly. The next commit (1) writes a new footer at the new end of
file, (2) fills the gap before it with the new chunks, (3) overwrites the previous footer with a
37-byte private record (opcode 0x80, which every MCAP reader skips). A SIGKILL between any two
of these steps leaves a file whose first footer ends the data: every message up to the previous
commit is readable with ``mcap.reader.make_reader``, with no error. A clean close writes the
normal summary and index. Below that protocol (power loss, a filesystem that reorders writes) a
file can still end anywhere; `read_recording` then reads it linearly up to the tear and warns,
rather than losing the whole file.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path
from typing import Any

from edgevla.actors.recording.mcap_format import MCAP_MAGIC

# A Footer record with no summary: opcode 0x02, length 20, summary_start 0, offsets 0, crc 0.
_EMPTY_FOOTER = struct.pack("<BQQQI", 0x02, 20, 0, 0, 0)
TRAILER = _EMPTY_FOOTER + MCAP_MAGIC  # 37 bytes
# Private record (opcodes 0x80-0xFF are reserved for private use; readers skip them) of the
# trailer's exact size: used to blank an old trailer in place.
_PAD_BODY = b"edgevla-checkpoint".ljust(len(TRAILER) - 9, b"\0")
PAD_RECORD = struct.pack("<BQ", 0x80, len(_PAD_BODY)) + _PAD_BODY
assert len(PAD_RECORD) == len(TRAILER) == 37
_PAGE = 4096


def pad_record(n: int) -> bytes:
    """A private record of exactly ``n`` >= 9 bytes (skipped by readers)."""
    return struct.pack("<BQ", 0x80, n - 9) + b"\0" * (n - 9)


class CheckpointFile:
    """Append-only sink for `mcap.writer.Writer` that keeps the file valid after each commit.

    The MCAP writer sees a stream (``write``/``tell``/``flush``); bytes stay in memory until
    `commit`. See the module docstring for the three-step commit.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False) -> None:
        self.path = Path(path)
        # O_EXCL: a recording is never overwritten (a restarted recorder picks a new name).
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._fsync = fsync
        self._pending = bytearray()
        self._end = 0  # where the live trailer starts (= bytes of real MCAP data so far)
        self._has_trailer = False
        self.closed = False

    # -- the stream interface the mcap writer uses
    def write(self, data: Any) -> int:
        self._pending += data
        return len(data)

    def tell(self) -> int:
        return self._base() + len(self._pending)

    def flush(self) -> None:  # the mcap writer's flush(); durability is commit()'s job
        pass

    def seekable(self) -> bool:
        return False

    # --
    def _base(self) -> int:
        return self._end + (len(TRAILER) if self._has_trailer else 0)

    @property
    def size(self) -> int:
        return self.tell() + (0 if self.closed else len(TRAILER))

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def _pwrite_all(self, data: bytes | memoryview, offset: int) -> None:
        mv = memoryview(data)
        while mv.nbytes:
            n = os.pwrite(self._fd, mv, offset)
            if n <= 0:  # pwrite reports a full disk as an exception; be safe anyway
                raise OSError(errno.ENOSPC, "short write", str(self.path))
            mv, offset = mv[n:], offset + n

    def commit(self, final: bool = False) -> None:
        """Make everything written so far durable against SIGKILL (not power loss unless fsync)."""
        if self.closed:
            return
        if not self._pending and not final:
            return
        start = self._base()
        data = bytes(self._pending)
        if final:
            if not data.endswith(MCAP_MAGIC):
                raise ValueError("final commit must end with the MCAP footer and magic")
            body, tail = data[:-len(TRAILER)], data[-len(TRAILER):]
        else:
            body, tail = data, TRAILER
        body_end = start + len(body)
        temp_end = body_end
        if not final:
            # Keep the trailer inside one page: a write within a page is all-or-nothing under
            # SIGKILL, so the file never ends in half a footer.
            r = body_end % _PAGE
            if r + len(TRAILER) > _PAGE:
                n = _PAGE - r if _PAGE - r >= 9 else _PAGE - r + _PAGE
                body = body + pad_record(n)
                body_end += n
                temp_end = body_end
        else:
            # the temporary end goes to the next page boundary after the real one; the file is
            # cut back to the real end at the very last step
            temp_end = -(-(body_end + len(TRAILER)) // _PAGE) * _PAGE
        self._pwrite_all(TRAILER, temp_end)  # 1: a valid end of file beyond the gap
        self._pwrite_all(body, start)  # 2: fill the gap (a kill here leaves the old end in force)
        if self._has_trailer:
            self._pwrite_all(PAD_RECORD, self._end)  # 3: the old end becomes a skipped record
        if final:
            self._pwrite_all(tail, body_end)  # 4: the real footer with its summary
            os.ftruncate(self._fd, body_end + len(tail))  # 5: drop the temporary end
        if self._fsync:
            os.fsync(self._fd)
        self._pending.clear()
        self._end = body_end
        self._has_trailer = not final

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)
