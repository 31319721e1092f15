"""The ``cdr`` table, and the order of a row's values (the insert's, the spool's)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["COLUMNS", "CSV_COLUMNS", "EARLIER_WIDTHS", "RECORD_FIELDS", "TIMES", "cdr_table",
           "metadata"]  # fmt: skip

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
    # Columns added since: at the end, nullable (an older table is given them at start, its
    # rows and an older spool's lines have none), never a name ending in "_at" (TIMES)
    Column("b_call_id", String(255)),
    Column("called_received", String(64)),
    Column("caller_sent", String(64)),
    Column("called_sent", String(64)),
    Column("tenant", String(64)),
    Column("source_host", String(64)),
    Column("dest_host", String(64)),
    Column("attempts_detail", Text),
    Column("hangup_by", String(16)),
    Column("setup_18x_ms", Integer),
    Column("setup_200_ms", Integer),
    Column("caller_packets", BigInteger),
    Column("caller_bytes", BigInteger),
    Column("callee_packets", BigInteger),
    Column("callee_bytes", BigInteger),
    Column("sip_reason", String(255)),
    Index("ix_cdr_uid", "uid", unique=True),
)

COLUMNS = tuple(c.name for c in cdr_table.columns if c.name != "id")
"""A row's values (``uid`` and what a record gives), in the order of the insert's parameters."""
TIMES = tuple(i for i, name in enumerate(COLUMNS) if name.endswith("_at"))
RECORD_FIELDS = COLUMNS[1:]
"""What a ``CallRecord`` gives of a row: all but ``uid``."""
CSV_COLUMNS = ("id", *RECORD_FIELDS)
"""The columns of ``GET /api/cdr?format=csv`` and ``pkiss cdr --csv``, in order."""
EARLIER_WIDTHS = frozenset({13})
"""Values in a spool line written by an earlier version (``uid`` to ``attempts``): its
columns are the first of ``COLUMNS``, the others are None."""
