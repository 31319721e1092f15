"""One call detail record: what a call was, made once, when the call ends.

Made on the event loop from what the call kept as it went (a few numbers set when things
happened: ``Call.ringing_at``, ``UacLeg.status``...): no parsing but the called number as
received, and the attempts' JSON written by hand (peer names and hosts need no escaping)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..routing.numbers import called_number
from ..sip.message import reason_phrase

if TYPE_CHECKING:
    from ..b2bua import Call
    from ..b2bua.call import Attempt
    from ..sip.message import Request

__all__ = ["HANGUP_BY", "CallRecord", "record_of", "refused_record"]

HANGUP_BY = ("caller", "callee", "node")
"""The values of ``CallRecord.hangup_by``."""

NUMBER_MAX = 64
"""The columns' length for numbers (``table.py``): a longer one from the wire is cut there,
for PostgreSQL refuses a row with a value too long, and a batch with it."""
CALL_ID_MAX = 255
SIP_REASON_MAX = 255


@dataclass(slots=True)
class CallRecord:
    """(Not frozen: a frozen dataclass sets each of its 29 fields through
    ``object.__setattr__``, which made a record cost twice as much on the event loop.)"""

    call_id: str
    """The caller's Call-ID (the A-leg's), to find the call in the caller's own records."""
    caller: str | None
    """Calling number as the caller sent it (From user part)."""
    called: str
    """Called number, after the source peer's inbound rewrite (what routing used)."""
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
    b_call_id: str | None = None
    """The callee side's Call-ID: the B-leg that answered, or the last one tried."""
    called_received: str | None = None
    """Called number as the caller sent it (Request-URI), before any rewrite."""
    caller_sent: str | None = None
    """Calling number the node sent the callee side (From, after the rewrites; ``anonymous``
    when the caller asked for privacy toward an untrusted peer)."""
    called_sent: str | None = None
    """Called number the node sent the callee side (To, after the rewrites)."""
    tenant: str | None = None
    """The PBX peer of the call (the source peer when it is a PBX, else the PBX it went to,
    that answered or transferred it on); None when no PBX took part."""
    source_host: str | None = None
    """Where the caller's INVITE came from: ``udp:192.0.2.7:5060``."""
    dest_host: str | None = None
    """The host of ``dest_peer`` that answered, or the last one tried."""
    attempts_detail: str = "[]"
    """Each B-leg attempt in order, as JSON: ``[{"peer": "pbx", "host": "udp:...",
    "status": 503, "at_ms": 0, "end_ms": 12}, ...]``; ``status`` 0: no final response (no
    answer in time, cancelled while ringing); times in ms after ``started_at``."""
    hangup_by: str | None = None
    """``caller``, ``callee`` or ``node`` (see ``HANGUP_BY``)."""
    setup_18x_ms: int | None = None
    """Milliseconds from the caller's INVITE to the first 18x the node sent it."""
    setup_200_ms: int | None = None
    """Milliseconds from the caller's INVITE to the 200 the node sent it."""
    caller_packets: int | None = None
    """Media packets (RTP and RTCP) the built-in relay carried from the caller to the
    callee side; None when it did not relay the call."""
    caller_bytes: int | None = None
    callee_packets: int | None = None
    """... and from the callee side to the caller."""
    callee_bytes: int | None = None
    sip_reason: str | None = None
    """The Reason header (RFC 3326) of the BYE, CANCEL or failure response that ended the
    call (``Q.850;cause=16``); else, for a call that failed, its final status as one
    (``SIP;cause=486;text="Busy Here"``)."""

    def as_dict(self) -> dict[str, Any]:
        """The record as ``GET /api/cdr`` shows it (times ISO 8601, the attempts a list)."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            out[field.name] = value
        out["attempts_detail"] = json.loads(self.attempts_detail)
        return out


def _clip(text: str | None, limit: int) -> str | None:
    return text[:limit] if text is not None and len(text) > limit else text


def _status_reason(status: int) -> str | None:
    """A failed call's final status, written as a Reason header value."""
    if status < 300:
        return None
    return f'SIP;cause={status};text="{reason_phrase(status)}"'


def _ms(at: float | None, start: float) -> int | None:
    return round((at - start) * 1000) if at is not None else None


