"""The calls of one node: the owner of every INVITE that starts a call and of everything
within a call's two dialogs.

The legs translate SIP into call events (``uas.py``, ``uac.py``, ``in_dialog`` below); the
call's table (``table.py``) says what each event does in each state; the actions are the
``_do_*`` methods here. Decisions and their RFC grounds:

- The B-leg's 2xx is ACKed as soon as it arrives when the INVITE carried the offer; when the
  offer is in the 2xx (late offer), the B-leg ACK waits for the A-leg ACK and carries its SDP.
- BYE is answered on its own leg and sent anew on the other; re-INVITE, UPDATE, INFO and
  MESSAGE are relayed (``relay.py``), a second re-INVITE pending on a leg gets 491 (§14.1).
- Reliable provisionals (RFC 3262) are relayed end to end when the caller supports 100rel,
  with the A-leg's own RSeq space; otherwise the node PRACKs the B-leg itself.
- A failure in ``failover_on`` (or no answer within ``setup_timeout``) moves to the next
  candidate (``routing/failover.py``); other failures are the callee's answer.
- Limits: a call counts once against its source peer (over: 503 before the call exists) and
  once against each target peer (a full one is skipped); ``_do_release`` releases them once.
- A call refused before it exists (483, 403, 407, no route, not registered, over a limit) is
  refused from one place, ``_refuse``, which also reports it for its record.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..config import Peer
from ..health import HealthMonitor
from ..outbox import Outbox
from ..registration.bindings import Bindings
from ..routing import Decision, Limits, Refusal, Router, Target
from ..routing.failover import exhausted_status, fails_over
from ..routing.steering import Drains
from ..security.auth import DEFAULT, DigestAuth
from ..sip.errors import ParseError
from ..sip.ids import new_tag
from ..sip.message import Header, Message, Request, Response, make_response, reason_phrase
from ..sip.transaction import Addr
from ..transport.listeners import LocalAddress
from .anchoring import Anchoring, is_sdp, kind_of_reply
from .call import Call, CallTimer
from .events import (
    Acked,
    Answered,
    CallEvent,
    Cancelled,
    Disconnected,
    Failed,
    FailedOver,
    HungUp,
    Info,
    NoAnswer,
    Offered,
    Pracked,
    Refused,
    Ringing,
    Updated,
    end_reason,
    hangup_by,
)
from .headers_policy import ALLOW, RESPONSE_HEADERS, capabilities, copy_allowed, with_extra
from .leg import Leg
from .relay import Body, Relay, relay_ack, relay_request, relay_response, relay_timed_out
from .session_timer import Refuse, answer_of, negotiate
from .table import TABLE, Action, CallState
from .transfer import Transfer, notify, refer_target, reoffer
from .uac import UacLeg, build_attempt, policy_offer, reliable_rseq
from .uas import UasLeg

__all__ = ["CallEnded", "CallRefused", "Calls"]

log = logging.getLogger("pkiss.b2bua")

_RELAYED = frozenset({"INVITE", "UPDATE", "INFO", "MESSAGE"})

CallEnded = Callable[[Call], None]
"""Told of every call when it ends (its record)."""
CallRefused = Callable[[Request, str, str, int, str, float], None]
"""Told of a call refused before it existed: (request, source peer, called number, status,
reason, now)."""


_ACTIONS = {action: f"_do_{action.name.lower()}" for action in Action}
"""Each action of the table is done by the method of that name."""


class _BodyOf:
    """``Calls._body`` for one call at one time, as the relays take it (an object, not a
    closure: compiled, a closure would be a reference cycle holding the call)."""

    __slots__ = ("call", "calls", "now")

    def __init__(self, calls: Calls, call: Call, now: float) -> None:
        self.calls = calls
        self.call = call
        self.now = now

    def __call__(self, leg: Leg, message: Message, kind: str) -> bytes:
        return self.calls._body(self.call, leg, message, self.now, kind)


class _Forget(NamedTuple):
    """The end of an answered INVITE's transaction (64*T1): its client entry goes."""

    key: str


class _Client(NamedTuple):
    """What a client transaction of the calls is for."""

    purpose: str  # "invite", "relay", "bye", "cancel", "prack", "refresh"
    call: Call
    relay: Relay | None = None
    attempt: UacLeg | None = None  # the B-leg an INVITE was sent on
    leg: Leg | None = None  # the leg a session refresh was sent on


