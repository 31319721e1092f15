"""A call: the A-leg (toward the caller, where the INVITE came from) and the B-leg (toward the
callee, the INVITE the SBC builds), with what is in flight between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..routing import Refusal, Target
from ..sip.message import Request
from .leg import Leg

__all__ = ["Call", "Relay"]


@dataclass(slots=True)
class Relay:
    """A request relayed from one leg to the other: answer ``server_key`` on ``from_leg``
    when the request sent on the other leg gets its final response."""

    call: Call
    from_leg: Leg
    server_key: str | None
    original: Request
    sent: Request


@dataclass(eq=False, slots=True)
class Call:
    a: Leg
    a_invite: Request
    a_key: str | None
    source_peer: str
    number: str
    targets: list[Target]
    created_at: float
    b: Leg | None = None
    b_invite: Request | None = None
    b_key: str | None = None
    b_peer: str | None = None
    state: str = "routing"  # routing -> early -> answered -> ended
    a_final_sent: bool = False
    final_status: int = 0  # the final response the caller got (0: none yet)
    a_reliable: bool = False
    a_rseq: int = 0
    rseq_map: dict[int, int] = field(default_factory=dict)
    # reliable provisionals sent to the A-leg and not PRACKed yet (RFC 3262 §3):
    # A-leg RSeq -> [response, retransmit interval, next retransmission at, give up at]
    unacked_1xx: dict[int, list[Any]] = field(default_factory=dict)
    auth_tried: bool = False  # answered the B-leg's 401/407 once for the current target
    late_ack: Leg | None = None  # the leg whose ACK waits for the other side's (SDP answer)
    late_ack_cseq: int = 0
    reinvite_pending: set[str] = field(default_factory=set)
    setup_deadline: float | None = None
    attempts: int = 0
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    # the peers config the call started with (a reload does not change a call in progress)
    peers: dict[str, Any] = field(default_factory=dict)
    # peers whose limit counters this call holds: released once, when the call ends
    held: list[str] = field(default_factory=list)
    refusal: Refusal | None = None  # the last target skipped for its limits
    media: bool = False  # media anchored (relayed by the SBC)
    b_offer: bytes | None = None  # the caller's SDP offer rewritten for the B-leg

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    def other(self, leg: Leg) -> Leg | None:
        return self.b if leg is self.a else self.a
