"""What happens to a call, in words neither leg's SIP: the legs translate SIP into these
events, the call's table (``table.py``) decides what each does in each state.

Past-tense frozen dataclasses; ``leg`` names the side an event came from where it matters.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip.message import Header, Request, Response
from .leg import Leg

__all__ = [
    "Acked",
    "Answered",
    "CallEvent",
    "Cancelled",
    "Disconnected",
    "Failed",
    "FailedOver",
    "HungUp",
    "Info",
    "NoAnswer",
    "Offered",
    "Pracked",
    "Refused",
    "Ringing",
    "Trying",
    "Updated",
    "end_reason",
    "hangup_by",
]


@dataclass(frozen=True, slots=True)
class Offered:
    """A new INVITE from the caller, admitted, routed and counted: the call exists."""


@dataclass(frozen=True, slots=True)
class Trying:
    """The callee side's 100: the attempt is alive (no more setup timer)."""


@dataclass(frozen=True, slots=True)
class Ringing:
    """A provisional 18x from the callee side (ringing, session progress, early media)."""

    response: Response


@dataclass(frozen=True, slots=True)
class Answered:
    """The callee side's 2xx to the current attempt."""

    response: Response


@dataclass(frozen=True, slots=True)
class FailedOver:
    """The current attempt failed with a status in its peer's ``failover_on``, and candidates
    are left: try the next one."""

    status: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The call failed: the callee side's final answer, or no candidate left. ``status`` is
    what the caller hears."""

    status: int
    headers: tuple[Header, ...] = ()
    by: str = "node"
    """``callee``: the callee side's own answer; ``node``: no candidate left, none answered
    in time."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The node itself cannot carry the call (its media cannot be anchored)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """No response from the current attempt within ``setup_timeout``, or its INVITE
    transaction timed out."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The caller's CANCEL of its INVITE."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A BYE from one leg (already answered on that leg)."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class HungUp:
    """The node ends the call: shutdown, media timeout, no ACK, an in-dialog request
    that failed with 408/481 or timed out."""

    reason: str


@dataclass(frozen=True, slots=True)
class Updated:
    """A re-INVITE or UPDATE from one leg, for the other (the session changes)."""

    leg: Leg
    request: Request
    key: str | None


@dataclass(frozen=True, slots=True)
class Info:
    """An INFO or MESSAGE from one leg, for the other."""

    leg: Leg
    request: Request
    key: str | None


@dataclass(frozen=True, slots=True)
class Pracked:
    """The caller's PRACK of a reliable provisional (RFC 3262), for the callee side."""

    leg: Leg
    request: Request
    key: str | None


@dataclass(frozen=True, slots=True)
class Acked:
    """An ACK of a 2xx from one leg: the other leg's ACK may wait for it (late offer)."""

    leg: Leg
    request: Request


CallEvent = (
    Offered | Trying | Ringing | Answered | FailedOver | Failed | Refused | NoAnswer
    | Cancelled | Disconnected | HungUp | Updated | Info | Pracked | Acked
)  # fmt: skip


def end_reason(event: CallEvent) -> str:
    """Why a call ended, as its record says."""
    if isinstance(event, Failed):
        return f"failed {event.status}"
    if isinstance(event, Refused):
        return event.reason
    if isinstance(event, Cancelled):
        return "cancelled"
    if isinstance(event, Disconnected):
        return f"BYE from {event.leg.side}-leg"
    if isinstance(event, HungUp):
        return event.reason
    return type(event).__name__.lower()


def hangup_by(event: CallEvent) -> str:
    """Who ended a call, as its record says: ``caller`` (its BYE or CANCEL), ``callee`` (its
    BYE, or its final failure), ``node`` (timeouts, limits, media, an admin's hangup...)."""
    if isinstance(event, Disconnected):
        return "caller" if event.leg.side == "A" else "callee"
    if isinstance(event, Cancelled):
        return "caller"
    if isinstance(event, Failed):
        return event.by
    return "node"
