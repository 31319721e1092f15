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

from pkiss.cdr import CallRecord, CdrStore, CdrWriter, Filters, csv_values
from pkiss.cdr.spool import encode
from pkiss.cdr.table import CSV_COLUMNS

T0 = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def record(n: int, status: int = 200, caller: str = "+33987654321",
           called: str = "+33123456789", dest: str | None = "pbx",
           **billing: Any) -> CallRecord:  # fmt: skip
    at = T0 + timedelta(seconds=n)
    return CallRecord(call_id=f"call-{n}@op", caller=caller, called=called,
                      source_peer="operator", dest_peer=dest, status=status,
                      reason="BYE from A-leg" if status == 200 else f"failed {status}",
                      started_at=at, answered_at=at if status == 200 else None, ended_at=at,
                      duration=0.0, attempts=1, **billing)  # fmt: skip


ATTEMPTS = (
    '[{"peer":"pbx","host":"udp:127.0.0.3:5060","status":503,"at_ms":0,"end_ms":4},'
    '{"peer":"pbx","host":"udp:127.0.0.4:5060","status":200,"at_ms":4,"end_ms":250}]'
)
BILLING = {
    "b_call_id": "b-1@sbc", "called_received": "0123456789", "caller_sent": "0987654321",
    "called_sent": "+33123456789", "tenant": "pbx", "source_host": "udp:127.0.0.2:5060",
    "dest_host": "udp:127.0.0.4:5060", "attempts_detail": ATTEMPTS, "hangup_by": "callee",
    "setup_18x_ms": 120, "setup_200_ms": 250, "caller_packets": 400, "caller_bytes": 68800,
    "callee_packets": 398, "callee_bytes": 68456, "sip_reason": "Q.850;cause=16",
}  # fmt: skip


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
            for n in range(40):  # about 250 bytes each: more than 4 KiB
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


def test_a_table_of_the_version_before_the_billing_columns_gets_them_and_its_spool_replays(
    tmp_path: Path,
) -> None:
    """Upgraded from the version before: its table (with ``uid``) is given the billing columns
    at start, its rows read back with them empty; a record it left in the spool (its
    database was down) is written with them empty too; a new record has them all."""
    db = tmp_path / "cdr.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE cdr (id INTEGER NOT NULL PRIMARY KEY, uid VARCHAR(64), call_id "
            "VARCHAR(255) NOT NULL, caller VARCHAR(64), called VARCHAR(64) NOT NULL, "
            "source_peer VARCHAR(64) NOT NULL, dest_peer VARCHAR(64), status INTEGER NOT NULL,"
            " reason VARCHAR(128) NOT NULL, started_at DATETIME NOT NULL, answered_at DATETIME,"
            " ended_at DATETIME NOT NULL, duration FLOAT NOT NULL, attempts INTEGER NOT NULL)"
        )
        conn.execute("CREATE UNIQUE INDEX ix_cdr_uid ON cdr (uid)")
        conn.execute(
            "INSERT INTO cdr (uid, call_id, called, source_peer, status, reason, started_at, "
            "ended_at, duration, attempts) VALUES ('old-0', 'old@op', '+331', 'operator', 200, "
            "'BYE', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', 0, 1)"
        )
    spooled = ("old-1", "spooled@op", "+33987654321", "+33123456789", "operator", "pbx", 486,
               "failed 486", T0, None, T0, 0.0, 1)  # fmt: skip
    (tmp_path / "cdr.spool").write_bytes(encode(spooled))

    async def main() -> None:
        w = writer(tmp_path)
        await w.start()  # the columns, then the spool's record
        assert w.spool_bytes == 0 and w.spool is not None and w.spool.skipped == 0
        w.add(record(1, **BILLING))
        await w.stop()

    asyncio.run(main())
    assert call_ids(db) == ["old@op", "spooled@op", "call-1@op"]
    with sqlite3.connect(db) as conn:
        names = [r[1] for r in conn.execute("PRAGMA table_info(cdr)")]
    assert set(BILLING) <= set(names)
    store = CdrStore(f"sqlite:///{db}")
    old, spooled_row, new = store.query(None, 10)
    store.close()
    assert all(old[k] is None and spooled_row[k] is None for k in BILLING)
    assert (spooled_row["status"], spooled_row["reason"]) == (486, "failed 486")
    assert {k: new[k] for k in BILLING if k != "attempts_detail"} == {
        k: v for k, v in BILLING.items() if k != "attempts_detail"
    }
    assert [(a["host"], a["status"]) for a in new["attempts_detail"]] == [
        ("udp:127.0.0.3:5060", 503), ("udp:127.0.0.4:5060", 200),
    ]  # fmt: skip


def test_a_record_reads_back_whole_as_json_and_as_csv(tmp_path: Path) -> None:
    store = CdrStore(f"sqlite:///{tmp_path / 'cdr.sqlite'}")
    store.create()
    w = CdrWriter(store, tmp_path / "cdr.spool", 1 << 20)
    billed = record(1, **BILLING)
    store.insert(w._rows([billed, record(2, status=486)]))
    answered, failed = store.query(None, 10)
    store.close()
    expected = {k: v for k, v in billed.as_dict().items() if not k.endswith("_at")}
    assert {k: answered[k] for k in expected} == expected  # (SQLite: times without offset)
    assert answered["attempts_detail"][1] == {
        "peer": "pbx", "host": "udp:127.0.0.4:5060", "status": 200, "at_ms": 4, "end_ms": 250,
    }  # fmt: skip
    line = dict(zip(CSV_COLUMNS, csv_values(answered), strict=True))
    assert line["attempts_detail"] == ATTEMPTS  # compact JSON, as stored
    assert (line["hangup_by"], line["sip_reason"], line["caller_bytes"]) == (
        "callee", "Q.850;cause=16", 68800,
    )  # fmt: skip
    empty = dict(zip(CSV_COLUMNS, csv_values(failed), strict=True))
    assert empty["answered_at"] == "" and empty["caller_packets"] == "" and empty["tenant"] == ""


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
        record(6, called_received="0155500000", caller_sent="0987650000"),
    ]
    store.insert(w._rows(records))

    def ids(**kw: Any) -> list[str]:
        limit, offset = kw.pop("limit", 100), kw.pop("offset", 0)
        return [r["call_id"][5:-3] for r in store.query(None, limit, offset, Filters(**kw))]

    assert ids() == ["0", "1", "2", "3", "4", "5", "6"]
    assert ids(peer="pbx2") == ["2"]
    assert ids(peer="operator") == ["0", "1", "2", "3", "4", "5", "6"]  # the source counts too
    assert ids(status=486) == ["1"]
    assert ids(number="99") == ["3"]  # a part of the called number
    assert ids(number="331000") == ["3"]  # a part of the caller's
    assert ids(number="_5%") == ["4"]  # taken literally, not as patterns
    assert ids(number="01555") == ["6"]  # as the caller dialled it
    assert ids(number="9876500") == ["6"]  # as the node sent it
    assert ids(peer="pbx", status=200) == ["0", "3", "4", "6"]
    assert ids(limit=2) == ["5", "6"]  # the newest, oldest first
    assert ids(limit=2, offset=2) == ["3", "4"]  # the page before
    assert ids(limit=2, offset=7) == []
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
