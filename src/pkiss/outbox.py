"""The narrow interface between the transaction-user layer and the owners of its work.

An owner (the calls, the registrar, the outbound registrations, the OPTIONS prober) is handed
an ``Outbox`` with every message, response, timeout and deadline it receives, and asks it for
what it needs done: answer a server transaction, start a client transaction (whose responses
and timeout then come back to that owner), send an ACK, build a CANCEL, set a deadline. An
owner never sees the transaction layer, the other owners or a socket.

Owners call the outbox rather than return a list of commands because a client transaction's
key, which the owner needs at once (to recognise the current INVITE attempt, to CANCEL it),
exists only once the layer has taken the request.
"""

from __future__ import annotations

from typing import Protocol

from .sip.message import Request, Response
from .sip.transaction import Addr

__all__ = ["Outbox", "Owner"]


class Owner(Protocol):
    """What the transaction-user layer hands back to an owner. ``key`` names one of the
    owner's client transactions; ``ref`` is what the owner passed to ``Outbox.at``."""

    def on_response(self, key: str, response: Response, now: float, out: Outbox) -> None: ...

    def on_timeout(self, key: str, now: float, out: Outbox) -> None: ...

    def on_deadline(self, ref: object, at: float, now: float, out: Outbox) -> None: ...

    def stale(self, ref: object, at: float) -> bool:
        """True when the deadline ``at`` set for ``ref`` no longer matters (the layer drops it
        without waking up for it)."""
        ...


class Outbox(Protocol):
    t1: float
    """RFC 3261's T1 of this node (seconds): the base of the owners' own retransmissions."""

    def respond(self, key: str | None, response: Response, now: float) -> None:
        """Answer the server transaction ``key`` (None: the request had none; nothing sent)."""

    def request(self, request: Request, dest: Addr, owner: Owner, now: float) -> str:
        """Send ``request`` in a new client transaction of ``owner``; its key."""

    def ack(self, ack: Request, dest: Addr, now: float) -> None:
        """Send the ACK of a 2xx (kept for the 2xx's retransmissions)."""

    def make_cancel(self, invite_key: str) -> Request | None:
        """The CANCEL of an INVITE client transaction, or None when there is nothing to cancel
        yet (the layer sends it by itself once a provisional arrives)."""

    def find_invite(self, cancel: Request) -> str | None:
        """The key of the INVITE server transaction that ``cancel`` names."""

    def at(self, deadline: float, owner: Owner, ref: object) -> None:
        """Call ``owner.on_deadline(ref, deadline, ...)`` once ``deadline`` has passed."""
