"""The B-leg: the node as UAC toward one candidate of the callee side. Built from scratch for
each attempt (new Call-ID, tags, Via, Contact, CSeq; only allowlisted headers copied; From and
P-Asserted-Identity re-homed on the node, numbers rewritten). It translates the candidate's
responses into call events, answers a carrier's 401/407 once with the peer's ``auth``
credentials (RFC 3261 §22.2), ACKs 2xx, and PRACKs reliable provisionals itself when the
caller does not support 100rel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from ..config import Peer
from ..routing import Target, rewrite
from ..routing.failover import caller_status, fails_over
from ..routing.numbers import RuleLike
from ..sdp import SdpError, keep_codecs, parse_sdp
from ..sip.digest import authorization, parse_challenge
from ..sip.errors import ParseError
from ..sip.headers import NameAddr, parse_name_addr
from ..sip.ids import new_call_id, new_tag
from ..sip.message import Header, Request, Response
from ..sip.transaction import Addr
from ..sip.uri import SipURI, TelURI, escape_user, format_host, unescape
from ..transport.listeners import LocalAddress
from .events import Answered, CallEvent, Failed, FailedOver, Ringing, Trying
from .headers_policy import ALLOW, REQUEST_HEADERS, copy_allowed, with_extra
from .leg import Leg
from .session_timer import expires_of, offer_headers, retry_interval
from .uas import UasLeg

__all__ = ["UacLeg", "build_attempt", "policy_offer", "reliable_rseq"]

log = logging.getLogger("pkiss.b2bua")

_OWN = frozenset({"via", "max-forwards", "from", "to", "call-id", "cseq", "route", "contact",
                  "content-length", "authorization", "proxy-authorization"})  # fmt: skip


class UacLeg(Leg):
    __slots__ = ("auth_tried", "called_sent", "caller_sent", "final_at", "invite", "key",
                 "sent_at", "status", "timer_retried")  # fmt: skip

    def __init__(self, peer: str, local_party: str, remote_party: str, remote_target: str,
                 dest: Addr, local: LocalAddress, call_id: str | None = None,
                 local_tag: str | None = None) -> None:  # fmt: skip
        super().__init__("B", peer, call_id or new_call_id(), local_tag or new_tag(),
                         local_party, remote_party, remote_target, dest, local,
                         local_cseq=1)  # fmt: skip
        self.invite: Request | None = None  # the INVITE of the current attempt
        self.key: str | None = None  # its client transaction
        self.auth_tried = False  # the candidate's 401/407 was answered once
        self.timer_retried = False  # the candidate's 422 was answered once
        # for the call's record: the numbers this attempt sent (From and To users, rewritten),
        # when its INVITE went, its final status (0: none yet) and when that came
        self.caller_sent: str | None = None
        self.called_sent = ""
        self.sent_at: float | None = None
        self.status = 0
        self.final_at: float | None = None

    def translate(self, response: Response, failover_on: tuple[int, ...],
                  more: bool) -> CallEvent | None:  # fmt: skip
        """The call event a response to the current INVITE is (None: none). A 199 (RFC
        6228: the early dialog of another fork ended) is no event: the caller has one early
        dialog with the node, which goes on."""
        status = response.status
        if status < 200:
            if status == 100:
                return Trying()
            if status == 199:
                return None
            if self.confirmed:
                return None  # a provisional overtaken by the 2xx (UDP reordering)
            self.learn_from_response(response)
            return Ringing(response)
        if status < 300:
            self.learn_from_response(response)
            self.confirmed = True
            return Answered(response)
        if fails_over(status, failover_on, more):
            return FailedOver(status)
        return Failed(caller_status(status), by="callee")

    def answer_challenge(self, response: Response, peer: Peer | None) -> Request | None:
        """The same INVITE again with credentials (CSeq + 1, a new branch), or None: no
        ``auth`` for that peer, a second challenge (a refusal), or one it cannot answer."""
        credentials = peer.auth if peer is not None else None
        previous = self.invite
        if credentials is None or self.auth_tried or previous is None:
            return None
        if credentials.username is None or credentials.password is None:
            return None
        proxy = response.status == 407
        value = response.header("proxy-authenticate" if proxy else "www-authenticate")
        try:
            challenge = parse_challenge(value or "")
            answer = authorization(
                challenge, credentials.username, credentials.password, "INVITE",
                self.remote_target, new_tag(),
            )  # fmt: skip
        except ParseError as exc:
            log.info("call to %s: cannot answer its challenge: %s", self.peer, exc.reason)
            return None
        self.auth_tried = True
        headers = [h for h in previous.headers if h[0].lower() not in _OWN]
        headers.append(("Proxy-Authorization" if proxy else "Authorization", answer))
        return self._again(previous, headers)

    def answer_422(self, response: Response, peer: Peer | None) -> Request | None:
        """The same INVITE again asking for the interval a 422 wants (RFC 4028 §7.3), once;
        None when it cannot be (no timers for that peer, a second 422, no larger Min-SE)."""
        previous = self.invite
        settings = peer.session_timer if peer is not None else None
        if previous is None or settings is None or self.timer_retried:
            return None
        asked = expires_of(previous)
        interval = retry_interval(response, asked[0] if asked else 0)
        if interval is None:
            return None
        self.timer_retried = True
        headers = [h for h in previous.headers
                   if h[0].lower() not in _OWN | {"session-expires", "min-se"}]  # fmt: skip
        return self._again(previous, [*headers, *offer_headers(settings, interval)])

    def _again(self, previous: Request, headers: list[Header]) -> Request:
        """The current INVITE anew with ``headers`` (CSeq + 1, a new branch): §8.1.3.5."""
        self.invite = self.request(
            "INVITE", headers=headers, body=previous.body,
            max_forwards=previous.max_forwards or 70,
        )  # fmt: skip
        return self.invite

    def fork(self, response: Response) -> UacLeg:
        """The dialog a 2xx from another fork than the answered one set up (§13.2.2.4): the
        same Call-ID and local tag, the fork's tag, target and route set."""
        other = UacLeg(self.peer, self.local_party, self.remote_party, self.remote_target,
                       self.dest, self.local, self.call_id, self.local_tag)  # fmt: skip
        other.local_cseq = self.local_cseq
        other.learn_from_response(response)
        other.confirmed = True
        return other

    def ack_of(self, response: Response, body: bytes = b"",
               headers: list[Header] | None = None) -> Request:  # fmt: skip
        cseq = response.cseq.seq if response.cseq else self.local_cseq
        return self.ack(cseq, body=body, headers=headers or ())

    def prack_of(self, b_rseq: int) -> Request:
        assert self.invite is not None and self.invite.cseq is not None
        return self.request("PRACK", headers=[("RAck", f"{b_rseq} {self.invite.cseq.seq} INVITE")])


