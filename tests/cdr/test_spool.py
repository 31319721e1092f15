"""The CDR spool file: what is appended survives a stop, what the database has is not read
again, and a stop in the middle of a write leaves nothing that breaks the next start."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pkiss.cdr import Spool, SpoolError
from pkiss.cdr.spool import Row, encode
from pkiss.cdr.table import COLUMNS, EARLIER_WIDTHS

T0 = datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)


def earlier_row(n: int, status: int = 200) -> Row:
    """One record's values as the version before the billing columns wrote them."""
    return (f"run-{n:x}", f"call-{n}@op", "+33987654321", "+33123456789", "operator", "pbx",
            status, "BYE from A-leg", T0, T0 if status == 200 else None, T0, 1.5, 1)  # fmt: skip


def row(n: int, status: int = 200) -> Row:
    """One record's values in the table's order (uid first)."""
    attempts = '[{"peer":"pbx","host":"udp:127.0.0.3:5060","status":200,"at_ms":1,"end_ms":9}]'
    return (*earlier_row(n, status), f"b-{n}@sbc", "0123456789", "+33987654321", "0123456789",
            "pbx", "udp:127.0.0.2:5060", "udp:127.0.0.3:5060", attempts, "caller", 5, 9, 400,
            68800, 399, 68628, None)  # fmt: skip


def test_a_row_has_a_value_for_each_column() -> None:
    assert len(row(1)) == len(COLUMNS) and len(earlier_row(1)) in EARLIER_WIDTHS


def test_appended_records_are_read_back_after_the_spool_is_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "cdr.spool"
    spool = Spool(path, 1 << 20)
    assert spool.append([row(1), row(2, 486)]) == 2
    spool.close()
    again = Spool(path, 1 << 20)
    rows, offset = again.read(100)
    assert rows == [row(1), row(2, 486)]
    assert offset == path.stat().st_size == again.backlog_bytes


def test_a_batch_costs_one_fsync_whatever_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "cdr.spool", 1 << 20)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    assert spool.append([row(n) for n in range(500)]) == 500
    assert len(synced) == 1
    assert spool.append([]) == 0
    assert len(synced) == 1  # nothing to write, nothing to sync


def test_a_committed_part_is_not_read_again_even_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cdr.spool"
    spool = Spool(path, 1 << 20)
    spool.append([row(n) for n in range(10)])
    first, offset = spool.read(4)
    assert first == [row(n) for n in range(4)]
    spool.commit(offset)
    spool.close()
    again = Spool(path, 1 << 20)
    rest, end = again.read(100)
    assert rest == [row(n) for n in range(4, 10)]
    again.commit(end)
    assert path.stat().st_size == 0 and again.backlog_bytes == 0
    again.close()
    assert Spool(path, 1 << 20).read(100) == ([], 0)


def test_a_fully_committed_spool_is_emptied_and_its_old_offset_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "cdr.spool"
    spool = Spool(path, 1 << 20)
    spool.append([row(n) for n in range(10)])
    _, offset = spool.read(5)
    spool.commit(offset)  # a part: the offset is written
    _, end = spool.read(100)
    spool.commit(end)  # the whole: the file is emptied
    spool.append([row(99)])  # a record after that is not skipped by the old offset
    spool.close()
    assert Spool(path, 1 << 20).read(100)[0] == [row(99)]


def test_a_half_written_last_line_is_ignored_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "cdr.spool"
    spool = Spool(path, 1 << 20)
    spool.append([row(1), row(2)])
    spool.close()
    whole = path.read_bytes()
    with path.open("ab") as f:  # a stop in the middle of the next write
        f.write(encode(row(3))[:37])
    again = Spool(path, 1 << 20)
    assert path.read_bytes() == whole  # the piece is cut off
    assert again.read(100)[0] == [row(1), row(2)]
    assert again.append([row(4)]) == 1  # and the next record starts a line of its own
    again.close()
    assert Spool(path, 1 << 20).read(100)[0] == [row(1), row(2), row(4)]


def test_a_spool_holding_only_a_piece_of_a_line_opens_empty(tmp_path: Path) -> None:
    path = tmp_path / "cdr.spool"
    path.write_bytes(encode(row(1))[:20])
    spool = Spool(path, 1 << 20)
    assert spool.read(100) == ([], 0) and path.stat().st_size == 0


def test_a_line_that_is_not_a_record_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "cdr.spool"
    path.write_bytes(encode(row(1)) + b"\x00\x00garbage\n" + b'["too","short"]\n' + encode(row(2)))
    spool = Spool(path, 1 << 20)
    rows, offset = spool.read(100)
    assert rows == [row(1), row(2)] and offset == path.stat().st_size
    assert spool.skipped == 2


def test_records_beyond_max_bytes_are_refused_not_written(tmp_path: Path) -> None:
    line = len(encode(row(1)))
    path = tmp_path / "cdr.spool"
    spool = Spool(path, max_bytes=line * 3 + 10)
    assert spool.append([row(1), row(2)]) == 2
    assert spool.append([row(3), row(4), row(5)]) == 1  # one more fits, two are refused
    assert spool.size == path.stat().st_size <= spool.max_bytes
    assert spool.read(100)[0] == [row(1), row(2), row(3)]
    _, end = spool.read(100)
    spool.commit(end)  # once the database has them, there is room again
    assert spool.append([row(4), row(5)]) == 2


def test_a_spool_is_used_by_one_process_only(tmp_path: Path) -> None:
    path = tmp_path / "cdr.spool"
    first = Spool(path, 1 << 20)
    with pytest.raises(SpoolError, match="used by another process"):
        Spool(path, 1 << 20)
    first.close()
    Spool(path, 1 << 20).close()


def test_a_spool_folder_that_cannot_be_made_is_an_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match=r"cdr\.spool"):
        Spool(blocker / "cdr.spool", 1 << 20)


def test_lines_of_the_version_before_the_billing_columns_are_read_with_those_empty(
    tmp_path: Path,
) -> None:
    """A node upgraded with records of the earlier version still in its spool (its database
    was down) replays them: the columns that version did not have are None."""
    path = tmp_path / "cdr.spool"
    path.write_bytes(encode(earlier_row(1)) + encode(row(2)) + encode(earlier_row(3, 486)))
    spool = Spool(path, 1 << 20)
    rows, _ = spool.read(100)
    missing = (None,) * (len(COLUMNS) - len(earlier_row(1)))
    assert rows == [earlier_row(1) + missing, row(2), earlier_row(3, 486) + missing]
    assert spool.skipped == 0
