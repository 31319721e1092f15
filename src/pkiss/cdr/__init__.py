"""Call detail records: one per call, written off the SIP path in batches, through a spool
on disk (SQLAlchemy Core)."""

from .record import CallRecord, record_of, refused_record
from .spool import Spool, SpoolError
from .store import CdrStore, CdrWriter, Filters, sqlalchemy_url

__all__ = [
    "CallRecord",
    "CdrStore",
    "CdrWriter",
    "Filters",
    "Spool",
    "SpoolError",
    "record_of",
    "refused_record",
    "sqlalchemy_url",
]
