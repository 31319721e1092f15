"""The ``cdr`` table, and the order of a row's values (the insert's, the spool's)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table

__all__ = ["COLUMNS", "RECORD_FIELDS", "TIMES", "cdr_table", "metadata"]

metadata = MetaData()
cdr_table = Table(
    "cdr",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(64)),
    Column("call_id", String(255), nullable=False),
    Column("caller", String(64)),
    Column("called", String(64), nullable=False),
    Column("source_peer", String(64), nullable=False),
    Column("dest_peer", String(64)),
    Column("status", Integer, nullable=False),
    Column("reason", String(128), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, index=True),
    Column("answered_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("duration", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Index("ix_cdr_uid", "uid", unique=True),
)

COLUMNS = tuple(c.name for c in cdr_table.columns if c.name != "id")
"""A row's values (``uid`` and what a record gives), in the order of the insert's parameters."""
TIMES = tuple(i for i, name in enumerate(COLUMNS) if name.endswith("_at"))
RECORD_FIELDS = COLUMNS[1:]
"""What a ``CallRecord`` gives of a row: all but ``uid``."""