class Calls:
    """Owner of the calls' transactions and deadlines."""

    def __init__(
        self,
        router: Router,
        peers: Mapping[str, Peer],
        local: Callable[[Addr], LocalAddress],
        auth: DigestAuth,
        *,
        limits: Limits | None = None,
        monitor: HealthMonitor | None = None,
        drains: Drains | None = None,
        bindings: Bindings | None = None,
        anchoring: Anchoring | None = None,
        on_end: CallEnded | None = None,
        on_refused: CallRefused | None = None,
        max_calls: int = 10000,
    ) -> None:
        self.router = router
        self.peers = peers
        self.local = local
        self.auth = auth
        # per-peer call counters, keyed by peer name: they outlive any reload
        self.limits = limits if limits is not None else Limits()
        self.monitor = monitor
        self.drains = drains if drains is not None else Drains(peers)
        self.bindings = bindings if bindings is not None else Bindings()
        self.anchoring = anchoring if anchoring is not None else Anchoring(None)
        self.on_end = on_end
        self.on_refused = on_refused
        self.max_calls = max_calls  # the node's limits.calls
        self.calls: set[Call] = set()
        self.dialogs: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self.invites: dict[str, Call] = {}  # A-leg INVITE server transaction -> call
        self.clients: dict[str, _Client] = {}
        self.media_calls: dict[str, Call] = {}  # media key -> call, for idle media
        self.stats = {"calls": 0, "answered": 0, "failed": 0, "limited": 0}
        self._turn = itertools.count()
        self.on_leg: Callable[[str, str], None] | None = None
        """Told of each callee-side leg a call opens (its Call-ID, the caller's): the trace."""

    def reconfigure(self, router: Router, peers: Mapping[str, Peer],
                    max_calls: int | None = None) -> None:  # fmt: skip
        """New calls use the new config; calls in progress keep what they started with."""
        self.router = router
        self.peers = peers
        self.drains.rebuild(peers)  # drains stay: they name the new config's hosts
        if max_calls is not None:
            self.max_calls = max_calls

    # ------------------------------------------------------------------------- the table
    def _feed(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        row = TABLE.get((call.state, type(event)))
        if row is None:
            return  # nothing to do in this state
        actions, state = row
        call.state = state
        for action in actions:
            getattr(self, _ACTIONS[action])(call, event, now, out)
            if call.state is not state:
                break  # a follow-up event moved the call on

    # -------------------------------------------------------------------- new calls
    def on_invite(self, request: Request, source: Addr, key: str | None, peer: Peer | None,
                  now: float, out: Outbox) -> None:  # fmt: skip
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._refuse(request, key, 483, now, out)  # §16.3 item 2, as a B2BUA
            return
        if peer is None:
            self._refuse(request, key, 403, now, out)
            return
        if peer.match.username:
            challenge = self.auth.check(
                request, source, peer.match.username, peer.password or "", now, peer=peer.name,
                algorithms=peer.auth.algorithms if peer.auth is not None else DEFAULT,
            )  # fmt: skip
            if challenge is not None:
                out.respond(key, challenge, now)
                return
        timer = negotiate(request, peer.session_timer)
        if isinstance(timer, Refuse):  # an interval too short for us (RFC 4028 §9)
            self._refuse(request, key, 422, now, out, headers=[("Min-SE", str(timer.min_se))])
            return
        down, drained = self._unavailable()
        decision = self.router.route(request, peer, next(self._turn), down, drained)
        if decision.reject is not None:
            self._refuse(request, key, decision.reject, now, out, reason=decision.reason,
                         peer=peer.name, number=decision.number,
                         why=decision.reason or "rejected by routing")  # fmt: skip
            return
        targets = list(decision.targets)
        if decision.registered is not None:
            binding = self.bindings.lookup(decision.registered, now)
            if binding is None:
                self._refuse(request, key, 480, now, out, peer=peer.name, number=decision.number,
                             why=f"{decision.registered} not registered")  # fmt: skip
                return
            # latching: the address its REGISTER came from, NAT or not
            # and R-URI the Contact it registered (RFC 3261 §10.3, §16.5): a phone answers
            # its own URI; the called number is in To
            targets = [Target(decision.registered, binding.source, binding.contact)]
        if len(self.calls) >= self.max_calls:
            self.stats["limited"] += 1
            log.warning("refusing call %s from %s: the node holds %d calls (limits.calls)",
                        request.call_id, peer.name, len(self.calls))  # fmt: skip
            self._refuse(request, key, 503, now, out, headers=[("Retry-After", "5")],
                         peer=peer.name, number=decision.number,
                         why="over the node's calls limit")  # fmt: skip
            return
        refusal = self.limits.admit(peer.name, peer.call_limits, now)
        if refusal is not None:
            self.stats["limited"] += 1
            log.info("refusing call %s from %s: over its %s limit", request.call_id, peer.name,
                     refusal.limit)  # fmt: skip
            self._refuse(request, key, 503, now, out, headers=_retry_after(refusal),
                         peer=peer.name, number=decision.number,
                         why=f"over the {refusal.limit} limit of {peer.name}")  # fmt: skip
            return
        a = UasLeg.of_invite(peer.name, request, key, source, self.local(source))
        a.timer = timer
        call = Call(a, peer.name, decision.number, targets, now, self.peers, held=[peer.name])
        self.calls.add(call)
        self.stats["calls"] += 1
        self.dialogs[(a.call_id, a.local_tag)] = (call, a)
        if key is not None:
            self.invites[key] = call
        self._feed(call, Offered(), now, out)

    def _unavailable(self) -> tuple[frozenset[Addr], frozenset[str]]:
        """What routing skips for new calls: hosts marked down or drained, drained peers."""
        down: frozenset[Addr] = self.monitor.down if self.monitor is not None else frozenset()
        drains = self.drains
        if drains.addrs:
            down = down | drains.addrs
        return down, drains.peers

    def _refuse(
        self, request: Request, key: str | None, status: int, now: float, out: Outbox, *,
        reason: str | None = None, headers: list[Header] | None = None, peer: str = "",
        number: str = "", why: str = "",
    ) -> None:  # fmt: skip
        """Refuse a call before it exists; with ``why``, its record is written too."""
        response = make_response(request, status, reason, to_tag=new_tag(), headers=headers or [])
        out.respond(key, response, now)
        if why and self.on_refused is not None:
            self.on_refused(request, peer, number, status, why, now)

    # ----------------------------------------------------------------------- actions
    def _do_anchor_offer(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        refusal = self.anchoring.anchor_offer(call, self.local, now)
        if call.media:
            self.media_calls[call.a.local_tag] = call
        if refusal is not None:
            self._feed(call, refusal, now, out)

    def _do_try_next(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        """Send the INVITE to the next target with room under its peer's limits, or fail with
        the best answer known (503 with Retry-After when the last ones were full)."""
        old = call.b
        if old is not None:
            self.dialogs.pop((old.call_id, old.local_tag), None)
        codecs_refused = False
        while call.targets:
            target = call.targets.pop(0)
            offer = self._offer_for(call, target)
            if offer is None:
                codecs_refused = True
                continue
            if not self._hold_target(call, target.peer, now):
                continue
            call.attempts += 1
            self._start_attempt(call, target, offer, now, out)
            return
        if codecs_refused and not call.attempts and call.refusal is None:
            self._feed(call, Failed(488), now, out)
        elif call.refusal is not None:
            self._feed(call, Failed(503, tuple(_retry_after(call.refusal))), now, out)
        else:
            self._feed(call, Failed(exhausted_status(call.attempts)), now, out)

    def _hold_target(self, call: Call, peer_name: str, now: float) -> bool:
        """Count the call against the target peer (once per peer); False when it is full."""
        peer = call.peers.get(peer_name)
        call.refusal = self.limits.hold(call.held, peer_name, peer.call_limits if peer else None,
                                        call.b_peer, call.source_peer, now)  # fmt: skip
        if call.refusal is not None:
            log.info("call %s: %s is over its %s limit, skipped", call.a.call_id, peer_name,
                     call.refusal.limit)  # fmt: skip
        return call.refusal is None

    def _offer_for(self, call: Call, target: Target) -> bytes | None:
        """The caller's offer as ``target``'s peer gets it (None: no codec of it left)."""
        peer = call.peers.get(target.peer)
        offer = call.b_offer if call.b_offer is not None else call.a.invite.body
        codecs = peer.codecs if peer is not None else None
        return policy_offer(
            offer, codecs, is_sdp(call.a.invite), f"{call.a.call_id} to {target.peer}"
        )

    def _start_attempt(self, call: Call, target: Target, offer: bytes, now: float,
                       out: Outbox) -> None:  # fmt: skip
        b = build_attempt(call.a, call.number, call.source_peer, target, call.peers,
                          self.local(target.addr), offer)  # fmt: skip
        if call.b is not None:
            _tried(call, call.b)
        call.b = b
        b.sent_at = now
        self.dialogs[(b.call_id, b.local_tag)] = (call, b)
        if self.on_leg is not None:
            self.on_leg(call.a.call_id, b.call_id)
        peer = call.peers.get(target.peer)
        self._send_invite(call, b, peer.setup_timeout if peer is not None else 3.0, now, out)
        # an attempt rings at most answer_timeout (a peer's calls that are never answered
        # must not hold ports and limits for ever)
        self._at(now + (peer.answer_timeout if peer is not None else 120.0), "answer", call,
                 out, b)  # fmt: skip

    def _send_invite(self, call: Call, b: UacLeg, timeout: float, now: float,
                     out: Outbox) -> None:  # fmt: skip
        assert b.invite is not None
        b.status, b.final_at = 0, None  # (sent again after a challenge: that answer is not final)
        call.state = CallState.ROUTING
        call.setup_deadline = now + timeout
        self._at(call.setup_deadline, "setup", call, out)
        b.key = out.request(b.invite, b.dest, self, now)
        self.clients[b.key] = _Client("invite", call, attempt=b)

    def _do_abandon_attempt(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        call.setup_deadline = None
        b = call.b
        if b is not None and b.key is not None:
            out.make_cancel(b.key)  # sent by the layer if a provisional comes later
        log.info("call %s: no answer from %s, trying next", call.a.call_id, call.b_peer)

    def _do_relay_provisional(self, call: Call, event: CallEvent, now: float,
                              out: Outbox) -> None:  # fmt: skip
        assert isinstance(event, Ringing)
        a, b, response = call.a, call.b, event.response
        if a.final_sent or b is None:
            return
        b_rseq = reliable_rseq(response)
        if b_rseq is not None and not a.reliable:
            prack = b.prack_of(b_rseq)  # the caller cannot PRACK: the node does
            key = out.request(prack, b.next_address(), self, now)
            self.clients[key] = _Client("prack", call)
        headers = self._answer_headers(call, response)
        body = self._body(call, b, response, now, kind_of_reply(a.invite))
        if call.ringing_at is None:
            call.ringing_at = now
        if a.provisional(response.status, headers, body, b_rseq, now, out):
            self._at(now + out.t1, "1xx", call, out)

    def _do_answer(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        assert isinstance(event, Answered) and call.b is not None
        b, response = call.b, event.response
        call.answered_at = now
        call.sip_reason = None  # an earlier attempt's failure is not how the call ends
        self.stats["answered"] += 1
        if b.invite is not None and b.invite.body:
            out.ack(b.ack_of(response), b.next_address(), now)
        else:
            call.late_ack = b
            call.late_ack_cseq = response.cseq.seq if response.cseq else b.local_cseq
        b.invite = None  # answered: nothing reads it again (a held call's memory is its state)
        call.a.confirmed = True
        peer = call.peers.get(b.peer)
        b.timer = answer_of(response, peer.session_timer if peer is not None else None)
        headers = self._answer_headers(call, response)
        if call.a.timer is not None:
            headers += call.a.timer.headers(uac_is_node=False)
        call.a.final(
            response.status, now, out, reason=reason_phrase(response.status), headers=headers,
            body=self._body(call, b, response, now, kind_of_reply(call.a.invite)),
        )  # fmt: skip
        self._start_timer(call, call.a, now, out)
        self._start_timer(call, b, now, out)

    def _do_fail_caller(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        assert isinstance(event, Failed)
        call.a.final(event.status, now, out, headers=list(event.headers))
        self.stats["failed"] += 1

    def _do_refuse_caller(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        assert isinstance(event, Refused)
        call.a.final(event.status, now, out)

    def _do_answer_487(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        call.a.final(487, now, out)

    def _do_cancel_attempt(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        b = call.b
        if b is None or b.key is None:
            return
        cancel = out.make_cancel(b.key)
        if cancel is not None:
            self.clients[out.request(cancel, b.dest, self, now)] = _Client("cancel", call)

    def _do_hang_up_others(self, call: Call, event: CallEvent, now: float,
                           out: Outbox) -> None:  # fmt: skip
        """BYE (or CANCEL / final) on every leg but the one that hung up."""
        from_leg = event.leg if isinstance(event, Disconnected) else None
        a, b = call.a, call.b
        transfer, call.transfer = call.transfer, None
        if transfer is not None and transfer.attempt is not None and transfer.attempt.key:
            cancel = out.make_cancel(transfer.attempt.key)  # the transfer's target too
            if cancel is not None:
                self.clients[out.request(cancel, transfer.attempt.dest, self, now)] = _Client(
                    "cancel", call
                )
        if not a.final_sent:
            # a BYE from the caller in its early dialog still gets its INVITE answered: 487
            # (RFC 3261 §15.1.2); the callee side hanging up early is a 480 for the caller
            a.final(480 if from_leg is b and b is not None else 487, now, out)
        elif a is not from_leg:
            self._bye(call, a, now, out)
        if b is not None and not b.confirmed:
            # its INVITE still waits for a final response, even when that side sent a BYE
            # in its early dialog (§15 forbids it; the transaction must end all the same)
            self._do_cancel_attempt(call, event, now, out)
        elif b is not None and b is not from_leg:
            self._bye(call, b, now, out)

    def _bye(self, call: Call, leg: Leg, now: float, out: Outbox) -> None:
        self.clients[out.request(leg.request("BYE"), leg.next_address(), self, now)] = _Client(
            "bye", call
        )

    def _do_relay_request(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        assert isinstance(event, (Updated, Info, Pracked))
        other = call.other(event.leg)
        assert other is not None
        # a re-INVITE or UPDATE sent on a leg refreshes its session (RFC 4028 §7.4)
        refresh = other.timer is not None and isinstance(event, Updated)
        extra = other.timer.headers(uac_is_node=True) if refresh and other.timer else []
        relay = relay_request(call, event, self._body_of(call, now), now, out, extra)
        if relay is not None:
            key = out.request(relay.sent, other.next_address(), self, now)
            self.clients[key] = _Client("relay", call, relay)
            if relay.sent.method == "INVITE":
                call.reinvites[key] = other

    def _do_relay_ack(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        assert isinstance(event, Acked)
        relay_ack(call, event, self._body_of(call, now), now, out)

    def _do_release(self, call: Call, event: CallEvent, now: float, out: Outbox) -> None:
        """The one place every call ends: dialogs, limits, media, its record."""
        call.ended_at = now
        call.end_reason = end_reason(event)
        call.hangup_by = hangup_by(event)
        for key, to_leg in call.reinvites.items():  # a re-INVITE still ringing ends too
            cancel = out.make_cancel(key)
            if cancel is not None:
                self.clients[out.request(cancel, to_leg.next_address(), self, now)] = _Client(
                    "cancel", call
                )
        call.reinvites.clear()
        for leg in (call.a, call.b):
            if leg is not None:
                self.dialogs.pop((leg.call_id, leg.local_tag), None)
        self.calls.discard(call)
        held, call.held = call.held, []
        for name in held:
            self.limits.release(name)
        if call.a.key is not None and call.a.final_sent:
            self.invites.pop(call.a.key, None)
        if call.media:
            self.media_calls.pop(call.a.local_tag, None)
            call.media_counts = self.anchoring.counts(call.a.local_tag)
            self.anchoring.release(call.a.local_tag)
        for timer in call.timers:  # its deadlines stay in the heap until due: not the call
            timer.call = timer.leg = None
        call.timers.clear()
        if self.on_end is not None:
            self.on_end(call)

    # ------------------------------------------------------------------ helpers
    def _at(self, due: float, kind: str, call: Call, out: Outbox, leg: Leg | None = None) -> None:
        """A deadline of ``call`` (see ``CallTimer``)."""
        timer = CallTimer(kind, call, leg)
        call.timers.append(timer)  # a few a call, one more per session refresh
        out.at(due, self, timer)

    def _body(self, call: Call, leg: Leg, message: Message, now: float, kind: str) -> bytes:
        """The body of ``message`` from ``leg`` for the other leg: anchored when relayed (not
        once the call ended: a late answer must not set up media again)."""
        if not call.media or call.ended:
            return message.body
        return self.anchoring.body(call.a.local_tag, leg, call.other(leg), message, now, kind)

    def _body_of(self, call: Call, now: float) -> Body:
        return _BodyOf(self, call, now)

    @staticmethod
    def _answer_headers(call: Call, response: Response) -> list[Header]:
        """The headers of the callee side's 18x/2xx that the caller gets."""
        headers: list[Header] = [("Contact", call.a.local.contact), ("Allow", ALLOW)]
        peer = call.peers.get(call.b.peer) if call.b is not None else None
        extra = peer.headers.pass_ if peer is not None else ()
        headers.extend(copy_allowed(response, with_extra(RESPONSE_HEADERS, extra)))
        return headers

    # --------------------------------------------------------- requests within calls
    def on_ack(self, ack: Request, now: float, out: Outbox) -> None:
        to = ack.to
        if to is None or not to.tag:
            return
        found = self.dialogs.get((ack.call_id or "", to.tag))
        if found is not None:
            self._feed(found[0], Acked(found[1], ack), now, out)

    def on_cancel(self, request: Request, key: str | None, now: float, out: Outbox) -> None:
        invite_key = out.find_invite(request)
        call = self.invites.get(invite_key) if invite_key is not None else None
        out.respond(key, make_response(request, 481 if call is None else 200, to_tag=new_tag()),
                    now)  # fmt: skip
        if call is not None:
            reason = request.header("reason")
            if reason is not None and not call.a.final_sent:  # (too late: it changes nothing)
                call.sip_reason = reason
            self._feed(call, Cancelled(), now, out)

    def on_ack_timeout(self, key: str, now: float, out: Outbox) -> None:
        call = self.invites.pop(key, None)
        if call is not None:
            self._feed(call, HungUp("no ACK"), now, out)

    def in_dialog(self, request: Request, key: str | None, now: float, out: Outbox) -> None:
        """A request with a To tag: the A-leg's or B-leg's SIP as a call event."""
        to = request.to
        assert to is not None
        found = self.dialogs.get((request.call_id or "", to.tag or ""))
        if found is None:
            self._answer(key, request, 481, now, out)
            return
        call, leg = found
        cseq = request.cseq
        if cseq is not None and not leg.accept_remote_cseq(cseq.seq):
            self._answer(key, request, 500, now, out, reason="Out of Order")
            return
        other = call.other(leg)
        method = request.method
        if method == "BYE":
            self._answer(key, request, 200, now, out)
            transfer = call.transfer
            if transfer is not None and leg is transfer.transferor:
                transfer.gone = True  # a blind transfer: the outcome decides (transfer.py)
                self.dialogs.pop((leg.call_id, leg.local_tag), None)
                return
            reason = request.header("reason")
            if reason is not None and not call.ended:
                call.sip_reason = reason
            self._feed(call, Disconnected(leg), now, out)
            return
        if method == "OPTIONS":
            self._answer(key, request, 200, now, out, capabilities())
            return
        if other is None or call.ended:
            self._answer(key, request, 481, now, out)
            return
        if method == "PRACK":
            self._feed(call, Pracked(leg, request, key), now, out)
            return
        if method == "REFER":
            self._refer(call, leg, request, key, now, out)
            return
        if method not in _RELAYED:
            self._answer(key, request, 501, now, out, [("Allow", ALLOW)])
            return
        if method == "INVITE" and (
            leg.reinvite_pending or not other.confirmed
            or (leg.timer is not None and leg.timer.refreshing and not leg.timer.update)
        ):  # fmt: skip
            self._answer(key, request, 491, now, out, reason="Request Pending")
            return
        if method in ("INVITE", "UPDATE") and not self._refreshed(call, leg, request, key,
                                                                  now, out):  # fmt: skip
            return
        if method == "INVITE":
            leg.reinvite_pending = True
        if method in ("INVITE", "UPDATE"):
            leg.learn_from_request(request)
        event = Updated if method in ("INVITE", "UPDATE") else Info
        self._feed(call, event(leg, request, key), now, out)

    def _refreshed(self, call: Call, leg: Leg, request: Request, key: str | None, now: float,
                   out: Outbox) -> bool:  # fmt: skip
        """A re-INVITE or UPDATE from ``leg`` as a session refresh: False when it is answered
        here (422 for too short an interval; 200 to an UPDATE without a body, which carries
        nothing for the other side), True when it goes on to the other leg."""
        peer = call.peers.get(leg.peer)
        timer = negotiate(request, peer.session_timer if peer is not None else None, leg.timer)
        if isinstance(timer, Refuse):
            self._answer(key, request, 422, now, out, [("Min-SE", str(timer.min_se))])
            return False
        leg.timer = timer
        if request.method == "UPDATE" and not request.body:
            leg.learn_from_request(request)
            headers = [("Contact", leg.local.contact)]
            if timer is not None:
                headers += timer.headers(uac_is_node=False)
            self._answer(key, request, 200, now, out, headers)
            self._start_timer(call, leg, now, out)
            return False
        return True

    @staticmethod
    def _answer(
        key: str | None, request: Request, status: int, now: float, out: Outbox,
        headers: list[Header] | None = None, reason: str | None = None,
    ) -> None:  # fmt: skip
        out.respond(key, make_response(request, status, reason, to_tag=new_tag(),
                                       headers=headers or []), now)  # fmt: skip

    # --------------------------------------------------------------------- responses
    def on_response(self, key: str, response: Response, now: float, out: Outbox) -> None:
        client = self.clients.get(key)
        if client is None:
            return
        status = response.status
        if status >= 200:
            if client.purpose in ("invite", "transfer") and status < 300:
                # another fork's 2xx may follow on the same transaction (RFC 6026 Accepted)
                out.at(now + 64 * out.t1, self, _Forget(key))
            else:
                del self.clients[key]
        if client.purpose == "invite" and client.attempt is not None:
            self._invite_response(client.call, client.attempt, key, response, now, out)
        elif client.purpose == "transfer" and client.attempt is not None:
            self._transfer_response(client.call, client.attempt, response, now, out)
        elif client.purpose == "reoffer" and client.leg is not None and 200 <= status < 300:
            leg, call = client.leg, client.call
            out.ack(leg.ack(response.cseq.seq if response.cseq else leg.local_cseq),
                    leg.next_address(), now)  # fmt: skip
            if not call.ended:
                self._body(call, leg, response, now, "answer")  # the relay's view of it
        elif client.purpose == "relay" and client.relay is not None and response.status >= 200:
            client.call.reinvites.pop(key, None)
            self._relayed_response(client.call, client.relay, response, now, out)
        elif client.purpose == "refresh" and client.leg is not None and status >= 200:
            self._refresh_response(client.call, client.leg, response, now, out)

    def _relayed_response(self, call: Call, relay: Relay, response: Response, now: float,
                          out: Outbox) -> None:  # fmt: skip
        from_leg, to_leg = relay.from_leg, call.other(relay.from_leg)
        refresh = relay.sent.method in ("INVITE", "UPDATE") and 200 <= response.status < 300
        extra = from_leg.timer.headers(uac_is_node=False) if refresh and from_leg.timer else []
        hang_up = relay_response(relay, response, self._body_of(call, now), now, out, extra)
        if (
            response.status >= 300
            and call.media
            and relay.original.body
            and (relay.sent.method in ("INVITE", "UPDATE"))
        ):  # the offer refused: the session stays as it was (RFC 3264 §5)
            self.anchoring.rollback(call.a.local_tag, from_leg)
        if hang_up is not None:
            self._feed(call, HungUp(hang_up), now, out)
        elif refresh and to_leg is not None:  # both legs' sessions were refreshed
            peer = call.peers.get(to_leg.peer)
            settings = peer.session_timer if peer is not None else None
            to_leg.timer = answer_of(response, settings, to_leg.timer)
            self._start_timer(call, from_leg, now, out)
            self._start_timer(call, to_leg, now, out)

    def _invite_response(self, call: Call, b: UacLeg, key: str, response: Response,
                         now: float, out: Outbox) -> None:  # fmt: skip
        if b is not call.b or key != b.key or call.ended:
            if 200 <= response.status < 300:
                # an answer from an attempt given up, or after the caller left: ACK + BYE
                b.learn_from_response(response)
                out.ack(b.ack_of(response), b.next_address(), now)
                self._bye(call, b, now, out)
            return
        status = response.status
        if b.confirmed and 200 <= status < 300:
            to = response.to
            if to is not None and to.tag != b.remote_tag:
                # another fork answered too: the first 2xx won, this dialog is ACKed and
                # ended at once (§13.2.2.4); a retransmission of the answer is the layer's
                fork = b.fork(response)
                log.info("call %s: a second answer from %s (another fork): ACK and BYE",
                         call.a.call_id, b.peer)  # fmt: skip
                out.ack(fork.ack_of(response), fork.next_address(), now)
                self._bye(call, fork, now, out)
            return
        if status >= 200:
            b.status, b.final_at = status, now
            if status >= 300:
                reason = response.header("reason")
                if reason is not None:
                    call.sip_reason = reason
        if status in (401, 407) and self._answer_challenge(call, b, response, now, out):
            return
        if status == 422 and self._answer_422(call, b, response, now, out):
            return
        peer = call.peers.get(b.peer)
        failover_on = peer.failover_on if peer is not None else ()
        event = b.translate(response, failover_on, bool(call.targets))
        if isinstance(event, FailedOver):
            log.info("call %s: %d from %s, trying next", call.a.call_id, status, b.peer)
        if event is not None:
            self._feed(call, event, now, out)

    def _answer_challenge(self, call: Call, b: UacLeg, response: Response, now: float,
                          out: Outbox) -> bool:  # fmt: skip
        peer = call.peers.get(b.peer)
        if b.answer_challenge(response, peer) is None:
            return False
        self._send_invite(call, b, peer.setup_timeout if peer is not None else 3.0, now, out)
        return True

    def _answer_422(self, call: Call, b: UacLeg, response: Response, now: float,
                    out: Outbox) -> bool:  # fmt: skip
        peer = call.peers.get(b.peer)
        if b.answer_422(response, peer) is None:
            return False
        log.info("call %s: %s asks for a longer session interval: %s", call.a.call_id, b.peer,
                 response.header("min-se"))  # fmt: skip
        self._send_invite(call, b, peer.setup_timeout if peer is not None else 3.0, now, out)
        return True

    def on_timeout(self, key: str, now: float, out: Outbox) -> None:
        client = self.clients.pop(key, None)
        if client is None:
            return
        call = client.call
        if client.purpose == "invite":
            if call.b is not None and key == call.b.key:
                self._feed(call, NoAnswer(), now, out)
        elif client.purpose == "relay" and client.relay is not None:
            call.reinvites.pop(key, None)
            relay_timed_out(client.relay, now, out)
            if not call.ended:
                self._feed(call, HungUp("in-dialog request timed out"), now, out)
        elif client.purpose == "refresh" and not call.ended:
            self._feed(call, HungUp("session refresh timed out"), now, out)
        elif (
            client.purpose == "transfer"
            and call.transfer is not None
            and (call.transfer.attempt is client.attempt)
        ):
            self._transfer_failed(call, 408, now, out)

    # --------------------------------------------------------------------- deadlines
    def on_deadline(self, ref: object, at: float, now: float, out: Outbox) -> None:
        if isinstance(ref, _Forget):
            self.clients.pop(ref.key, None)
            return
        if not isinstance(ref, CallTimer) or self.stale(ref, at):
            return
        call = ref.call
        assert call is not None  # (not stale)
        if ref.kind == "setup":
            call.setup_deadline = None
            self._feed(call, NoAnswer(), now, out)
            return
        if ref.kind == "session" and ref.leg is not None:
            self._session_due(call, ref.leg, now, out)
            return
        if ref.kind == "answer":
            log.info("call %s: no answer from %s in time, giving up", call.a.call_id,
                     call.b_peer)  # fmt: skip
            self._do_cancel_attempt(call, NoAnswer(), now, out)
            self._feed(call, Failed(480), now, out)
            return
        due = call.a.retransmit(now, out)
        if due is not None:
            self._at(due, "1xx", call, out)

    def stale(self, ref: object, at: float) -> bool:
        if isinstance(ref, _Forget):
            return ref.key not in self.clients
        if not isinstance(ref, CallTimer):
            return True
        call = ref.call
        if call is None or call.ended:
            return True
        if ref.kind == "1xx":
            return call.a.final_sent or not call.a.unacked
        if ref.kind == "session":
            timer = ref.leg.timer if ref.leg is not None else None
            return timer is None or timer.due != at or timer.refreshing
        if ref.kind == "answer":  # still that attempt, still unanswered
            return ref.leg is not call.b or call.state is CallState.ANSWERED
        return call.setup_deadline != at or call.state is not CallState.ROUTING

    # ------------------------------------------------------------- session timers
    def _start_timer(self, call: Call, leg: Leg, now: float, out: Outbox) -> None:
        """(Re)start ``leg``'s session interval: a refresh just succeeded on it."""
        if leg.timer is not None and not call.ended:
            self._at(leg.timer.start(now), "session", call, out, leg)

    def _session_due(self, call: Call, leg: Leg, now: float, out: Outbox) -> None:
        """Refresh ``leg`` when the node is its refresher; else its session expired."""
        timer = leg.timer
        assert timer is not None
        if not timer.ours:
            log.info("call %s: the %s-leg's session expired unrefreshed (%d s), hanging up",
                     call.a.call_id, leg.side, timer.interval)  # fmt: skip
            self._feed(call, HungUp("session expired"), now, out)
            return
        if leg.reinvite_pending and not timer.update:
            # the peer's re-INVITE is under way (ours would cross it, §14.1): it refreshes
            # the leg when answered, else the node tries again (a 491 from the peer too)
            timer.due = now + 2.0
            self._at(timer.due, "session", call, out, leg)
            return
        self._refresh(call, leg, now, out)

    def _refresh(self, call: Call, leg: Leg, now: float, out: Outbox) -> None:
        """The node's session refresh on ``leg`` (RFC 4028 §7.4): a bodiless UPDATE when the
        peer allows UPDATE, else a re-INVITE with the description last sent on that leg."""
        timer = leg.timer
        assert timer is not None
        timer.refreshing = True
        headers = timer.headers(uac_is_node=True)
        if timer.update or not leg.sdp:
            request = leg.request("UPDATE", headers=headers)
        else:
            headers += [("Allow", ALLOW), ("Content-Type", "application/sdp")]
            request = leg.request("INVITE", headers=headers, body=leg.sdp)
        key = out.request(request, leg.next_address(), self, now)
        self.clients[key] = _Client("refresh", call, leg=leg)

    def _refresh_response(self, call: Call, leg: Leg, response: Response, now: float,
                          out: Outbox) -> None:  # fmt: skip
        timer = leg.timer
        status, method = response.status, response.cseq.method if response.cseq else ""
        if timer is None or call.ended:
            return
        if method == "INVITE" and status < 300:
            out.ack(leg.ack(response.cseq.seq if response.cseq else leg.local_cseq),
                    leg.next_address(), now)  # fmt: skip
        if status < 300:
            peer = call.peers.get(leg.peer)
            leg.timer = answer_of(response, peer.session_timer if peer is not None else None,
                                  timer)  # fmt: skip
            self._start_timer(call, leg, now, out)
        elif status in (408, 481):  # the dialog is gone (RFC 4028 §10)
            self._feed(call, HungUp(f"{status} on session refresh"), now, out)
        elif status == 422 and (interval := _min_se_of(response)) > timer.interval:
            timer.interval = timer.min_se = interval
            self._refresh(call, leg, now, out)
        elif method == "UPDATE" and status in (405, 501) and leg.sdp:
            timer.update = False  # no UPDATE after all: a re-INVITE
            self._refresh(call, leg, now, out)
        else:  # glare (491) or a refusal: the session goes on, tried again in a while
            timer.due = now + (2.0 if status == 491 else timer.interval / 4)
            timer.refreshing = False
            self._at(timer.due, "session", call, out, leg)

    # ------------------------------------------------------------------- transfers
    def _refer(self, call: Call, leg: Leg, request: Request, key: str | None, now: float,
               out: Outbox) -> None:  # fmt: skip
        """A REFER within a call: refused (403) unless its peer says ``refer: local`` and it
        is a blind transfer by the callee side of an answered call (transfer.py)."""
        peer = call.peers.get(leg.peer)
        uri = refer_target(request)
        if (
            peer is None or peer.refer != "local" or leg is not call.b or uri is None
            or call.state is not CallState.ANSWERED or call.transfer is not None or not leg.sdp
        ):  # fmt: skip
            self._answer(key, request, 403, now, out, reason="Transfer Not Allowed")
            return
        routed = Request("INVITE", uri, [("From", leg.remote_party), ("To", f"<{uri}>")])
        down, drained = self._unavailable()
        try:
            decision = self.router.route(routed, peer, next(self._turn), down, drained)
        except ParseError:
            self._answer(key, request, 400, now, out, reason="Bad Refer-To")
            return
        self._answer(key, request, 202, now, out, [("Contact", leg.local.contact)])
        log.info("call %s: %s transfers the call to %s", call.a.call_id, leg.peer,
                 decision.number or uri)  # fmt: skip
        call.transfer = Transfer(leg, decision.number, self._targets_of(decision, now))
        if decision.reject is not None:
            call.transfer.statuses.append(decision.reject)
        self._notify(call, leg, 100, now, out, final=False)
        self._transfer_next(call, now, out)

    def _targets_of(self, decision: Decision, now: float) -> list[Target]:
        if decision.reject is not None:
            return []
        if decision.registered is not None:
            binding = self.bindings.lookup(decision.registered, now)
            if binding is None:
                return []
            return [Target(decision.registered, binding.source, binding.contact)]
        return list(decision.targets)

    def _notify(self, call: Call, leg: Leg, status: int, now: float, out: Outbox, *,
                final: bool) -> None:  # fmt: skip
        request = notify(leg, status, reason_phrase(status), final=final)
        self.clients[out.request(request, leg.next_address(), self, now)] = _Client("notify", call)

    def _transfer_next(self, call: Call, now: float, out: Outbox) -> None:
        """The INVITE to the transfer's next target, with the session description the
        node last sent the transferor (the relay's ports on that side, when relayed)."""
        transfer = call.transfer
        assert transfer is not None
        while transfer.targets:
            target = transfer.targets.pop(0)
            peer = call.peers.get(target.peer)
            offer = policy_offer(transfer.transferor.sdp, peer.codecs if peer else None, True,
                                 f"{call.a.call_id} transferred to {target.peer}")  # fmt: skip
            if offer is None:
                transfer.statuses.append(488)
                continue
            if not self._hold_target(call, target.peer, now):
                transfer.statuses.append(503)
                continue
            c = build_attempt(call.a, transfer.number, call.source_peer, target, call.peers,
                              self.local(target.addr), offer)  # fmt: skip
            c.sent_at = now
            transfer.attempt = c
            c.key = out.request(c.invite, c.dest, self, now) if c.invite else None
            if c.key is not None:
                self.clients[c.key] = _Client("transfer", call, attempt=c)
            return
        self._transfer_failed(call, transfer.statuses[-1] if transfer.statuses else 404, now, out)

    def _transfer_failed(self, call: Call, status: int, now: float, out: Outbox) -> None:
        transfer = call.transfer
        assert transfer is not None
        if status not in transfer.statuses:
            transfer.statuses.append(status)
        transfer.attempt = None
        peer = call.peers.get(call.b.peer) if call.b is not None else None
        failover_on = peer.failover_on if peer is not None else ()
        if transfer.targets and fails_over(status, failover_on, True):
            self._transfer_next(call, now, out)
            return
        call.transfer = None
        log.info("call %s: transfer failed (%d)", call.a.call_id, status)
        if transfer.gone:  # nobody left on that side
            self._feed(call, HungUp("transfer failed"), now, out)
        else:
            self._notify(call, transfer.transferor, status, now, out, final=True)

    def _transfer_response(self, call: Call, c: UacLeg, response: Response, now: float,
                           out: Outbox) -> None:  # fmt: skip
        transfer = call.transfer
        status = response.status
        if call.ended or transfer is None or transfer.attempt is not c:
            if 200 <= status < 300:
                c.learn_from_response(response)
                out.ack(c.ack_of(response), c.next_address(), now)  # a retransmitted 2xx,
                if c is not call.b:  # or one too late
                    self._bye(call, c, now, out)
            return
        if status < 200:
            if status > 100 and response.to is not None and response.to.tag:
                c.learn_from_response(response)
                rseq = reliable_rseq(response)
                if rseq is not None:  # nobody to relay it to: the node PRACKs it
                    key = out.request(c.prack_of(rseq), c.next_address(), self, now)
                    self.clients[key] = _Client("prack", call)
            return
        if status >= 300:
            peer = call.peers.get(c.peer)
            if status in (401, 407) and c.answer_challenge(response, peer) is not None:
                assert c.invite is not None
                c.key = out.request(c.invite, c.dest, self, now)
                self.clients[c.key] = _Client("transfer", call, attempt=c)
                return
            self._transfer_failed(call, status, now, out)
            return
        self._transferred(call, transfer, c, response, now, out)

    def _transferred(self, call: Call, transfer: Transfer, c: UacLeg, response: Response,
                     now: float, out: Outbox) -> None:  # fmt: skip
        """The target answered: it takes the transferor's place on the callee side."""
        c.learn_from_response(response)
        c.confirmed = True
        c.status, c.final_at = response.status, now
        out.ack(c.ack_of(response), c.next_address(), now)
        old = transfer.transferor
        call.transfer = None
        self.dialogs[(c.call_id, c.local_tag)] = (call, c)
        if call.b is not None:
            _tried(call, call.b)
        call.b = c
        if self.on_leg is not None:
            self.on_leg(call.a.call_id, c.call_id)
        # the caller is told of its new far end (relayed: the relay's ports toward it stay,
        # but the stream is another one, new SSRC and sequence, which phones must reset for)
        body = self._body(call, c, response, now, "answer")
        if body:
            a = call.a
            headers = [("Allow", ALLOW), ("Content-Type", "application/sdp")]
            request = a.request("INVITE", headers=headers, body=reoffer(a.sdp, body))
            self.clients[out.request(request, a.next_address(), self, now)] = _Client(
                "reoffer", call, leg=a
            )
        peer = call.peers.get(c.peer)
        c.timer = answer_of(response, peer.session_timer if peer is not None else None)
        self._start_timer(call, c, now, out)
        log.info("call %s: transferred from %s to %s", call.a.call_id, old.peer, c.peer)
        old.timer = None
        if not transfer.gone:
            self._notify(call, old, response.status, now, out, final=True)
            self.dialogs.pop((old.call_id, old.local_tag), None)
            self._bye(call, old, now, out)

    # ------------------------------------------------------------------ node commands
    def hangup_all(self, now: float, out: Outbox) -> None:
        """End every call in progress (shutdown): BYE or CANCEL/final on each leg."""
        for call in list(self.calls):
            self._feed(call, HungUp("shutdown"), now, out)

    def hangup(self, call_id: str, reason: str, now: float, out: Outbox) -> bool:
        """End one call in progress, named by its caller's Call-ID (as the admin API shows
        it): BYE to each answered leg, CANCEL/final to one still ringing. False: no such
        call."""
        for call in list(self.calls):
            if call.a.call_id == call_id and not call.ended:
                log.info("call %s: %s", call_id, reason)
                self._feed(call, HungUp(reason), now, out)
                return True
        return False

    def hangup_idle(self, now: float, timeout: float, out: Outbox) -> None:
        """End the answered calls whose media has been silent ``timeout`` seconds."""
        for key in self.anchoring.idle(now, timeout):
            call = self.media_calls.get(key)
            if call is None:
                self.anchoring.release(key)
                continue
            if call.answered_at is not None and now - call.answered_at >= timeout:
                log.info("call %s: no media for %g s, hanging up", call.a.call_id, timeout)
                self._feed(call, HungUp("media timeout"), now, out)


def _tried(call: Call, b: UacLeg) -> None:
    """``b`` is replaced by another B-leg: what its record needs is kept (a failover's first
    attempt, a transferred call's first callee)."""
    attempt = (b.peer, b.dest, b.status, b.sent_at, b.final_at)
    if call.tried is None:
        call.tried = [attempt]
    else:
        call.tried.append(attempt)


def _min_se_of(response: Response) -> int:
    value = (response.header("min-se") or "").strip()
    return int(value) if value.isdigit() and len(value) < 10 else 0


def _retry_after(refusal: Refusal) -> list[Header]:
    return [("Retry-After", str(refusal.retry_after))]
