"""The CDR writer on SQLite: records go through the spool, a database that fails keeps them
there, a new run writes them exactly once; tables of earlier versions keep working."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from pkiss.cdr import CallRecord, CdrStore, CdrWriter, Filters

T0 = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def record(n: int, status: int = 200, caller: str = "+33987654321",
           called: str = "+33123456789", dest: str | None = "pbx") -> CallRecord:  # fmt: skip
    at = T0 + timedelta(seconds=n)
    return CallRecord(call_id=f"call-{n}@op", caller=caller, called=called,
                      source_peer="operator", dest_peer=dest, status=status,
                      reason="BYE from A-leg" if status == 200 else f"failed {status}",
                      started_at=at, answered_at=at if status == 200 else None, ended_at=at,
                      duration=0.0, attempts=1)  # fmt: skip


def call_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT call_id FROM cdr ORDER BY id")]


class Down:
    """Makes a store's inserts fail as a database that does not answer does."""

    def __init__(self, store: CdrStore) -> None:
        self.store = store
        self.real = store.insert

    def __enter__(self) -> Down:
        def fail(rows: Any) -> None:
            raise OperationalError("INSERT", {}, Exception("connection refused"))

        self.store.insert = fail  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.insert = self.real  # type: ignore[method-assign]


def writer(tmp_path: Path, max_bytes: int = 1 << 20) -> CdrWriter:
    return CdrWriter(CdrStore(f"sqlite:///{tmp_path / 'cdr.sqlite'}"), tmp_path / "cdr.spool",
                     max_bytes)  # fmt: skip


def test_records_reach_the_database_and_leave_the_spool_empty(tmp_path: Path) -> None:
    async def main() -> None:
        w = writer(tmp_path)
        await w.start()
        for n in range(3):
            w.add(record(n))
        assert await w.flush()
        assert w.spool_bytes == 0 and (tmp_path / "cdr.spool").stat().st_size == 0
        await w.stop()

    asyncio.run(main())
    assert call_ids(tmp_path / "cdr.sqlite") == ["call-0@op", "call-1@op", "call-2@op"]


def test_records_of_a_run_killed_while_the_database_failed_are_written_by_the_next(
    tmp_path: Path,
) -> None:
    async def first_run() -> None:
        w = writer(tmp_path)
        await w.start()
        w.add(record(0))
        assert await w.flush()
        with Down(w.store):
            for n in range(1, 4):
                w.add(record(n))
            assert not await w.flush()
        assert w.spool_bytes > 0
        # killed: no stop(), nothing more written; only the file lock goes with the process
        assert w.spool is not None
        w.spool.close()
        w.store.close()

    async def second_run() -> None:
        w = writer(tmp_path)
        await w.start()  # replays the spool at once
        assert w.spool_bytes == 0
        await w.stop()

    asyncio.run(first_run())
    assert call_ids(tmp_path / "cdr.sqlite") == ["call-0@op"]
    asyncio.run(second_run())
    assert call_ids(tmp_path / "cdr.sqlite") == [f"call-{n}@op" for n in range(4)]


