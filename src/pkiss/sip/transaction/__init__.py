"""The transaction layer (RFC 3261 §17, with RFC 6026's Accepted states), sans-I/O."""

from .events import (
    AckTimedOut,
    Addr,
    RequestReceived,
    ResponseReceived,
    Send,
    TransactionOutput,
    TransactionTimedOut,
)
from .layer import TransactionLayer
from .timers import Timers

__all__ = [
    "AckTimedOut",
    "Addr",
    "RequestReceived",
    "ResponseReceived",
    "Send",
    "Timers",
    "TransactionLayer",
    "TransactionOutput",
    "TransactionTimedOut",
]
