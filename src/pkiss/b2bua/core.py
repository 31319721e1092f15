"""The B2BUA: every call is two dialogs the SBC owns, one per leg, and nothing crosses from
one to the other but what the header policy allows.

Sans-I/O like the SIP core: ``receive(message, source, peer, now)`` and ``handle_timer(now)``
return the ``Send`` outputs to transmit; ``next_deadline()`` says when to call back. It owns the
transaction layer, so the driver feeds one object.

Decisions and their RFC grounds:
- The A-leg's 100 Trying is sent by the INVITE server transaction at once (§17.2.1).
- The B-leg's 2xx is ACKed as soon as it arrives when the INVITE carried the offer; when the
  offer is in the 2xx (late offer), the B-leg ACK waits for the A-leg ACK and carries its SDP.
- BYE is answered 200 on its own leg and sent anew on the other (each leg ends its dialog).
- Re-INVITE, UPDATE, INFO and MESSAGE are relayed to the other leg and their final response
  relayed back; a second re-INVITE while one is pending on that leg gets 491 (§14.1).
- Reliable provisionals (RFC 3262) are relayed end to end when the caller supports 100rel,
  with the A-leg's own RSeq space; otherwise the SBC PRACKs the B-leg itself.
- A failure in ``failover_on`` (or no answer within ``setup_timeout``) moves to the next target;
  other failures are the callee's answer and go back to the caller.
- Health probes (with a ``HealthMonitor``): an out-of-dialog OPTIONS to each due host, no
  User-Agent; any final response but 408 proves the host alive, a 408 or no final response
  within the peer's ``health.timeout`` does not. Probe responses never reach call logic; the
  router gets the monitor's ``down`` set with every new call.
- Outbound registration (with ``Registrations``, RFC 3261 §10): each binding's next REGISTER
  is a "register" timer; its client transactions are kept in ``registers``, apart from the
  calls', and their final responses (or timeouts) go to the registrations only.
- Limits (``peers.*.limits``): a call counts once against its source peer, checked before any
  B-leg exists (over: 503 with Retry-After), and once against each target peer it is sent to,
  checked per candidate (a full target is skipped like a failed one; none with room: 503 with
  Retry-After). ``_end`` releases what the call holds, once, whichever way it ends.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
from collections.abc import Callable
from typing import Any

from ..health import HealthMonitor
from ..media import MediaEngine, MediaError
from ..registration import Binding, Registrations
from ..routing import Limits, Refusal, Router, Target, rewrite
from ..routing.registrar import Registrar
from ..sdp import SdpError
from ..sip.digest import Nonces, authorization, parse_challenge, parse_credentials, verify
from ..sip.digest import challenge as digest_challenge
from ..sip.errors import ParseError
from ..sip.headers import NameAddr, parse_name_addr
from ..sip.ids import new_branch, new_call_id, new_tag
from ..sip.message import Header, Message, Request, Response, make_response, reason_phrase
from ..sip.multipart import Part, boundary_of, join_parts, split_parts
from ..sip.sanity import check_request
from ..sip.transaction import (
    AckTimedOut,
    Addr,
    RequestReceived,
    ResponseReceived,
    Send,
    Timers,
    TransactionLayer,
    TransactionOutput,
    TransactionTimedOut,
)
from ..sip.uri import SipURI, TelURI, format_host
from .call import Call, Relay
from .headers_policy import REQUEST_HEADERS, RESPONSE_HEADERS, copy_allowed
from .leg import Leg, LocalAddress

__all__ = ["ALLOW", "B2BUA", "PeerInfo"]

log = logging.getLogger("pkiss.b2bua")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, MESSAGE"
_RELAYED = frozenset({"INVITE", "UPDATE", "INFO", "MESSAGE"})
_KNOWN = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE", "INFO", "MESSAGE", "REGISTER",
     "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH"}
)  # fmt: skip


class PeerInfo:
    """What the B2BUA needs of a peer's config (duck-typed: the config ``Peer`` fits)."""

    name: str
    role: str
    failover_on: tuple[int, ...]
    setup_timeout: float


def _has_option(message: Message, name: str, option: str) -> bool:
    return any(v.lower() == option for v in message.values(name))


def _identity(value: NameAddr, host: str, renumber: Callable[[str], str]) -> tuple[str | None, str]:
    """Display name and user of an identity, re-homed on ``host``, its number rewritten."""
    uri = value.uri
    if isinstance(uri, TelURI):
        return value.display, f"tel:{renumber(uri.number)}"
    user = uri.user if isinstance(uri, SipURI) else None
    if user:
        user = renumber(user)
    text = f"sip:{user}@{host}" if user else f"sip:{host}"
    return value.display, text


def _party(display: str | None, uri: str) -> str:
    return f"{display} <{uri}>" if display else f"<{uri}>"