def test_a_replay_of_records_inserted_just_before_a_kill_adds_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the insert and the spool's commit: the next run finds them in the
    spool and in the table; the table keeps one of each."""

    async def first_run() -> None:
        w = writer(tmp_path)
        await w.start()
        assert w.spool is not None
        spool = w.spool

        def killed(offset: int) -> None:
            raise OSError("killed")

        monkeypatch.setattr(spool, "commit", killed)
        for n in range(5):
            w.add(record(n))
        assert not await w.flush()
        spool.close()
        w.store.close()

    async def second_run() -> None:
        w = writer(tmp_path)
        await w.start()
        assert w.spool_bytes == 0
        w.add(record(5))
        await w.stop()

    asyncio.run(first_run())
    assert call_ids(tmp_path / "cdr.sqlite") == [f"call-{n}@op" for n in range(5)]
    asyncio.run(second_run())
    assert call_ids(tmp_path / "cdr.sqlite") == [f"call-{n}@op" for n in range(6)]


def test_a_full_spool_refuses_records_loudly_and_they_go_straight_to_a_working_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> CdrWriter:
        w = writer(tmp_path, max_bytes=4096)
        await w.start()
        with Down(w.store):
            for n in range(40):  # about 200 bytes each: more than 4 KiB
                w.add(record(n))
            assert not await w.flush()
        assert 0 < w.refused < 40 and w.dropped == w.refused
        assert w.spool_bytes <= 4096
        for n in range(40, 80):
            w.add(record(n))
        assert await w.flush()  # the database answers: the spool is emptied, then the rest
        await w.stop()
        return w

    w = asyncio.run(main())
    kept = call_ids(tmp_path / "cdr.sqlite")
    assert len(kept) == 80 - w.dropped
    assert kept[-40:] == [f"call-{n}@op" for n in range(40, 80)]
    assert "full" in caplog.text and "CDRs lost" in caplog.text


def test_a_table_of_an_earlier_version_gets_the_uid_column_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cdr.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE cdr (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id VARCHAR(255) NOT "
            "NULL, caller VARCHAR(64), called VARCHAR(64) NOT NULL, source_peer VARCHAR(64) NOT "
            "NULL, dest_peer VARCHAR(64), status INTEGER NOT NULL, reason VARCHAR(128) NOT NULL,"
            " started_at DATETIME NOT NULL, answered_at DATETIME, ended_at DATETIME NOT NULL, "
            "duration FLOAT NOT NULL, attempts INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO cdr (call_id, called, source_peer, status, reason, started_at, "
            "ended_at, duration, attempts) VALUES ('old@op', '+331', 'operator', 200, 'BYE', "
            "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', 0, 1)"
        )

    async def main() -> None:
        w = writer(tmp_path)
        await w.start()
        w.add(record(1))
        w.add(record(2))
        await w.stop()

    asyncio.run(main())
    assert call_ids(db) == ["old@op", "call-1@op", "call-2@op"]
    with sqlite3.connect(db) as conn:
        uids = [r[0] for r in conn.execute("SELECT uid FROM cdr ORDER BY id")]
    assert uids[0] is None and len(set(uids[1:])) == 2 and None not in uids[1:]


def test_query_filters_by_peer_number_and_status_and_pages_back(tmp_path: Path) -> None:
    store = CdrStore(f"sqlite:///{tmp_path / 'cdr.sqlite'}")
    store.create()
    w = CdrWriter(store, tmp_path / "cdr.spool", 1 << 20)
    records = [
        record(0),
        record(1, status=486),
        record(2, dest="pbx2"),
        record(3, caller="+33100000000", called="+33999"),
        record(4, called="+33_5%"),
        record(5, dest=None, status=503),
    ]
    store.insert(w._rows(records))

    def ids(**kw: Any) -> list[str]:
        limit, offset = kw.pop("limit", 100), kw.pop("offset", 0)
        return [r["call_id"][5:-3] for r in store.query(None, limit, offset, Filters(**kw))]

    assert ids() == ["0", "1", "2", "3", "4", "5"]
    assert ids(peer="pbx2") == ["2"]
    assert ids(peer="operator") == ["0", "1", "2", "3", "4", "5"]  # the source peer counts too
    assert ids(status=486) == ["1"]
    assert ids(number="99") == ["3"]  # a part of the called number
    assert ids(number="331000") == ["3"]  # a part of the caller's
    assert ids(number="_5%") == ["4"]  # taken literally, not as patterns
    assert ids(peer="pbx", status=200) == ["0", "3", "4"]
    assert ids(limit=2) == ["4", "5"]  # the newest, oldest first
    assert ids(limit=2, offset=2) == ["2", "3"]  # the page before
    assert ids(limit=2, offset=6) == []
    store.close()


def test_a_cancelled_flush_finishes_its_batch_before_the_next_one_starts(tmp_path: Path) -> None:
    """A node stopping cancels the writer's task in the middle of a batch: the thread goes
    on, and the last flush waits for it instead of writing the spool beside it."""
    inserting: list[int] = []

    async def main() -> None:
        w = writer(tmp_path)
        await w.start()
        real = w.store.insert

        def slow(rows: Any) -> None:
            inserting.append(len(rows))
            assert len(inserting) == 1 or not busy, "two inserts at once"
            busy.append(1)
            time.sleep(0.3)
            real(rows)
            busy.clear()

        busy: list[int] = []
        w.store.insert = slow  # type: ignore[method-assign]
        w.add(record(0))
        first = asyncio.create_task(w.flush())
        await asyncio.sleep(0.1)
        first.cancel()
        w.add(record(1))
        await w.stop()

    asyncio.run(main())
    assert inserting == [1, 1]
    assert call_ids(tmp_path / "cdr.sqlite") == ["call-0@op", "call-1@op"]
