"""One call detail record: what a call was, made once, when the call ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..b2bua import Call
    from ..sip.message import Request

__all__ = ["CallRecord", "record_of", "refused_record"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    """The caller's Call-ID (the A-leg's), to find the call in the caller's own records."""
    caller: str | None
    """Calling number as the caller sent it (From user part)."""
    called: str
    """Called number, after the source peer's inbound rewrite."""
    source_peer: str
    dest_peer: str | None
    """The peer that answered, or the last one tried; None when no target was tried."""
    status: int
    """Final status the caller got: 200 for an answered call, 0 if none was sent."""
    reason: str
    """Why the call ended: ``BYE from A-leg``, ``cancelled``, ``failed 486``..."""
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    duration: float
    """Seconds from answer to end (talk time); 0 when not answered."""
    attempts: int
    """B-leg INVITEs sent (more than one after failover)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "caller": self.caller, "called": self.called,
            "source_peer": self.source_peer, "dest_peer": self.dest_peer,
            "status": self.status, "reason": self.reason,
            "started_at": self.started_at.isoformat(),
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
            "ended_at": self.ended_at.isoformat(), "duration": self.duration,
            "attempts": self.attempts,
        }  # fmt: skip


def record_of(call: Call, now: float, wall: float) -> CallRecord:
    """The record of an ended ``call``; ``now`` is the loop clock the call's times are on,
    ``wall`` the Unix time at ``now``."""

    def at(t: float) -> datetime:
        return datetime.fromtimestamp(wall - (now - t), UTC)

    frm = call.a_invite.from_
    ended = call.ended_at if call.ended_at is not None else now
    answered = call.answered_at
    return CallRecord(
        call_id=call.a.call_id,
        caller=getattr(frm.uri, "user", None) if frm is not None else None,
        called=call.number,
        source_peer=call.source_peer,
        dest_peer=call.b_peer,
        status=call.final_status,
        reason=call.end_reason,
        started_at=at(call.created_at),
        answered_at=at(answered) if answered is not None else None,
        ended_at=at(ended),
        duration=round(ended - answered, 3) if answered is not None else 0.0,
        attempts=call.attempts,
    )


def refused_record(request: Request, peer: str, number: str, status: int, reason: str,
                   wall: float) -> CallRecord:  # fmt: skip
    """The record of a call refused before it was set up (no route, over a limit...)."""
    frm = request.from_
    at = datetime.fromtimestamp(wall, UTC)
    return CallRecord(
        call_id=request.call_id or "",
        caller=getattr(frm.uri, "user", None) if frm is not None else None,
        called=number,
        source_peer=peer,
        dest_peer=None,
        status=status,
        reason=f"refused: {reason}",
        started_at=at,
        answered_at=None,
        ended_at=at,
        duration=0.0,
        attempts=0,
    )
