"""Call detail records: one per call, written off the SIP path in batches, through a spool
on disk (SQLAlchemy Core)."""

from .record import CallRecord, record_of, refused_record
from .spool import Spool, SpoolError
from .store import CdrStore, CdrWriter, Filters, csv_values, sqlalchemy_url

__all__ = [
    "CallRecord",
    "CdrStore",
    "CdrWriter",
    "Filters",
    "Spool",
    "SpoolError",
    "csv_values",
    "record_of",
    "refused_record",
    "sqlalchemy_url",
]
