"""A call: the A-leg (toward the caller, where the INVITE came from) and the B-leg (toward the
callee, the INVITE the node builds), its state in the call table, and what it holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config import Peer
from ..routing import Refusal, Target
from ..sip.message import Request
from ..sip.transaction import Addr
from .leg import Leg
from .table import CallState
from .transfer import Transfer
from .uac import UacLeg
from .uas import UasLeg

__all__ = ["Attempt", "Call", "CallTimer"]

Attempt = tuple[str, Addr, int, float | None, float | None]
"""A B-leg attempt given up or replaced, for the call's record: its peer, the host it went
to, its final status (0: none), when its INVITE went and when its final response came."""


class CallTimer:
    """A deadline of a call in the node's deadline heap: ``setup`` (setup_timeout),
    ``answer`` (answer_timeout), ``1xx`` (a reliable provisional's retransmission) or
    ``session`` (RFC 4028, with its ``leg``). The heap forgets a deadline only when it is due
    (a session refresh is due in 15 minutes): when the call ends, its timers let go of it
    (``call`` None), so that an ended call is freed at once, not when its last timer is due."""

    __slots__ = ("call", "kind", "leg")

    def __init__(self, kind: str, call: Call, leg: Leg | None = None) -> None:
        self.kind = kind
        self.call: Call | None = call
        self.leg = leg


@dataclass(eq=False, slots=True)
class Call:
    a: UasLeg
    source_peer: str
    number: str
    targets: list[Target]
    created_at: float
    # the peers config the call started with (a reload does not change a call in progress)
    peers: Mapping[str, Peer]
    b: UacLeg | None = None
    state: CallState = CallState.NEW
    late_ack: Leg | None = None  # the leg whose ACK waits for the other side's (SDP answer)
    late_ack_cseq: int = 0
    setup_deadline: float | None = None
    attempts: int = 0
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    # peers whose limit counters this call holds: released once, when the call ends
    held: list[str] = field(default_factory=list)
    refusal: Refusal | None = None  # the last target skipped for its limits
    media: bool = False  # media anchored (relayed by the node)
    b_offer: bytes | None = None  # the caller's SDP offer rewritten for the B-leg
    transfer: Transfer | None = None  # a REFER carried out by the node (transfer.py)
    # re-INVITEs relayed and not answered yet: client transaction -> the leg it went to
    reinvites: dict[str, Leg] = field(default_factory=dict)
    timers: list[CallTimer] = field(default_factory=list)  # its deadlines not yet due
    # for the call's record (cdr/record.py), each set once, when it happens
    ringing_at: float | None = None  # the first 18x sent to the caller
    hangup_by: str = ""  # caller, callee or node (events.hangup_by)
    sip_reason: str | None = None  # the Reason header of the BYE, CANCEL or failure that ended it
    tried: list[Attempt] | None = None  # the B-legs before ``b`` (failover, transfer)
    media_counts: tuple[int, int, int, int] | None = None  # relayed: packets, bytes each way

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def a_invite(self) -> Request:
        return self.a.invite

    @property
    def b_peer(self) -> str | None:
        return self.b.peer if self.b is not None else None

    @property
    def final_status(self) -> int:
        return self.a.final_status

    def other(self, leg: Leg) -> Leg | None:
        return self.b if leg is self.a else self.a