def reliable_rseq(response: Response) -> int | None:
    """The RSeq of a reliable provisional (RFC 3262), else None."""
    if not response.has("rseq") or not any(
        v.lower() == "100rel" for v in response.values("require")
    ):
        return None
    text = response.header("rseq") or ""
    return int(text) if text.strip().isdigit() else 0


def policy_offer(offer: bytes, codecs: tuple[str, ...] | None, sdp: bool,
                 what: str) -> bytes | None:  # fmt: skip
    """An SDP ``offer`` with a peer's codec policy applied (``peers.*.codecs``); None when
    no codec of it is left (logged with ``what``)."""
    if not codecs or not offer or not sdp:
        return offer
    try:
        return bytes(keep_codecs(parse_sdp(offer), codecs))
    except SdpError as exc:
        log.info("call %s: %s", what, exc)
        return None


def build_attempt(
    a: UasLeg, number: str, source_peer: str, target: Target, peers: Mapping[str, Peer],
    local: LocalAddress, offer: bytes | None,
) -> UacLeg:  # fmt: skip
    """The B-leg toward ``target`` and its INVITE (``offer``: the caller's SDP as anchored)."""
    a_invite = a.invite
    frm = a_invite.from_
    assert frm is not None
    peer = peers.get(target.peer)
    source = peers.get(source_peer)
    # the caller's identity as the source peer's inbound and the target's outbound rules
    # make it (no closure: compiled, it would be a reference cycle per call)
    renumber = _Renumber(source.rewrite.inbound if source is not None else (),
                         peer.rewrite.outbound if peer is not None else ())  # fmt: skip
    outbound = renumber.outbound
    source_trusted = source.trusted if source is not None else True
    target_trusted = peer.trusted if peer is not None else True
    privacy = {v.strip().lower() for value in a_invite.values("privacy") for v in value.split(";")}
    display, from_uri, caller = _identity(frm, format_host(local.host), renumber)
    if not target_trusted and privacy & {"id", "user", "header"}:
        # the caller asked for privacy and the callee side is no trusted peer (RFC 3323)
        display, from_uri, caller = '"Anonymous"', "sip:anonymous@anonymous.invalid", "anonymous"
    domain = (peer.domain if peer is not None else None) or format_host(target.addr.host)
    port = "" if peer is not None and peer.domain else f":{target.addr.port}"
    transport = "" if target.addr.transport == "udp" else f";transport={target.addr.transport}"
    called_sent = rewrite(outbound, number) if number else "anonymous"
    called = escape_user(called_sent) if number else called_sent
    ruri = target.uri or f"sip:{called}@{domain}{port}{transport}"
    b = UacLeg(target.peer, local_party=_party(display, from_uri),
               remote_party=f"<sip:{called}@{domain}>", remote_target=ruri, dest=target.addr,
               local=local)  # fmt: skip
    b.caller_sent, b.called_sent = caller, called_sent
    max_forwards = a_invite.max_forwards
    headers: list[Header] = [("Allow", ALLOW)]
    timers = peer.session_timer if peer is not None else None
    supported = [option for option, on in (("100rel", a.reliable), ("timer", timers)) if on]
    if supported:
        headers.append(("Supported", ", ".join(supported)))
    headers.extend(offer_headers(timers))
    extra = source.headers.pass_ if source is not None else ()
    copied = copy_allowed(a_invite, with_extra(REQUEST_HEADERS, extra))
    if not target_trusted:  # Privacy is for the trust domain (RFC 3325 §9.3)
        copied = [h for h in copied if h[0].lower() != "privacy"]
    headers.extend(copied)
    # an identity asserted by a trusted peer, for a trusted peer (RFC 3325)
    asserted = a_invite.values("p-asserted-identity") if source_trusted and target_trusted else ()
    for pai in asserted:
        try:
            pdisplay, puri, _ = _identity(parse_name_addr(pai), local.hostport, renumber)
            headers.append(("P-Asserted-Identity", _party(pdisplay, puri)))
        except ParseError:  # a bad PAI is not worth failing the call
            continue
    b.invite = b.request(
        "INVITE", headers=headers, body=offer if offer is not None else a_invite.body,
        cseq=b.local_cseq, max_forwards=(max_forwards - 1) if max_forwards is not None else 69,
    )  # fmt: skip
    return b


class _Renumber:
    """A number through the source peer's inbound rules, then the target's outbound ones."""

    __slots__ = ("inbound", "outbound")

    def __init__(self, inbound: Sequence[RuleLike], outbound: Sequence[RuleLike]) -> None:
        self.inbound = inbound
        self.outbound = outbound

    def __call__(self, text: str) -> str:
        return rewrite(self.outbound, rewrite(self.inbound, text))


def _identity(value: NameAddr, host: str,
              renumber: Callable[[str], str]) -> tuple[str | None, str, str | None]:  # fmt: skip
    """Display name and URI of an identity, re-homed on ``host``, its number rewritten; and
    that number (None: the URI has no user part)."""
    uri = value.uri
    if isinstance(uri, TelURI):
        number = renumber(uri.number)
        return value.display, f"tel:{number}", number
    user = uri.user if isinstance(uri, SipURI) else None
    if not user:
        return value.display, f"sip:{host}", None
    number = renumber(unescape(user))
    return value.display, f"sip:{escape_user(number)}@{host}", number


def _party(display: str | None, uri: str) -> str:
    return f"{display} <{uri}>" if display else f"<{uri}>"
