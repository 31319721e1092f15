"""Requests within a call relayed from one leg to the other (re-INVITE, UPDATE, INFO,
MESSAGE, PRACK) and their final responses relayed back, each leg with its own dialog.

A re-INVITE's 2xx is ACKed on the leg it was sent on at once when it carried an offer; when
the offer is in the 2xx (late offer), that ACK waits for the ACK of the leg the re-INVITE came
from and carries its SDP answer. A PRACK carries the callee side's RSeq (``UasLeg.pracked``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..outbox import Outbox
from ..sip.ids import new_tag
from ..sip.message import Header, Message, Request, Response, make_response, reason_phrase
from .anchoring import is_sdp, kind_of_reply
from .call import Call
from .events import Acked, Info, Pracked, Updated
from .headers_policy import ALLOW, REQUEST_HEADERS, RESPONSE_HEADERS, copy_allowed, with_extra
from .leg import Leg
from .uac import policy_offer

__all__ = ["Relay", "relay_ack", "relay_request", "relay_response", "relay_timed_out"]

Body = Callable[[Leg, Message, str], bytes]
"""The body of a message from a leg, for the other leg (``kind``: offer or answer)."""


@dataclass(slots=True)
class Relay:
    """A request relayed from one leg to the other: answer ``server_key`` on ``from_leg``
    when the request sent on the other leg gets its final response."""

    call: Call
    from_leg: Leg
    server_key: str | None
    original: Request
    sent: Request


def relay_request(call: Call, event: Updated | Info | Pracked, body: Body, now: float,
                  out: Outbox, extra: Sequence[Header] = ()) -> Relay | None:  # fmt: skip
    """The request for the other leg (None: a PRACK of nothing known, answered 481; a
    re-offer with no codec of the other peer's ``codecs`` left, answered 488), with
    ``extra`` headers of that leg's own (its session timer); the caller sends ``Relay.sent``
    in a client transaction of its own."""
    leg, request, key = event.leg, event.request, event.key
    other = call.other(leg)
    assert other is not None
    allowed = _allowed(call, leg, REQUEST_HEADERS)
    if isinstance(event, Pracked):
        b = call.b
        b_rseq = call.a.pracked(request)
        if b_rseq is None or b is None or b.invite is None or b.invite.cseq is None:
            out.respond(key, make_response(request, 481, to_tag=new_tag()), now)
            return None
        headers: list[Header] = [("RAck", f"{b_rseq} {b.invite.cseq.seq} INVITE")]
        headers.extend(copy_allowed(request, allowed))
        sent = other.request("PRACK", headers=headers, body=body(leg, request, "answer"))
    else:
        content = body(leg, request, "offer")
        peer = call.peers.get(other.peer)
        if content and peer is not None and peer.codecs and isinstance(event, Updated):
            policed = policy_offer(content, peer.codecs, is_sdp(request),
                                   f"{call.a.call_id}: re-offer to {other.peer}")  # fmt: skip
            if policed is None:  # no codec of the peer's left: refused here (RFC 3261 §14.2)
                leg.reinvite_pending = False
                out.respond(key, make_response(request, 488, to_tag=new_tag()), now)
                return None
            content = policed
        headers = copy_allowed(request, allowed)
        headers.extend(extra)
        if request.method == "INVITE":
            headers.append(("Allow", ALLOW))
        sent = other.request(request.method, headers=headers, body=content)
    return Relay(call, leg, key, request, sent)


def relay_ack(call: Call, event: Acked, body: Body, now: float, out: Outbox) -> None:
    """The other leg's ACK that waited for this one (late offer), with its SDP answer."""
    other = call.other(event.leg)
    if call.late_ack is None or call.late_ack is not other or other is None:
        return
    call.late_ack = None
    ack = other.ack(call.late_ack_cseq, body=body(event.leg, event.request, "answer"),
                    headers=copy_allowed(event.request, REQUEST_HEADERS))  # fmt: skip
    out.ack(ack, other.next_address(), now)


def relay_response(relay: Relay, response: Response, body: Body, now: float, out: Outbox,
                   extra: Sequence[Header] = ()) -> str | None:  # fmt: skip
    """Relay a final response back (a 2xx with ``extra`` headers of the leg it goes to);
    the reason to hang the call up, if any (408, 481)."""
    status = response.status
    call = relay.call
    method = relay.sent.method
    to_leg = call.other(relay.from_leg)
    if method in ("INVITE", "UPDATE") and 200 <= status < 300 and to_leg is not None:
        to_leg.refresh_target(response)  # §12.2.1.2: the remote target, not the route set
    if method == "INVITE":
        relay.from_leg.reinvite_pending = False
        if 200 <= status < 300 and to_leg is not None:
            cseq = response.cseq.seq if response.cseq else to_leg.local_cseq
            if relay.sent.body:
                out.ack(to_leg.ack(cseq), to_leg.next_address(), now)
            else:
                call.late_ack = to_leg
                call.late_ack_cseq = cseq
    headers = copy_allowed(response, _allowed(call, to_leg, RESPONSE_HEADERS))
    if method in ("INVITE", "UPDATE") and 200 <= status < 300:
        headers = [("Contact", relay.from_leg.local.contact), *headers, *extra]
    content = body(to_leg, response, kind_of_reply(relay.sent)) if to_leg is not None else b""
    if content and method in ("INVITE", "UPDATE"):
        relay.from_leg.sdp = content
    out.respond(relay.server_key, make_response(
        relay.original, status, reason_phrase(status), to_tag=new_tag(), headers=headers,
        body=content), now)  # fmt: skip
    if status in (408, 481) and not call.ended:
        return f"{status} on in-dialog {method}"
    return None


def relay_timed_out(relay: Relay, now: float, out: Outbox) -> None:
    """No final response on the other leg: 408 to the leg the request came from."""
    if relay.sent.method == "INVITE":
        relay.from_leg.reinvite_pending = False
    out.respond(relay.server_key, make_response(relay.original, 408, to_tag=new_tag()), now)


def _allowed(call: Call, leg: Leg | None, base: frozenset[str]) -> frozenset[str]:
    """What crosses from ``leg``: the built-in list and its peer's ``headers.pass``."""
    peer = call.peers.get(leg.peer) if leg is not None else None
    return with_extra(base, peer.headers.pass_) if peer is not None else base
