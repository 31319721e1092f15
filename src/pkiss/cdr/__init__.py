"""Call detail records: one per call, written off the SIP path in batches (SQLAlchemy Core)."""

from .record import CallRecord, record_of, refused_record
from .store import CdrStore, CdrWriter, sqlalchemy_url

__all__ = ["CallRecord", "CdrStore", "CdrWriter", "record_of", "refused_record", "sqlalchemy_url"]