def _attempt(attempt: Attempt, start: float) -> str:
    peer, host, status, sent, final = attempt
    at = _ms(sent, start)
    end = _ms(final, start)
    at_ms = "null" if at is None else at
    end_ms = "null" if end is None else end
    return (f'{{"peer":"{peer}","host":"{host}","status":{status},"at_ms":{at_ms},'
            f'"end_ms":{end_ms}}}')  # fmt: skip


def _caller_of(request: Request) -> str | None:
    frm = request.from_
    return _clip(getattr(frm.uri, "user", None), NUMBER_MAX) if frm is not None else None


def _tenant(call: Call) -> str | None:
    """The source peer when it is a PBX, else the PBX the call went to (the one that
    answered, or that transferred it on)."""
    peers = call.peers
    source = peers.get(call.source_peer)
    if source is not None and source.role == "pbx":
        return call.source_peer
    names = [call.b.peer] if call.b is not None else []
    if call.tried is not None:
        names += [t[0] for t in reversed(call.tried)]
    for name in names:
        peer = peers.get(name)
        if peer is not None and peer.role == "pbx":
            return name
    return None


def record_of(call: Call, now: float, wall: float) -> CallRecord:
    """The record of an ended ``call``; ``now`` is the loop clock the call's times are on,
    ``wall`` the Unix time at ``now``."""

    def at(t: float) -> datetime:
        return datetime.fromtimestamp(wall - (now - t), UTC)

    invite = call.a_invite
    ended = call.ended_at if call.ended_at is not None else now
    answered = call.answered_at
    start = call.created_at
    b = call.b
    tried = [_attempt(t, start) for t in call.tried] if call.tried is not None else []
    if b is not None:
        tried.append(_attempt((b.peer, b.dest, b.status, b.sent_at, b.final_at), start))
    tenant = _tenant(call)
    counts = call.media_counts
    status = call.final_status
    return CallRecord(
        call_id=_clip(call.a.call_id, CALL_ID_MAX) or "",
        caller=_caller_of(invite),
        called=_clip(call.number, NUMBER_MAX) or "",
        source_peer=call.source_peer,
        dest_peer=b.peer if b is not None else None,
        status=status,
        reason=call.end_reason,
        started_at=at(start),
        answered_at=at(answered) if answered is not None else None,
        ended_at=at(ended),
        duration=round(ended - answered, 3) if answered is not None else 0.0,
        attempts=call.attempts,
        b_call_id=b.call_id if b is not None else None,
        called_received=_clip(called_number(invite), NUMBER_MAX),
        caller_sent=_clip(b.caller_sent, NUMBER_MAX) if b is not None else None,
        called_sent=_clip(b.called_sent, NUMBER_MAX) if b is not None else None,
        tenant=tenant,
        source_host=str(call.a.dest),
        dest_host=str(b.dest) if b is not None else None,
        attempts_detail=f"[{','.join(tried)}]",
        hangup_by=call.hangup_by or None,
        setup_18x_ms=_ms(call.ringing_at, start),
        setup_200_ms=_ms(answered, start),
        caller_packets=counts[0] if counts is not None else None,
        caller_bytes=counts[1] if counts is not None else None,
        callee_packets=counts[2] if counts is not None else None,
        callee_bytes=counts[3] if counts is not None else None,
        sip_reason=_clip(call.sip_reason, SIP_REASON_MAX) or _status_reason(status),
    )


def refused_record(request: Request, peer: str, number: str, status: int, reason: str,
                   wall: float) -> CallRecord:  # fmt: skip
    """The record of a call refused before it was set up (no route, over a limit...)."""
    at = datetime.fromtimestamp(wall, UTC)
    return CallRecord(
        call_id=_clip(request.call_id or "", CALL_ID_MAX) or "",
        caller=_caller_of(request),
        called=_clip(number, NUMBER_MAX) or "",
        source_peer=peer,
        dest_peer=None,
        status=status,
        reason=f"refused: {reason}",
        started_at=at,
        answered_at=None,
        ended_at=at,
        duration=0.0,
        attempts=0,
        called_received=_clip(called_number(request), NUMBER_MAX),
        hangup_by="node",
        sip_reason=_status_reason(status),
    )
