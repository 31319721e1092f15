"""Pure routing decisions: (request, source peer, config) -> ordered candidates or a rejection;
per-peer call limits (sans-I/O accounting)."""

from .limits import Limits, LimitStore, MemoryLimitStore, PeerCounters, Refusal
from .numbers import DidTable, called_number, rewrite
from .router import Decision, Router, Target
from .steering import Drains

__all__ = [
    "Decision",
    "DidTable",
    "Drains",
    "LimitStore",
    "Limits",
    "MemoryLimitStore",
    "PeerCounters",
    "Refusal",
    "Router",
    "Target",
    "called_number",
    "rewrite",
]
