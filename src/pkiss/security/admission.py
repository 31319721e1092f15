"""Admission: what may reach the SIP core, decided once per message, cheapest check first.

Before parsing (``screen``): a banned source is dropped; a source that is a peer's, or the
source of a registered PBX's current binding, is known; a stranger is counted for flood
detection and dropped unparsed, unless it may be a registered PBX's REGISTER (some peer has
``hosts: registered``) or ``security.unknown_sources`` is ``reject``. Over TCP and TLS the
connection itself was judged the same way when it was accepted (``connections.py``).

After parsing (``admit``), the one verdict: ``Pass(peer)`` (the peer the message is
attributed to, the only time it is), ``Drop`` (silence), or ``Reject(status)`` (answered
statelessly). In order: a stranger's request with a scanner's fingerprint bans it; a message
from no peer is dropped (or, with ``unknown_sources: reject``, its request gets 403), except a
REGISTER or a request from the source of a registered PBX's binding when such PBXs exist;
a method outside ``security.methods`` gets 405 with Allow; a new INVITE while the node drains
gets 503 with Retry-After; a request that parses but cannot be served gets 400/416/420
(``sip.sanity``). An ACK is never answered: its rejections are drops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..config import Peer
from ..config import Security as SecurityConfig
from ..routing.attribution import PeerIndex
from ..sip.message import Header, Message, Request
from ..sip.sanity import check_request
from ..sip.transaction import Addr
from .pipeline import Security

__all__ = ["DROP", "Admission", "Drop", "Pass", "Reject", "Verdict"]


@dataclass(frozen=True, slots=True)
class Pass:
    peer: Peer | None  # None: a REGISTER for the registrar, which tells who it is


@dataclass(frozen=True, slots=True)
class Drop:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    reason: str | None = None
    headers: tuple[Header, ...] = ()


DROP = Drop()
Verdict = Pass | Drop | Reject


class Admission:
    def __init__(self, peers: Mapping[str, Peer], config: SecurityConfig, filters: Security,
                 registered_at: Callable[[Addr, float], str | None]) -> None:  # fmt: skip
        self.filters = filters
        # the registered PBX whose current binding came from a source, if any
        self.registered_at = registered_at
        self.draining = False  # a stopping node takes no new call
        self.dropped = 0  # packets dropped unanswered
        self.reconfigure(peers, config)

    def reconfigure(self, peers: Mapping[str, Peer], config: SecurityConfig) -> None:
        self.config = config
        self._by_name = peers
        self.peers = PeerIndex(peers)
        self.methods = frozenset(config.methods)
        self._allow = ", ".join(m for m in config.methods if m != "ACK")

    # ----------------------------------------------------------------------- before parsing
    def screen(self, source: Addr, now: float) -> bool | None:
        """None to drop the packet unparsed, else whether its source is known."""
        filters = self.filters
        if filters.banned(source.host, now):
            self.dropped += 1
            return None
        if self.peers.match(source) is not None or self.registered_at(source, now):
            return True
        if filters.stranger_packet(source.host, now) or (
            self.config.unknown_sources == "drop" and not self.peers.registered
        ):
            self.dropped += 1
            return None
        return False

    def answer_garbage(self, known: bool) -> bool:
        """Bytes that do not parse: answer them (400), or drop them when they come from a
        stranger while registered PBXs make strangers parseable."""
        if self.peers.registered and not known:
            self.dropped += 1
            return False
        return True

    # ------------------------------------------------------------------------ after parsing
    def admit(self, message: Message, source: Addr, known: bool, now: float) -> Verdict:
        peer = self.peers.identify(source, message)
        request = message if isinstance(message, Request) else None
        registering = request if request is not None and request.method == "REGISTER" else None
        if peer is None:
            if (
                not known
                and request is not None
                and self.filters.stranger_request(request, source.host, now)
            ):
                self.dropped += 1
                return DROP
            if self.peers.registered:
                name = self.registered_at(source, now)
                if name is not None:
                    peer = self._by_name.get(name)
                elif registering is None and self.config.unknown_sources == "drop" and not known:
                    self.dropped += 1
                    return DROP
        if peer is None and (registering is None or not self.peers.registered):
            return self._reject(request, Reject(403)) if request is not None else DROP
        if request is None:
            return Pass(peer)
        method = request.method
        if method not in self.methods:
            return self._reject(request, Reject(405, headers=(("Allow", self._allow),)))
        if self.draining and method == "INVITE":
            to = request.to
            if to is None or not to.tag:
                return self._reject(request, Reject(503, headers=(("Retry-After", "5"),)))
        return self._checked(request, Pass(peer))

    def _checked(self, request: Request, verdict: Pass) -> Verdict:
        if request.method == "ACK":
            return verdict
        refusal = check_request(request)
        if refusal is None:
            return verdict
        status, reason, extra = refusal
        return Reject(status, reason, tuple(extra))

    @staticmethod
    def _reject(request: Request | None, reject: Reject) -> Verdict:
        if request is None or request.method == "ACK":  # §17.2.1: an ACK is never answered
            return DROP
        return reject

    # -------------------------------------------------------------------- from the core
    def auth_failed(self, source: Addr, now: float) -> None:
        """A refused credential: counted against a stranger (a peer's own addresses are
        trusted by config; their failures are only logged)."""
        if self.peers.match(source) is None:
            self.filters.auth_failed(source.host, now)