class B2BUA:
    """All calls of one node."""

    def __init__(
        self,
        router: Router,
        peers: dict[str, Any],
        local: Callable[[Addr], LocalAddress],
        layer: TransactionLayer | None = None,
        timers: Timers | None = None,
        monitor: HealthMonitor | None = None,
        limits: Limits | None = None,
    ) -> None:
        timers = timers or Timers()
        self.nonces = Nonces(os.urandom(32))
        self.layer = layer if layer is not None else TransactionLayer(timers)
        self.t1 = timers.t1
        self.router = router
        self.peers = peers
        self.local = local
        self.dialogs: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self.invites: dict[str, Call] = {}  # A-leg INVITE server transaction -> call
        self.clients: dict[str, tuple[str, Call, Any]] = {}  # client transaction -> purpose
        self.calls: set[Call] = set()
        self.monitor = monitor
        # per-peer call counters, keyed by peer name: they outlive any reload
        self.limits = limits if limits is not None else Limits()
        self.probes: dict[str, Addr] = {}  # OPTIONS probe client transaction -> host
        self.registrations: Registrations | None = None
        self.registers: dict[str, Binding] = {}  # REGISTER client transaction -> binding
        # the SBC as registrar of the PBXs with ``hosts: registered``
        self.registrar = Registrar()
        # (deadline, seq, kind, Call | probe key): "setup" and "1xx" carry a Call
        self._timers: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._turn = itertools.count()
        self.stats = {"calls": 0, "answered": 0, "failed": 0, "limited": 0}
        self.on_call_end: Callable[[Call], None] | None = None
        # (request, source peer, called number, status, reason, now) of a call refused by
        # routing, a registration missing or a limit, before any Call exists
        self.on_call_refused: Callable[[Request, str, str, int, str, float], None] | None = None
        # media anchoring: the engine (None: SDP passes untouched) and the default mode
        self.media: MediaEngine | None = None
        self.media_mode = "bypass"
        self.media_calls: dict[str, Call] = {}  # relay key -> call, for idle media
        # told of every refused digest credential (security counts them per source)
        self.on_auth_failure: Callable[[Addr, float], None] | None = None

    # ------------------------------------------------------------------------------ driving
    def reconfigure(self, router: Router, peers: dict[str, Any]) -> None:
        """New calls use the new config; calls in progress keep what they started with."""
        self.router = router
        self.peers = peers
        self.registrar.retain({n for n, p in peers.items() if getattr(p, "registered", False)})

    def receive(self, message: Message, source: Addr, peer: Any, now: float) -> list[Send]:
        if isinstance(message, Request) and message.method not in ("ACK",):
            verdict = check_request(message)
            if verdict is not None:
                status, reason, extra = verdict
                log.info("refusing %s from %s: %d %s", message.method, source, status, reason)
                return [Send(make_response(message, status, reason, to_tag=new_tag(),
                                           headers=extra), source)]  # fmt: skip
        out: list[Send] = []
        self._run(self.layer.receive(message, source, now), peer, now, out)
        return out

    def handle_timer(self, now: float) -> list[Send]:
        out: list[Send] = []
        self._run(self.layer.handle_timer(now), None, now, out)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, call = heapq.heappop(timers)
            if kind == "setup":
                self._setup_timer(call, now, out)
            elif kind == "1xx":
                self._retransmit_1xx(call, now, out)
            elif kind == "probe":
                self._probe_timed_out(call, now)
            elif kind == "register" and call.next_at is not None and call.next_at <= now:
                self._register(call, now, out)
        monitor = self.monitor
        if monitor is not None:
            for _, addr in monitor.due(now):
                self._probe(addr, now, out)
        return out

    def hangup_all(self, now: float) -> list[Send]:
        """End every call in progress (shutdown): BYE or CANCEL/final on each leg."""
        out: list[Send] = []
        for call in list(self.calls):
            self._hangup(call, None, now, out, "shutdown")
        return out

    def next_deadline(self) -> float | None:
        layer = self.layer.next_deadline()
        while self._timers and self._stale(self._timers[0]):
            heapq.heappop(self._timers)
        mine = self._timers[0][0] if self._timers else None
        if self.monitor is not None:
            probe = self.monitor.next_deadline()
            if probe is not None and (mine is None or probe < mine):
                mine = probe
        if layer is None:
            return mine
        return layer if mine is None else min(layer, mine)

    def _stale(self, entry: tuple[float, int, str, Any]) -> bool:
        deadline, _, kind, call = entry
        if kind == "probe":
            return call not in self.probes
        if kind == "register":
            return not call.active or call.next_at != deadline
        c: Call = call
        if kind == "1xx":
            return c.ended or c.a_final_sent or not c.unacked_1xx
        return c.setup_deadline != deadline or c.ended

    def _run(
        self, outputs: list[TransactionOutput], peer: Any, now: float, out: list[Send]
    ) -> None:
        # What the transaction layer sends by itself (100 Trying, the ACK of a non-2xx) leaves
        # before what the TU does about the same message (a peer may insist on that order).
        events = []
        for o in outputs:
            if isinstance(o, Send):
                out.append(o)
            else:
                events.append(o)
        for o in events:
            if isinstance(o, RequestReceived):
                self._on_request(o.request, o.source, o.key, peer, now, out)
            elif isinstance(o, ResponseReceived):
                self._on_response(o.response, o.key, now, out)
            elif isinstance(o, TransactionTimedOut):
                self._on_timeout(o.key, now, out)
            elif isinstance(o, AckTimedOut):
                call = self.invites.pop(o.key, None)
                if call is not None and not call.ended:
                    self._hangup(call, None, now, out, "no ACK")

    # -------------------------------------------------------------------------- primitives
    def _respond(
        self,
        key: str | None,
        request: Request,
        status: int,
        now: float,
        out: list[Send],
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        headers: list[Header] | None = None,
        body: bytes = b"",
    ) -> None:
        if key is None:
            return
        response = make_response(
            request, status, reason, to_tag=to_tag or new_tag(), headers=headers or [], body=body
        )
        self._run(self.layer.respond(key, response, now), None, now, out)

    def _send_request(
        self, request: Request, dest: Addr, purpose: str, call: Call, data: Any,
        now: float, out: list[Send],
    ) -> str:  # fmt: skip
        key, outputs = self.layer.request(request, dest, now)
        self.clients[key] = (purpose, call, data)
        self._run(outputs, None, now, out)
        return key

    def _schedule(self, call: Call, deadline: float) -> None:
        call.setup_deadline = deadline
        heapq.heappush(self._timers, (deadline, next(self._seq), "setup", call))

    # ------------------------------------------------------------------------------ requests
    def _on_request(
        self,
        request: Request,
        source: Addr,
        key: str | None,
        peer: Any,
        now: float,
        out: list[Send],
    ) -> None:
        method = request.method
        if method == "ACK":
            self._on_ack(request, now, out)
            return
        if method == "CANCEL":
            self._on_cancel(request, key, now, out)
            return
        to = request.to
        if to is not None and to.tag:
            found = self.dialogs.get((request.call_id or "", to.tag))
            if found is None:
                self._respond(key, request, 481, now, out)
                return
            call, leg = found
            self._in_dialog(call, leg, request, key, now, out)
            return
        if method == "INVITE":
            self._new_call(request, source, key, peer, now, out)
        elif method == "OPTIONS":
            self._respond(key, request, 200, now, out, headers=self._capabilities())
        elif method in ("BYE", "PRACK", "UPDATE", "INFO"):
            self._respond(key, request, 481, now, out)
        elif method == "REGISTER" and any(
            getattr(p, "registered", False) for p in self.peers.values()
        ):
            self._on_register(request, source, key, now, out)
        elif method in _KNOWN:
            self._respond(key, request, 405, now, out, headers=[("Allow", ALLOW)])
        else:
            self._respond(key, request, 501, now, out, headers=[("Allow", ALLOW)])

    @staticmethod
    def _capabilities() -> list[Header]:
        return [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "100rel")]

    def _new_call(
        self, request: Request, source: Addr, key: str | None, peer: Any, now: float,
        out: list[Send],
    ) -> None:  # fmt: skip
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._respond(key, request, 483, now, out)  # §16.3 item 2, as a B2BUA
            return
        if peer is None:
            self._respond(key, request, 403, now, out)
            return
        if peer.match.username and not self._authenticated(request, source, key, peer, now, out):
            return
        down = self.monitor.down if self.monitor is not None else ()
        decision = self.router.route(request, peer, next(self._turn), down)
        if decision.reject is not None:
            self._respond(key, request, decision.reject, now, out, reason=decision.reason)
            self._refused(request, peer.name, decision.number, decision.reject,
                          decision.reason or "rejected by routing", now)  # fmt: skip
            return
        targets = list(decision.targets)
        if decision.registered is not None:
            binding = self.registrar.lookup(decision.registered, now)
            if binding is None:
                self._respond(key, request, 480, now, out)  # not registered (now)
                self._refused(request, peer.name, decision.number, 480,
                              f"{decision.registered} not registered", now)  # fmt: skip
                return
            # latching: the address its REGISTER came from, NAT or not
            targets = [Target(decision.registered, binding.source)]
        local = self.local(source)
        frm = request.from_
        assert frm is not None and request.to is not None
        contact = request.contact
        remote_target = str(contact[0].uri) if contact and contact[0].uri else str(frm.uri)
        # the A-leg's parties as the caller wrote them: To is ours there, From theirs
        peer_name = peer.name
        a = Leg(
            "A",
            peer_name,
            request.call_id or "",
            new_tag(),
            local_party=request.header("to") or "",
            remote_party=_strip_tag(request.header("from") or ""),
            remote_target=remote_target,
            dest=source,
            local=local,
        )
        a.remote_tag = frm.tag
        a.remote_cseq = request.cseq.seq if request.cseq else None
        a.route_set = request.values("record-route")
        refusal = self.limits.admit(peer_name, getattr(peer, "limits", None), now)
        if refusal is not None:
            self.stats["limited"] += 1
            log.info("refusing call %s from %s: over its %s limit", a.call_id, peer_name,
                     refusal.limit)  # fmt: skip
            self._respond(key, request, 503, now, out, headers=_retry_after(refusal))
            self._refused(request, peer_name, decision.number, 503,
                          f"over the {refusal.limit} limit of {peer_name}", now)  # fmt: skip
            return
        call = Call(
            a=a,
            a_invite=request,
            a_key=key,
            source_peer=peer_name,
            number=decision.number,
            targets=targets,
            created_at=now,
            a_reliable=_has_option(request, "supported", "100rel")
            or _has_option(request, "require", "100rel"),
            peers=self.peers,
            held=[peer_name],
        )
        self.calls.add(call)
        self.stats["calls"] += 1
        self.dialogs[(a.call_id, a.local_tag)] = (call, a)
        if key is not None:
            self.invites[key] = call
        if self._relayed(peer, targets) and not self._anchor_offer(call, targets, now, out):
            return
        self._try_next(call, now, out)

    def _refused(self, request: Request, peer: str, number: str, status: int, reason: str,
                 now: float) -> None:  # fmt: skip
        """A call refused before it existed: told to ``on_call_refused`` (its CDR)."""
        if self.on_call_refused is not None:
            self.on_call_refused(request, peer, number, status, reason, now)

    # --------------------------------------------------------------------------- media
    def _relayed(self, peer: Any, targets: list[Target]) -> bool:
        """Media goes through the SBC unless every peer of the call says ``bypass``."""
        if self.media is None:
            return False
        modes = {getattr(peer, "media", None) or self.media_mode}
        for target in targets:
            other = self.peers.get(target.peer)
            modes.add(getattr(other, "media", None) or self.media_mode)
        return "relay" in modes

    def _anchor_offer(self, call: Call, targets: list[Target], now: float,
                      out: list[Send]) -> bool:  # fmt: skip
        """Relay the caller's media: its SDP offer, rewritten once for every B-leg attempt
        (488 when it is not SDP, 503 when no port is free)."""
        call.media = True
        self.media_calls[call.a.local_tag] = call
        body = call.a_invite.body
        multipart = boundary_of(call.a_invite.header("content-type") or "") is not None
        if not body or not (_is_sdp(call.a_invite) or multipart):
            return True  # late offer: the answer will come in the ACK
        toward = self.local(targets[0].addr) if targets else call.a.local
        assert self.media is not None
        try:
            if multipart:
                call.b_offer = self._anchored(call, call.a, call.a_invite, now, "offer")
                if not call.b_offer:
                    raise SdpError("multipart body without readable SDP")
            else:
                call.b_offer = self.media.rewrite(call.a.local_tag, "a", body, toward.host,
                                                  call.a.dest.host, now, "offer")  # fmt: skip
        except (SdpError, MediaError) as exc:
            status = 488 if isinstance(exc, SdpError) else 503
            log.info("refusing call %s: %d, media: %s", call.a.call_id, status, exc)
            call.a_final_sent = True
            call.final_status = status
            self._respond(call.a_key, call.a_invite, status, now, out, to_tag=call.a.local_tag)
            self._end(call, now, "media")
            return False
        return True

    def _anchored(self, call: Call, leg: Leg, message: Message, now: float,
                  kind: str) -> bytes:  # fmt: skip
        """The body of ``message`` from ``leg``, for the other leg: its SDP rewritten
        toward the relay when the call's media is anchored. ``kind``: ``offer`` or
        ``answer`` (RFC 3264), which an engine such as rtpengine must be told."""
        body = message.body
        if not call.media or not body or self.media is None:
            return body
        other = call.other(leg)
        toward = other.local if other is not None else leg.local
        try:
            kind_of_body = message.header("content-type") or ""
            boundary = boundary_of(kind_of_body)
            if boundary is None:
                if not _is_sdp(message):
                    return body
                return self.media.rewrite(call.a.local_tag, leg.side.lower(), body,
                                          toward.host, leg.dest.host, now, kind)  # fmt: skip
            # SIP-I and the like: the SDP part is rewritten, the others pass as they are
            parts = split_parts(body, boundary)
            for i, part in enumerate(parts):
                if part.content_type() == "application/sdp":
                    sdp = self.media.rewrite(call.a.local_tag, leg.side.lower(), part.body,
                                             toward.host, leg.dest.host, now, kind)  # fmt: skip
                    parts[i] = Part(part.headers, sdp)
            return join_parts(parts, boundary)
        except (SdpError, MediaError, ParseError) as exc:
            log.warning("call %s: SDP from the %s-leg not relayed (%s): body dropped",
                        call.a.call_id, leg.side, exc)  # fmt: skip
            return b""

    def hangup_idle(self, now: float, timeout: float) -> list[Send]:
        """End the answered calls whose media has been silent ``timeout`` seconds."""
        out: list[Send] = []
        if self.media is None:
            return out
        for key in self.media.idle(now, timeout):
            call = self.media_calls.get(key)
            if call is None:
                self.media.release(key)
                continue
            if call.answered_at is not None and now - call.answered_at >= timeout:
                log.info("call %s: no media for %g s, hanging up", call.a.call_id, timeout)
                self._hangup(call, None, now, out, "media timeout")
        return out

    def _authenticated(
        self, request: Request, source: Addr, key: str | None, peer: Any, now: float,
        out: list[Send], *, registrar: bool = False,
    ) -> bool:  # fmt: skip
        """A peer known by its digest username proves it (RFC 3261 §22.3): a request without
        valid credentials gets 407 with a challenge (MD5 first, which every peer speaks, then
        SHA-256, RFC 8760); an expired nonce with the right password gets ``stale=true``.
        ``registrar``: a REGISTER, challenged with 401/WWW-Authenticate (§22.2)."""
        # one realm for every peer at that source: the challenge is made before the SBC
        # knows which tenant it speaks to (the credentials tell)
        realm = self.local(source).host
        stale = False
        value = request.header("authorization" if registrar else "proxy-authorization")
        if value is not None:
            try:
                creds = parse_credentials(value)
            except ParseError:
                creds = None
            if (
                creds is not None
                and creds.username == peer.match.username
                and (creds.realm == realm)
            ):
                state = self.nonces.check(creds.nonce, now)
                good = verify(creds, peer.password or "", request.method)
                if good and state == "valid":
                    return True
                stale = good and state == "stale"
            if not stale:
                log.info("%s from %s: credentials refused for peer %s", request.method, source,
                         peer.name)  # fmt: skip
                self._auth_failure(source, now)
        self._challenge(request, source, key, now, out, stale=stale, registrar=registrar)
        return False

    def _auth_failure(self, source: Addr, now: float) -> None:
        if self.on_auth_failure is not None:
            self.on_auth_failure(source, now)

    def _challenge(
        self, request: Request, source: Addr, key: str | None, now: float, out: list[Send],
        *, stale: bool = False, registrar: bool = False,
    ) -> None:  # fmt: skip
        realm = self.local(source).host
        nonce = self.nonces.issue(now)
        name = "WWW-Authenticate" if registrar else "Proxy-Authenticate"
        challenges: list[Header] = [
            (name, digest_challenge(realm, nonce, algorithm, stale=stale))
            for algorithm in ("MD5", "SHA-256")
        ]
        self._respond(key, request, 401 if registrar else 407, now, out, headers=challenges)

    def _on_register(
        self, request: Request, source: Addr, key: str | None, now: float, out: list[Send]
    ) -> None:
        """The SBC as registrar of a PBX with ``hosts: registered`` (RFC 3261 §10.3): the
        digest username of the credentials names the peer; one binding per peer, the last
        REGISTER wins; the calls to it go to the source address of that REGISTER."""
        username: str | None = None
        value = request.header("authorization")
        if value is not None:
            try:
                username = parse_credentials(value).username
            except ParseError:
                username = None
        peer = next(
            (p for p in self.peers.values()
             if getattr(p, "registered", False) and p.match.username
             and p.match.username == username),
            None,
        )  # fmt: skip
        if peer is None:
            if value is not None:
                log.info("REGISTER from %s: no registered peer for user %r", source, username)
                self._auth_failure(source, now)
            self._challenge(request, source, key, now, out, registrar=True)
            return
        if not self._authenticated(request, source, key, peer, now, out, registrar=True):
            return
        contacts = request.contact
        header = request.header("expires")
        try:
            default = int(header) if header is not None else _REGISTER_DEFAULT
        except ValueError:
            self._respond(key, request, 400, now, out, reason="Bad Expires")
            return
        if not contacts:  # a query: the current binding
            binding = self.registrar.lookup(peer.name, now)
            headers: list[Header] = []
            if binding is not None:
                left = max(int(binding.expires_at - now), 0)
                headers.append(("Contact", f"<{binding.contact}>;expires={left}"))
            self._respond(key, request, 200, now, out, headers=headers)
            return
        if any(c.star for c in contacts):
            if default != 0 or len(contacts) != 1:
                self._respond(key, request, 400, now, out)  # §10.3 step 6
                return
            self.registrar.unregister(peer.name)
            log.info("peer %s unregistered from %s", peer.name, source)
            self._respond(key, request, 200, now, out)
            return
        contact = contacts[-1]
        param = contact.param("expires")
        try:
            expires = int(param) if param else default
        except ValueError:
            expires = default
        expires = max(min(expires, _REGISTER_MAX), 0)
        uri = str(contact.uri)
        if expires == 0:
            self.registrar.unregister(peer.name)
            log.info("peer %s unregistered from %s", peer.name, source)
            self._respond(key, request, 200, now, out)
            return
        self.registrar.register(peer.name, uri, source, expires, now)
        log.info("peer %s registered from %s for %ds", peer.name, source, expires)
        self._respond(key, request, 200, now, out, headers=[
            ("Contact", f"<{uri}>;expires={expires}"), ("Expires", str(expires)),
        ])  # fmt: skip

    def _try_next(self, call: Call, now: float, out: list[Send]) -> None:
        """Send the INVITE to the next target with room under its peer's limits, or give up
        with the best answer known (503 with Retry-After when the last ones were full)."""
        while call.targets:
            target = call.targets.pop(0)
            if not self._hold_target(call, target.peer, now):
                continue
            call.attempts += 1
            self._start_b_leg(call, target, now, out)
            return
        if call.refusal is not None:
            self._fail(call, 503, now, out, headers=_retry_after(call.refusal))
        else:
            self._fail(call, 408 if call.attempts else 404, now, out)

    def _hold_target(self, call: Call, peer_name: str, now: float) -> bool:
        """Count the call against the target peer (once per peer); False when it is full."""
        if peer_name in call.held:
            return True  # the same peer's next host: already counted
        limits = getattr(call.peers.get(peer_name), "limits", None)
        refusal = self.limits.admit(peer_name, limits, now)
        if refusal is not None:
            call.refusal = refusal
            log.info("call %s: %s is over its %s limit, skipped", call.a.call_id, peer_name,
                     refusal.limit)  # fmt: skip
            return False
        call.refusal = None
        previous = call.b_peer
        if previous is not None and previous != call.source_peer and previous in call.held:
            call.held.remove(previous)  # the call has left that peer for this one
            self.limits.release(previous)
        call.held.append(peer_name)
        return True

    def _start_b_leg(self, call: Call, target: Target, now: float, out: list[Send]) -> None:
        a_invite = call.a_invite
        local = self.local(target.addr)
        frm = a_invite.from_
        assert frm is not None
        peer = call.peers.get(target.peer)
        source = call.peers.get(call.source_peer)
        inbound = source.rewrite.inbound if source is not None else ()
        outbound = peer.rewrite.outbound if peer is not None else ()

        def renumber(number: str) -> str:
            return rewrite(outbound, rewrite(inbound, number))

        display, from_uri = _identity(frm, format_host(local.host), renumber)
        domain = getattr(peer, "domain", None) or format_host(target.addr.host)
        port = "" if getattr(peer, "domain", None) else f":{target.addr.port}"
        transport = "" if target.addr.transport == "udp" else f";transport={target.addr.transport}"
        number = rewrite(outbound, call.number) if call.number else "anonymous"
        ruri = f"sip:{number}@{domain}{port}{transport}"
        b = Leg(
            "B",
            target.peer,
            new_call_id(),
            new_tag(),
            local_party=_party(display, from_uri),
            remote_party=f"<sip:{number}@{domain}>",
            remote_target=ruri,
            dest=target.addr,
            local=local,
            local_cseq=1,
        )
        max_forwards = a_invite.max_forwards
        headers: list[Header] = [("Allow", ALLOW)]
        if call.a_reliable:
            headers.append(("Supported", "100rel"))
        headers.extend(copy_allowed(a_invite, REQUEST_HEADERS))
        for pai in a_invite.values("p-asserted-identity"):
            try:
                pdisplay, puri = _identity(parse_name_addr(pai), local.hostport, renumber)
                headers.append(("P-Asserted-Identity", _party(pdisplay, puri)))
            except ParseError:  # a bad PAI is not worth failing the call
                continue
        invite = b.request(
            "INVITE",
            headers=headers,
            body=call.b_offer if call.b_offer is not None else a_invite.body,
            cseq=b.local_cseq,
            max_forwards=(max_forwards - 1) if max_forwards is not None else 69,
        )
        call.b = b
        call.auth_tried = False
        call.b_invite = invite
        call.b_peer = target.peer
        call.state = "routing"
        self.dialogs[(b.call_id, b.local_tag)] = (call, b)
        timeout = float(getattr(peer, "setup_timeout", 3.0) or 3.0)
        self._schedule(call, now + timeout)
        call.b_key = self._send_request(invite, target.addr, "invite", call, b, now, out)

    def _setup_timer(self, call: Call, now: float, out: list[Send]) -> None:
        """No response at all from the B-leg within setup_timeout: next candidate."""
        if call.ended or call.setup_deadline is None or call.state != "routing":
            return
        call.setup_deadline = None
        old = call.b
        if call.b_key is not None:
            self.layer.make_cancel(call.b_key)  # sent by the layer if a provisional comes later
        if old is not None:
            self.dialogs.pop((old.call_id, old.local_tag), None)
        log.info("call %s: no answer from %s, trying next", call.a.call_id, call.b_peer)
        if call.targets:
            self._try_next(call, now, out)
        else:
            self._fail(call, 408, now, out)

    def _fail(
        self, call: Call, status: int, now: float, out: list[Send],
        headers: list[Header] | None = None,
    ) -> None:  # fmt: skip
        if not call.a_final_sent:
            call.a_final_sent = True
            call.final_status = status
            self._respond(call.a_key, call.a_invite, status, now, out, to_tag=call.a.local_tag,
                          headers=headers)  # fmt: skip
        self.stats["failed"] += 1
        self._end(call, now, f"failed {status}")

    def _end(self, call: Call, now: float, reason: str) -> None:
        if call.ended:
            return
        call.state = "ended"
        call.ended_at = now
        call.end_reason = reason
        for leg in (call.a, call.b):
            if leg is not None:
                self.dialogs.pop((leg.call_id, leg.local_tag), None)
        self.calls.discard(call)
        held, call.held = call.held, []
        for name in held:
            self.limits.release(name)
        if call.a_key is not None and call.a_final_sent:
            self.invites.pop(call.a_key, None)
        if call.media and self.media is not None:
            self.media_calls.pop(call.a.local_tag, None)
            self.media.release(call.a.local_tag)
        if self.on_call_end is not None:
            self.on_call_end(call)

    def _on_cancel(self, request: Request, key: str | None, now: float, out: list[Send]) -> None:
        invite_key = self.layer.find_invite(request)
        call = self.invites.get(invite_key) if invite_key is not None else None
        if call is None:
            self._respond(key, request, 481, now, out)
            return
        self._respond(key, request, 200, now, out)
        if call.a_final_sent:
            return
        call.a_final_sent = True
        call.final_status = 487
        self._respond(call.a_key, call.a_invite, 487, now, out, to_tag=call.a.local_tag)
        self._cancel_b(call, now, out)
        self._end(call, now, "cancelled")

    def _cancel_b(self, call: Call, now: float, out: list[Send]) -> None:
        if call.b_key is None:
            return
        cancel = self.layer.make_cancel(call.b_key)
        if cancel is not None and call.b is not None:
            self._send_request(cancel, call.b.dest, "cancel", call, None, now, out)

    def _on_ack(self, ack: Request, now: float, out: list[Send]) -> None:
        to = ack.to
        if to is None or not to.tag:
            return
        found = self.dialogs.get((ack.call_id or "", to.tag))
        if found is None:
            return
        call, leg = found
        other = call.other(leg)
        if call.late_ack is not None and call.late_ack is other and other is not None:
            call.late_ack = None
            body = self._anchored(call, leg, ack, now, "answer")  # to the offer in the 2xx
            ack_out = other.ack(
                call.late_ack_cseq, body=body, headers=copy_allowed(ack, REQUEST_HEADERS)
            )
            self._run(self.layer.ack(ack_out, other.dest, now), None, now, out)

    # --------------------------------------------------------------------- in-dialog requests
    def _in_dialog(
        self, call: Call, leg: Leg, request: Request, key: str | None, now: float,
        out: list[Send],
    ) -> None:  # fmt: skip
        cseq = request.cseq
        if cseq is not None and not leg.accept_remote_cseq(cseq.seq):
            self._respond(key, request, 500, now, out, reason="Out of Order")
            return
        other = call.other(leg)
        method = request.method
        if method == "BYE":
            self._respond(key, request, 200, now, out)
            self._hangup(call, leg, now, out, f"BYE from {leg.side}-leg")
            return
        if method == "OPTIONS":
            self._respond(key, request, 200, now, out, headers=self._capabilities())
            return
        if other is None or call.ended:
            self._respond(key, request, 481, now, out)
            return
        if method == "PRACK":
            self._relay_prack(call, leg, other, request, key, now, out)
            return
        if method not in _RELAYED:
            self._respond(key, request, 501, now, out, headers=[("Allow", ALLOW)])
            return
        if method == "INVITE":
            if leg.side in call.reinvite_pending or not other.confirmed:
                self._respond(key, request, 491, now, out, reason="Request Pending")
                return
            call.reinvite_pending.add(leg.side)
            leg.learn_from_request(request)
        elif method == "UPDATE":
            leg.learn_from_request(request)
        headers: list[Header] = copy_allowed(request, REQUEST_HEADERS)
        if method == "INVITE":
            headers.append(("Allow", ALLOW))
        body = self._anchored(call, leg, request, now, "offer")  # re-INVITE or UPDATE
        sent = other.request(method, headers=headers, body=body)
        relay = Relay(call, leg, key, request, sent)
        self._send_request(sent, other.dest, "relay", call, relay, now, out)

    def _relay_prack(
        self, call: Call, leg: Leg, other: Leg, request: Request, key: str | None, now: float,
        out: list[Send],
    ) -> None:  # fmt: skip
        rack = (request.header("rack") or "").split()
        a_rseq = int(rack[0]) if rack and rack[0].isdigit() and len(rack[0]) < 11 else -1
        b_rseq = call.rseq_map.get(a_rseq)
        call.unacked_1xx.pop(a_rseq, None)
        if b_rseq is None or call.b_invite is None or call.b_invite.cseq is None:
            self._respond(key, request, 481, now, out)
            return
        headers: list[Header] = [("RAck", f"{b_rseq} {call.b_invite.cseq.seq} INVITE")]
        headers.extend(copy_allowed(request, REQUEST_HEADERS))
        body = self._anchored(call, leg, request, now, "answer")  # to an offer in the 1xx
        sent = other.request("PRACK", headers=headers, body=body)
        relay = Relay(call, leg, key, request, sent)
        self._send_request(sent, other.dest, "relay", call, relay, now, out)

    def _hangup(
        self, call: Call, from_leg: Leg | None, now: float, out: list[Send], reason: str
    ) -> None:
        """End the call: BYE (or CANCEL / final) on every leg but the one that hung up."""
        if call.ended:
            return
        for leg in (call.a, call.b):
            if leg is None or leg is from_leg:
                continue
            if leg is call.a and not call.a_final_sent:
                call.a_final_sent = True
                call.final_status = 487 if from_leg is None else 480
                self._respond(call.a_key, call.a_invite, call.final_status, now,
                              out, to_tag=call.a.local_tag)  # fmt: skip
            elif leg is call.b and not leg.confirmed:
                self._cancel_b(call, now, out)
            else:
                bye = leg.request("BYE")
                self._send_request(bye, leg.dest, "bye", call, None, now, out)
        self._end(call, now, reason)

    # ----------------------------------------------------------------------------- responses
    def _on_response(
        self, response: Response, key: str | None, now: float, out: list[Send]
    ) -> None:
        if key is None:
            return  # a stray 2xx: the layer re-sends our ACK when it has one
        registers = self.registers
        if registers and key in registers:
            if response.status >= 200:
                self._registered(registers.pop(key), response, now, out)
            return
        probes = self.probes
        if probes and key in probes:
            if response.status >= 200:
                addr = probes.pop(key)
                if self.monitor is not None:
                    self.monitor.result(addr, response.status != 408, now)
            return
        entry = self.clients.get(key)
        if entry is None:
            return
        purpose, call, data = entry
        final = response.status >= 200
        if final:
            del self.clients[key]
        if purpose == "invite":
            self._on_invite_response(call, data, key, response, now, out)
        elif purpose == "relay":
            self._on_relay_response(data, response, now, out)

    def _on_invite_response(
        self, call: Call, leg: Leg, key: str, response: Response, now: float, out: list[Send]
    ) -> None:
        status = response.status
        current = key == call.b_key and not call.ended
        if not current:
            if 200 <= status < 300:
                # an answer from an attempt we gave up on, or after the caller left: ACK + BYE
                leg.learn_from_response(response)
                self._ack_2xx(leg, response, now, out)
                bye = leg.request("BYE")
                self._send_request(bye, leg.dest, "bye", call, None, now, out)
            return
        if call.state == "routing":
            call.setup_deadline = None  # any response stops the setup timer
            call.state = "early"
        if status < 200:
            if status == 100 or leg.confirmed:
                return  # a provisional overtaken by the 2xx (UDP reordering) changes nothing
            leg.learn_from_response(response)
            self._relay_provisional(call, leg, response, now, out)
            return
        if status < 300:
            leg.learn_from_response(response)
            leg.confirmed = True
            call.state = "answered"
            call.answered_at = now
            self.stats["answered"] += 1
            if call.b_invite is not None and call.b_invite.body:
                self._ack_2xx(leg, response, now, out)
            else:
                call.late_ack = leg
                call.late_ack_cseq = response.cseq.seq if response.cseq else leg.local_cseq
            call.a.confirmed = True
            if not call.a_final_sent:
                call.a_final_sent = True
                call.final_status = status
                self._respond(
                    call.a_key, call.a_invite, status, now, out,
                    reason=reason_phrase(status), to_tag=call.a.local_tag,
                    headers=self._answer_headers(call.a, response),
                    body=self._anchored(call, leg, response, now, _kind_of_reply(call.a_invite)),
                )  # fmt: skip
            return
        # a failure: answer a challenge, retry elsewhere, or pass the callee's answer back
        peer = call.peers.get(call.b_peer or "")
        if status in (401, 407) and self._authenticate(call, leg, peer, response, now, out):
            return
        self.dialogs.pop((leg.call_id, leg.local_tag), None)
        failover_on = getattr(peer, "failover_on", (408, 500, 502, 503, 504))
        if status in failover_on and call.targets:
            log.info("call %s: %d from %s, trying next", call.a.call_id, status, call.b_peer)
            self._try_next(call, now, out)
            return
        self._fail(call, _map_failure(status), now, out)

    def _authenticate(
        self, call: Call, leg: Leg, peer: Any, response: Response, now: float, out: list[Send]
    ) -> bool:
        """Answer a carrier's 401/407 with the peer's ``auth`` credentials (RFC 3261 §22.2):
        the same INVITE again, CSeq + 1, a new branch, Authorization or Proxy-Authorization.
        Once per target: a second challenge is a refusal."""
        credentials = getattr(peer, "auth", None)
        previous = call.b_invite
        if credentials is None or call.auth_tried or previous is None:
            return False
        proxy = response.status == 407
        value = response.header("proxy-authenticate" if proxy else "www-authenticate")
        try:
            challenge = parse_challenge(value or "")
            answer = authorization(
                challenge, credentials.username, credentials.password, "INVITE",
                leg.remote_target, new_tag(),
            )  # fmt: skip
        except ParseError as exc:
            log.info("call %s: cannot answer %s's challenge: %s", call.a.call_id, leg.peer,
                     exc.reason)  # fmt: skip
            return False
        call.auth_tried = True
        own = {"via", "max-forwards", "from", "to", "call-id", "cseq", "route", "contact",
               "content-length", "authorization", "proxy-authorization"}  # fmt: skip
        headers = [h for h in previous.headers if h[0].lower() not in own]
        headers.append(("Proxy-Authorization" if proxy else "Authorization", answer))
        invite = leg.request(
            "INVITE", headers=headers, body=previous.body,
            max_forwards=previous.max_forwards or 70,
        )  # fmt: skip
        call.b_invite = invite
        call.state = "routing"
        timeout = float(getattr(peer, "setup_timeout", 3.0) or 3.0)
        self._schedule(call, now + timeout)
        call.b_key = self._send_request(invite, leg.dest, "invite", call, leg, now, out)
        return True

    def _answer_headers(self, a: Leg, response: Response) -> list[Header]:
        headers: list[Header] = [("Contact", a.local.contact), ("Allow", ALLOW)]
        headers.extend(copy_allowed(response, RESPONSE_HEADERS))
        return headers

    def _ack_2xx(self, leg: Leg, response: Response, now: float, out: list[Send]) -> None:
        cseq = response.cseq.seq if response.cseq else leg.local_cseq
        self._run(self.layer.ack(leg.ack(cseq), leg.dest, now), None, now, out)

    def _relay_provisional(
        self, call: Call, leg: Leg, response: Response, now: float, out: list[Send]
    ) -> None:
        if call.a_final_sent:
            return
        headers = self._answer_headers(call.a, response)
        reliable = _has_option(response, "require", "100rel") and response.has("rseq")
        if reliable:
            rseq_text = response.header("rseq") or ""
            b_rseq = int(rseq_text) if rseq_text.strip().isdigit() else 0
            if call.a_reliable:
                call.a_rseq += 1
                call.rseq_map[call.a_rseq] = b_rseq
                headers += [("Require", "100rel"), ("RSeq", str(call.a_rseq))]
            else:
                assert call.b_invite is not None and call.b_invite.cseq is not None
                prack = leg.request(
                    "PRACK", headers=[("RAck", f"{b_rseq} {call.b_invite.cseq.seq} INVITE")]
                )
                self._send_request(prack, leg.dest, "prack", call, None, now, out)
        if call.a_key is None:
            return
        provisional = make_response(
            call.a_invite, response.status, reason_phrase(response.status),
            to_tag=call.a.local_tag, headers=headers,
            body=self._anchored(call, leg, response, now, _kind_of_reply(call.a_invite)),
        )  # fmt: skip
        if reliable and call.a_reliable:
            t1 = self.t1
            call.unacked_1xx[call.a_rseq] = [provisional, t1, now + t1, now + 64 * t1]
            heapq.heappush(self._timers, (now + t1, next(self._seq), "1xx", call))
        self._run(self.layer.respond(call.a_key, provisional, now), None, now, out)

    def _retransmit_1xx(self, call: Call, now: float, out: list[Send]) -> None:
        """RFC 3262 §3: a reliable provisional is sent again, at intervals doubling from T1,
        until its PRACK comes; after 64*T1 the SBC stops (the final response will follow)."""
        if call.ended or call.a_final_sent or call.a_key is None:
            call.unacked_1xx.clear()
            return
        for rseq, entry in list(call.unacked_1xx.items()):
            response, interval, due, give_up = entry
            if due > now:
                continue
            if now >= give_up:
                del call.unacked_1xx[rseq]
                continue
            self._run(self.layer.respond(call.a_key, response, now), None, now, out)
            entry[1] = interval * 2
            entry[2] = now + interval * 2
        if call.unacked_1xx:
            due = min(e[2] for e in call.unacked_1xx.values())
            heapq.heappush(self._timers, (due, next(self._seq), "1xx", call))

    def _on_relay_response(
        self, relay: Relay, response: Response, now: float, out: list[Send]
    ) -> None:
        status = response.status
        if status < 200:
            return
        call = relay.call
        method = relay.sent.method
        to_leg = call.other(relay.from_leg)
        if method == "INVITE":
            call.reinvite_pending.discard(relay.from_leg.side)
            if 200 <= status < 300 and to_leg is not None:
                to_leg.learn_from_response(response)
                if relay.sent.body:
                    self._ack_2xx(to_leg, response, now, out)
                else:
                    call.late_ack = to_leg
                    call.late_ack_cseq = response.cseq.seq if response.cseq else to_leg.local_cseq
        headers = copy_allowed(response, RESPONSE_HEADERS)
        if method in ("INVITE", "UPDATE") and 200 <= status < 300:
            headers = [("Contact", relay.from_leg.local.contact), *headers]
        body = (self._anchored(call, to_leg, response, now, _kind_of_reply(relay.sent))
                if to_leg is not None else b"")  # fmt: skip
        self._respond(
            relay.server_key, relay.original, status, now, out,
            reason=reason_phrase(status), headers=headers, body=body,
        )  # fmt: skip
        if status in (408, 481) and not call.ended:
            self._hangup(call, None, now, out, f"{status} on in-dialog {method}")

    def _on_timeout(self, key: str, now: float, out: list[Send]) -> None:
        if key in self.probes:
            self._probe_timed_out(key, now)
            return
        binding = self.registers.pop(key, None)
        if binding is not None:
            if self.registrations is not None:
                self.registrations.on_timeout(binding, now)
            self._schedule_register(binding)
            return
        entry = self.clients.pop(key, None)
        if entry is None:
            return
        purpose, call, data = entry
        if purpose == "invite" and key == call.b_key and not call.ended:
            if call.state == "routing" or call.state == "early":
                call.setup_deadline = None
                if data is not None:
                    self.dialogs.pop((data.call_id, data.local_tag), None)
                self._try_next(call, now, out) if call.targets else self._fail(call, 408, now, out)
        elif purpose == "relay":
            relay: Relay = data
            if relay.sent.method == "INVITE":
                call.reinvite_pending.discard(relay.from_leg.side)
            self._respond(relay.server_key, relay.original, 408, now, out)
            if not call.ended:
                self._hangup(call, None, now, out, "in-dialog request timed out")

    # ---------------------------------------------------------------------------- probes
    def _probe(self, addr: Addr, now: float, out: list[Send]) -> None:
        """An out-of-dialog OPTIONS to one host: fresh Call-ID, tag and branch, nothing of any
        call or other peer in it, no User-Agent."""
        assert self.monitor is not None
        local = self.local(addr)
        branch = new_branch()
        via = local.via(branch)
        suffix = "" if addr.transport == "udp" else f";transport={addr.transport}"
        uri = f"sip:{format_host(addr.host)}:{addr.port}{suffix}"
        request = Request(
            "OPTIONS",
            uri,
            [
                ("Via", str(via)),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{local.hostport}>;tag={new_tag()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", new_call_id()),
                ("CSeq", "1 OPTIONS"),
                ("Accept", "application/sdp"),
            ],
        )
        request.seed_via([via])
        key, outputs = self.layer.request(request, addr, now)
        self.probes[key] = addr
        heapq.heappush(
            self._timers, (now + self.monitor.timeout(addr), next(self._seq), "probe", key)
        )
        for o in outputs:  # a new client transaction only ever asks to send
            if isinstance(o, Send):
                out.append(o)

    def _probe_timed_out(self, key: str, now: float) -> None:
        """No final response in time (or the transaction's own timeout): a failed probe.
        A response arriving later finds no probe and is ignored."""
        addr = self.probes.pop(key, None)
        if addr is not None and self.monitor is not None:
            self.monitor.result(addr, False, now)

    # ---------------------------------------------------------------------- registrations
    def use_registrations(self, registrations: Registrations | None) -> None:
        """Drive these registrations (built at start, rebuilt on reload): every binding's
        next REGISTER gets a "register" timer."""
        self.registrations = registrations
        if registrations is not None:
            for binding in registrations.bindings.values():
                self._schedule_register(binding)

    def unregister_all(self, now: float) -> list[Send]:
        """Shutdown: remove the SBC's bindings from the carriers' registrars."""
        out: list[Send] = []
        if self.registrations is not None:
            for binding in self.registrations.withdraw(now):
                self._register(binding, now, out)
        return out

    def _schedule_register(self, binding: Binding) -> None:
        if binding.active and binding.next_at is not None:
            heapq.heappush(self._timers, (binding.next_at, next(self._seq), "register", binding))

    def _register(self, binding: Binding, now: float, out: list[Send]) -> None:
        """Send the binding's next REGISTER in a client transaction of its own: its
        responses go to the registrations, never to call logic."""
        regs = self.registrations
        if regs is None or not binding.active or binding.next_at is None:
            return
        local = self.local(binding.addr)
        via = local.via(new_branch())
        request = regs.request(binding, local.contact, via)
        key, outputs = self.layer.request(request, binding.addr, now)
        self.registers[key] = binding
        for o in outputs:  # a new client transaction only ever asks to send
            if isinstance(o, Send):
                out.append(o)

    def _registered(self, binding: Binding, response: Response, now: float,
                    out: list[Send]) -> None:  # fmt: skip
        regs = self.registrations
        if regs is None:
            return
        if regs.on_response(binding, response, now):
            self._register(binding, now, out)
        else:
            self._schedule_register(binding)


_REGISTER_DEFAULT = 3600  # seconds, when a REGISTER names no expiry
_REGISTER_MAX = 3600  # the longest binding granted


def _kind_of_reply(request: Request) -> str:
    """A response's SDP answers the request's offer; to a request without one (late offer,
    RFC 3261 §13.2.1), it is the offer."""
    return "answer" if request.body else "offer"


def _is_sdp(message: Message) -> bool:
    kind = message.header("content-type")
    return kind is not None and kind.split(";", 1)[0].strip().lower() == "application/sdp"


def _strip_tag(value: str) -> str:
    """A From/To header value without its tag parameter (the leg adds its own)."""
    na = parse_name_addr(value)
    params = "".join(
        f";{k}" if v is None else f";{k}={v}" for k, v in na.params if k.lower() != "tag"
    )
    disp = f"{na.display} " if na.display else ""
    return f"{disp}<{na.uri}>{params}"


def _retry_after(refusal: Refusal) -> list[Header]:
    return [("Retry-After", str(refusal.retry_after))]


def _map_failure(status: int) -> int:
    """What the caller hears for the callee side's failure: redirections are not followed
    across the border (their Contact would reveal the other side), authentication challenges
    are the SBC's business with that peer, not the caller's."""
    if 300 <= status < 400:
        return 480
    if status in (401, 407):
        return 403
    return status
