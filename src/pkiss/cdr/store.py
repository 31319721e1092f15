"""Where records go: one SQL table through SQLAlchemy Core, SQLite by default, PostgreSQL by
URL. Writes leave the event loop: records wait in memory for at most a second, then a worker
thread appends the batch to the spool (``spool.py``, fsync-ed) and inserts it; a database that
is down keeps them in the spool, replayed when it answers, also after a restart. Each record
has a ``uid``; an insert ignores one already there, so a replay never writes a record twice."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..config.urls import redacted
from .record import CallRecord
from .spool import Row, Spool
from .table import COLUMNS, CSV_COLUMNS, RECORD_FIELDS, TIMES, cdr_table, metadata

__all__ = ["CdrStore", "CdrWriter", "Filters", "csv_values", "sqlalchemy_url"]

log = logging.getLogger("pkiss.cdr")

FLUSH_INTERVAL = 1.0
"""Seconds between two batch writes."""
MAX_PENDING = 100_000
"""Records kept in memory between two batches at most; the oldest are dropped beyond (and
counted): only a worker thread stuck for a long time lets that many wait."""
REPLAY_BATCH = 5_000
"""Records of the spool's backlog inserted (and committed) at a time."""


def sqlalchemy_url(url: str) -> str:
    """The config's URL as SQLAlchemy needs it: PostgreSQL through psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Filters:
    """What ``query`` keeps: ``peer`` (source or destination, exact), ``number`` (caller or
    called, as received or as sent, a substring), ``status`` (exact)."""

    __slots__ = ("number", "peer", "status")

    def __init__(self, peer: str | None = None, number: str | None = None,
                 status: int | None = None) -> None:  # fmt: skip
        self.peer = peer or None
        self.number = number or None
        self.status = status


def _like(text: str) -> str:
    """``text`` anywhere, its ``%``, ``_`` and ``\\`` taken literally (escape ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class CdrStore:
    """The table, opened (and created when missing) at start."""

    def __init__(self, url: str) -> None:
        self.url = url
        real = sqlalchemy_url(url)
        if real.startswith("sqlite:///"):
            path = Path(real[len("sqlite:///") :])
            if str(path) not in ("", ":memory:"):
                path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(real, pool_pre_ping=True)
        self._sqlite = self.engine.dialect.name == "sqlite"
        # a record already there (a replay of what was inserted just before a stop) is ignored
        dialect_insert = sqlite.insert if self._sqlite else postgresql.insert
        stmt = dialect_insert(cdr_table).on_conflict_do_nothing(index_elements=["uid"])
        compiled = stmt.compile(dialect=self.engine.dialect, column_keys=list(COLUMNS))
        self._insert_sql = str(compiled)
        self._positional = compiled.positional
        if self._positional and tuple(compiled.positiontup or ()) != COLUMNS:
            raise RuntimeError(f"unexpected CDR insert parameters: {compiled.positiontup}")

    def create(self) -> None:
        """The table, and in a table made by an earlier version, the columns it lacks (``uid``,
        then those added since, all nullable): its older rows keep them empty, which the
        unique index on ``uid`` allows."""
        metadata.create_all(self.engine)
        dialect = self.engine.dialect
        # PostgreSQL: two nodes starting at once on one table must not fail on each other
        if_missing = "" if self._sqlite else "IF NOT EXISTS "
        with self.engine.begin() as conn:
            names = {c["name"] for c in inspect(conn).get_columns("cdr")}
            missing = [c for c in cdr_table.columns if c.name not in names]
            if missing:
                log.info("CDR table of an earlier version: adding the columns %s",
                         ", ".join(c.name for c in missing))  # fmt: skip
            for column in missing:
                kind = column.type.compile(dialect=dialect)
                conn.execute(text(f"ALTER TABLE cdr ADD COLUMN {if_missing}{column.name} {kind}"))
            conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ix_cdr_uid ON cdr (uid)"))

    def insert(self, rows: Sequence[Row]) -> None:
        """One transaction, straight to the driver's ``executemany``: SQLAlchemy's per-row
        parameter processing cost 15 µs a record, in a thread that shares the interpreter
        with the event loop (a second's batch at 700 calls/s stalled the loop 10-30 ms).
        ``rows``: ``COLUMNS`` values each."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self._insert_sql, self._params(rows))

    def _params(self, rows: Sequence[Row]) -> list[tuple[Any, ...]] | list[dict[str, Any]]:
        if not self._sqlite:
            params = rows if isinstance(rows, list) else list(rows)
        else:  # SQLite has no time type: the text SQLAlchemy would have written
            params = []
            for row in rows:
                values = list(row)
                for i in TIMES:
                    if values[i] is not None:
                        # what SQLAlchemy stores (and parses back): naive, microseconds
                        values[i] = values[i].replace(tzinfo=None).isoformat(" ", "microseconds")
                params.append(tuple(values))
        if self._positional:
            return params
        return [dict(zip(COLUMNS, row, strict=True)) for row in params]

    def query(self, since: datetime | None, limit: int, offset: int = 0,
              filters: Filters | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """The newest ``limit`` records started at or after ``since`` that pass ``filters``,
        after skipping the ``offset`` newest (the next page back), oldest first."""
        c = cdr_table.c
        stmt = select(*[col for col in cdr_table.columns if col.name != "uid"])
        stmt = stmt.order_by(c.started_at.desc(), c.id.desc())
        if since is not None:
            stmt = stmt.where(c.started_at >= since)
        if filters is not None:
            if filters.peer is not None:
                stmt = stmt.where((c.source_peer == filters.peer) | (c.dest_peer == filters.peer))
            if filters.number is not None:
                pattern = _like(filters.number)
                numbers = (c.caller, c.called, c.called_received, c.caller_sent, c.called_sent)
                stmt = stmt.where(or_(*(n.like(pattern, escape="\\") for n in numbers)))
            if filters.status is not None:
                stmt = stmt.where(c.status == filters.status)
        with self.engine.connect() as conn:
            result = conn.execute(stmt.limit(limit).offset(offset))
            rows = [dict(row._mapping) for row in result]
        rows.reverse()
        for row in rows:
            for key in ("started_at", "answered_at", "ended_at"):
                value = row[key]
                row[key] = value.isoformat() if isinstance(value, datetime) else value
            row["attempts_detail"] = _attempts(row["attempts_detail"])
        return rows

    def close(self) -> None:
        self.engine.dispose()


def _attempts(text: str | None) -> list[Any] | None:
    """The attempts column as a list (None: a record of an earlier version)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def csv_values(row: dict[str, Any]) -> list[Any]:
    """A row of ``query`` as a CSV line's fields (``CSV_COLUMNS``): empty for None, the
    attempts as compact JSON."""
    out: list[Any] = []
    for name in CSV_COLUMNS:
        value = row.get(name)
        if value is None:
            value = ""
        elif isinstance(value, list):
            value = json.dumps(value, separators=(",", ":"))
        out.append(value)
    return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


class CdrWriter:
    """Takes records on the loop (``add``: a list append) and writes them in batches: to the
    spool, then to the database; what the database does not have yet stays in the spool."""

    def __init__(self, store: CdrStore, spool_path: Path, spool_max_bytes: int) -> None:
        self.store = store
        self.spool_path = spool_path
        self.spool_max_bytes = spool_max_bytes
        self.spool: Spool | None = None
        self.pending: list[CallRecord] = []
        self.written = 0
        """Records inserted (or found there already) since start."""
        self.failed_writes = 0
        self.refused = 0
        """Records the full spool refused since start (then inserted at once, or dropped)."""
        self.dropped = 0
        """Records lost since start: refused by the spool while the database failed, or over
        ``MAX_PENDING`` in memory. Each loss is logged as an error."""
        self._ready = False
        self._lock = asyncio.Lock()
        # a flush cancelled on the loop (the node stopping, an API client gone) does not stop
        # its thread: the next write waits for it instead of running beside it
        self._writing = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        # unique ids: random for this run, then a counter (no random draw per record)
        self._uid_prefix = uuid.uuid4().hex
        self._uid_next = 0
        self._values = attrgetter(*RECORD_FIELDS)

    @property
    def spool_bytes(self) -> int:
        """Bytes of records in the spool that the database does not have yet."""
        return self.spool.backlog_bytes if self.spool is not None else 0

    async def start(self) -> None:
        """Open the spool (``SpoolError`` when another process holds it) and the table, and
        write what an earlier run left in the spool. A database that cannot be reached does
        not stop the node: the records wait in the spool."""
        self.spool = spool = await asyncio.to_thread(Spool, self.spool_path, self.spool_max_bytes)
        if spool.backlog_bytes:
            log.info("CDR spool %s: %d bytes of records not in the database yet",
                     spool.path, spool.backlog_bytes)  # fmt: skip
        async with self._lock:
            await asyncio.to_thread(self._write, [])
        self._task = asyncio.create_task(self._run())

    def add(self, record: CallRecord) -> None:
        self.pending.append(record)
        if len(self.pending) > MAX_PENDING:
            excess = len(self.pending) - MAX_PENDING
            del self.pending[:excess]
            self.dropped += excess
            log.error("%d CDRs dropped: more than %d waiting in memory", excess, MAX_PENDING)

    async def flush(self) -> bool:
        """Write what waits; False when the database did not take everything."""
        async with self._lock:
            if not self.pending and not self.spool_bytes:
                return True
            batch, self.pending = self.pending, []
            return await asyncio.to_thread(self._write, batch)

    def _rows(self, records: list[CallRecord]) -> list[Row]:
        prefix, n, values = self._uid_prefix, self._uid_next, self._values
        rows = [(f"{prefix}-{n + i:x}", *values(r)) for i, r in enumerate(records)]
        self._uid_next = n + len(records)
        return rows

    def _write(self, batch: list[CallRecord]) -> bool:
        """In the worker thread: spool ``batch``, then give the database what it lacks."""
        with self._writing:
            return self._write_batch(batch)

    def _write_batch(self, batch: list[CallRecord]) -> bool:
        spool = self.spool
        assert spool is not None, "start() opens the spool"
        rows = self._rows(batch)
        before = spool.size
        fresh_alone = spool.done == before  # the spool held nothing else: no need to read it
        try:
            taken = spool.append(rows)
        except OSError as exc:
            log.error("CDR spool %s cannot be written: %s", spool.path, exc)
            taken = 0
        direct = rows[taken:]
        if direct:
            self.refused += len(direct)
            log.error("CDR spool %s full (%d bytes, storage.cdr_spool.max_bytes %d): %d "
                      "records not spooled, %d since start", spool.path, spool.size,
                      spool.max_bytes, len(direct), self.refused)  # fmt: skip
        try:
            if not self._ready:
                self.store.create()
                self._ready = True
            if fresh_alone and taken:
                self.store.insert(rows[:taken])
                spool.commit(spool.size)
                self.written += taken
            self._replay()
            if direct:
                self.store.insert(direct)
                self.written += len(direct)
        except (SQLAlchemyError, OSError) as exc:
            self.failed_writes += 1
            if not self._ready:
                log.error("CDR storage %s not available yet: %s", redacted(self.store.url),
                          _first_line(exc))  # fmt: skip
            else:
                log.error("CDR write failed, %d bytes of records kept in the spool: %s",
                          spool.backlog_bytes, _first_line(exc))  # fmt: skip
            if direct:
                self.dropped += len(direct)
                log.error("%d CDRs lost: the spool is full and the database failed (%d lost "
                          "since start)", len(direct), self.dropped)  # fmt: skip
            return False
        return True

    def _replay(self) -> None:
        """Insert the spool's backlog, a part at a time, committing each."""
        spool = self.spool
        assert spool is not None
        replayed = 0
        while spool.backlog_bytes:
            rows, offset = spool.read(REPLAY_BATCH)
            if rows:
                self.store.insert(rows)
            spool.commit(offset)
            replayed += len(rows)
        if replayed:
            self.written += replayed
            log.info("CDR spool: %d records written to the database", replayed)

    def _close_spool(self) -> None:
        with self._writing:
            if self.spool is not None:
                self.spool.close()
                self.spool = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.spool is None:
            return
        if not await self.flush():
            log.error(
                "stopping with %d bytes of CDRs in the spool %s: written when the "
                "database answers, at the next start",
                self.spool_bytes,
                self.spool.path,
            )
        async with self._lock:
            await asyncio.to_thread(self._close_spool)
        await asyncio.to_thread(self.store.close)
