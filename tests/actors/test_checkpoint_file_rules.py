"""The checkpointed file's commit protocol at the byte level: after every commit the file ends
in one whole trailer that lies inside one page, what came before it is exactly the data plus
skipped private records, and a final commit leaves exactly the data."""

from __future__ import annotations

import struct

import pytest

from edgevla.actors.recording import checkpoint_file as cf
from edgevla.actors.recording.mcap_format import MCAP_MAGIC

PAGE = 4096


def _records(blob: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """(opcode, length) of the records between start and end (each: u8 op, u64 len, body)."""
    out, i = [], start
    while i < end:
        op, n = struct.unpack_from("<BQ", blob, i)
        out.append((op, n))
        i += 9 + n
    assert i == end
    return out


def test_the_trailer_is_exactly_an_empty_footer_and_the_magic():
    assert cf.TRAILER == struct.pack("<BQQQI", 0x02, 20, 0, 0, 0) + MCAP_MAGIC
    assert cf.PAD_RECORD[:9] == struct.pack("<BQ", 0x80, 28)
    assert cf.pad_record(9) == b"\x80" + bytes(8) and len(cf.pad_record(100)) == 100
    assert struct.unpack_from("<BQ", cf.pad_record(100)) == (0x80, 91)


@pytest.mark.parametrize("sizes", [[10], [PAGE - 40], [PAGE - 37], [PAGE - 36], [PAGE - 30],
                                   [PAGE - 9], [PAGE - 8], [PAGE - 5], [PAGE - 10, 9],
                                   [3 * PAGE + 4000, 50, PAGE]])
def test_every_commit_ends_in_one_trailer_inside_one_page(tmp_path, sizes):
    path = tmp_path / "r.mcap"
    f = cf.CheckpointFile(path)
    written = b""
    for k, n in enumerate(sizes):
        # the data itself is a private record of n bytes, so the file can be walked record by record
        data = cf.pad_record(n)
        f.write(data)
        written += data
        f.commit()
        blob = path.read_bytes()
        assert blob.endswith(cf.TRAILER)
        t0 = len(blob) - len(cf.TRAILER)
        assert t0 // PAGE == (len(blob) - 1) // PAGE, "the trailer straddles a page"
        assert f.tell() == len(blob) and f.size == f.tell() + len(cf.TRAILER)  # size: once committed
        # what the data did not fill is private records only (old trailers blanked, padding)
        recs = _records(blob, 0, t0)
        assert all(op == 0x80 for op, _ in recs)
        assert sum(9 + n for _, n in recs) == t0 >= len(written)
        assert t0 < len(written) + (k + 1) * (len(cf.TRAILER) + 2 * PAGE)  # padding is bounded
        before = path.read_bytes()
        f.commit()  # nothing new: nothing changes
        assert path.read_bytes() == before
    f.write(b"\x02" + struct.pack("<Q", 20) + bytes(20) + MCAP_MAGIC)  # a footer and magic
    f.commit(final=True)
    blob = path.read_bytes()
    # the temporary end is gone: the file is the data, blanked trailers and the real footer
    recs = _records(blob, 0, len(blob) - len(MCAP_MAGIC))
    assert blob.endswith(MCAP_MAGIC) and recs[-1] == (0x02, 20)
    assert all(op == 0x80 for op, _ in recs[:-1])
    f.close()
    f.close()  # twice is fine
    assert f.closed


def test_a_final_commit_must_end_with_the_magic(tmp_path):
    f = cf.CheckpointFile(tmp_path / "r.mcap")
    f.write(b"not a footer")
    with pytest.raises(ValueError, match="final commit must end with the MCAP footer"):
        f.commit(final=True)
    f.close()


def test_short_writes_continue_where_they_stopped_and_no_progress_is_an_error(tmp_path,
                                                                            monkeypatch):
    real = cf.os.pwrite
    monkeypatch.setattr(cf.os, "pwrite", lambda fd, data, off: real(fd, bytes(data)[:5], off))
    f = cf.CheckpointFile(tmp_path / "r.mcap")
    f.write(cf.pad_record(100))
    f.commit()
    blob = (tmp_path / "r.mcap").read_bytes()
    assert blob[:100] == cf.pad_record(100) and blob.endswith(cf.TRAILER)
    monkeypatch.setattr(cf.os, "pwrite", lambda fd, data, off: 0)
    f.write(cf.pad_record(10))
    with pytest.raises(OSError, match="short write"):
        f.commit()
    f.close()


def test_bookkeeping_mode_and_one_byte_writes(tmp_path, monkeypatch):
    import os

    path = tmp_path / "r.mcap"
    f = cf.CheckpointFile(path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644 & ~umask
    f.write(cf.pad_record(20))
    assert f.pending_bytes == 20
    real = cf.os.pwrite
    monkeypatch.setattr(cf.os, "pwrite", lambda fd, data, off: real(fd, bytes(data)[:1], off))
    f.commit()  # one byte per call still gets there
    assert f.pending_bytes == 0 and path.read_bytes()[:20] == cf.pad_record(20)
    f.close()
    assert f.size == f.tell()  # closed: no trailer to come


def test_a_final_commit_cut_short_after_its_body_still_ends_in_a_trailer(tmp_path, monkeypatch):
    """Steps 1 and 2 of the final commit done, the process killed before step 3: the file
    must still end in a whole trailer (the temporary one, beyond the body)."""
    path = tmp_path / "r.mcap"
    f = cf.CheckpointFile(path)
    f.write(cf.pad_record(PAGE - 100))
    f.commit()
    calls = []
    real = f._pwrite_all

    def until_killed(data, offset):
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for the SIGKILL
        calls.append(offset)
        real(data, offset)

    monkeypatch.setattr(f, "_pwrite_all", until_killed)
    f.write(cf.pad_record(500) + b"\x02" + struct.pack("<Q", 20) + bytes(20) + MCAP_MAGIC)
    with pytest.raises(KeyboardInterrupt):
        f.commit(final=True)
    blob = path.read_bytes()
    assert blob.endswith(cf.TRAILER) and (len(blob) - len(cf.TRAILER)) % PAGE == 0


def test_the_temporary_end_clears_the_real_footer_when_the_body_ends_near_a_page_end(tmp_path,
                                                                                     monkeypatch):
    """Steps 1-4 of the final commit done, killed before the file is cut back: the real footer
    was written at the body's end, and the temporary trailer must lie wholly beyond it."""
    path = tmp_path / "r.mcap"
    f = cf.CheckpointFile(path)
    f.write(cf.pad_record(PAGE - 100))
    f.commit()  # the next data starts at PAGE - 63
    footer = b"\x02" + struct.pack("<Q", 20) + bytes(20) + MCAP_MAGIC
    f.write(cf.pad_record(PAGE + 53) + footer)  # the body ends 10 bytes before a page end

    def killed(fd, size):
        raise KeyboardInterrupt

    monkeypatch.setattr(cf.os, "ftruncate", killed)
    with pytest.raises(KeyboardInterrupt):
        f.commit(final=True)
    blob = path.read_bytes()
    assert blob.endswith(cf.TRAILER) and blob[2 * PAGE - 10:2 * PAGE + 27] == footer
