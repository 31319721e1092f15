"""What the transaction layer takes and gives: addresses and output events (plain data).

The events are frozen dataclasses with a hand-written ``__init__``: the generated one of a
frozen dataclass costs twice as much, and the layer makes one or two events per message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..message import Message, Request, Response

_set = object.__setattr__  # how a frozen dataclass sets its fields

__all__ = [
    "Addr",
    "RequestReceived",
    "ResponseReceived",
    "Send",
    "TransactionOutput",
    "TransactionTimedOut",
]


class Addr(NamedTuple):
    """Where a message comes from or goes to. ``transport`` is ``udp``, ``tcp`` or ``tls``;
    ``host`` an IP address without brackets."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Send:
    """Transmit ``message`` to ``dest`` (the driver serialises it with ``bytes(message)``)."""

    message: Message
    dest: Addr

    def __init__(self, message: Message, dest: Addr) -> None:
        _set(self, "message", message)
        _set(self, "dest", dest)


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU (never a retransmission). ``key`` names its server transaction
    (None for an ACK, which has none); answer through ``TransactionLayer.respond(key, ...)``."""

    request: Request
    source: Addr
    key: str | None

    def __init__(self, request: Request, source: Addr, key: str | None) -> None:
        _set(self, "request", request)
        _set(self, "source", source)
        _set(self, "key", key)


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU. ``key`` is the client transaction it belongs to, or None for a
    2xx to an INVITE whose transaction is gone (the TU re-sends its ACK, §13.2.2.4)."""

    response: Response
    source: Addr
    key: str | None

    def __init__(self, response: Response, source: Addr, key: str | None) -> None:
        _set(self, "response", response)
        _set(self, "source", source)
        _set(self, "key", key)


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B or F fired (no final response), or a transport error: the TU treats it as a 408
    (§8.1.3.1). ``key`` is the client transaction."""

    key: str


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """A 2xx to an INVITE sent through server transaction ``key`` was retransmitted for 64*T1
    and no ACK came (§13.3.1.4): the TU should end the dialog (send BYE)."""

    key: str
    call_id: str


TransactionOutput = Send | RequestReceived | ResponseReceived | TransactionTimedOut | AckTimedOut
__all__ += ["AckTimedOut"]
