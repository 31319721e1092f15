"""Outbound registration (RFC 3261 §10): the SBC registers to every carrier with ``register``.

Sans-I/O: ``Registrations`` never reads a clock; it is the owner of its REGISTER client
transactions and deadlines (``tu.outbox``): each binding's next REGISTER is a deadline, its
responses (or timeout) come back here only, never to call logic; each binding says when it
wants to be sent again (``next_at``).

- One binding per carrier, to the first host by priority: Call-ID and From tag constant for
  the binding's life, CSeq increasing by one per REGISTER (§10.2.4).
- From/To ``sip:username@domain``, R-URI ``sip:domain`` (domain: ``register.domain``, else the
  host), Contact the SBC's own address toward that host, ``Expires`` the asked seconds.
- A 401/407 is answered at once with digest credentials; a second challenge with the nonce
  already answered (and not ``stale=true``) is a failure. Refreshes re-use the last challenge
  (nc + 1), so a registrar that keeps its nonce answers 200 directly.
- A 2xx registers for the granted seconds (the expires param of our Contact in the 200, else
  its Expires header, else what was asked); the refresh goes at half of that, not sooner
  than ``MIN_REFRESH``. A 423 takes the registrar's Min-Expires and asks again at once.
- Any other failure, or no final response: failed, and a retry after a back-off doubling from
  ``RETRY_FIRST`` to ``RETRY_MAX`` seconds; a 2xx resets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import Peer
from ..outbox import Outbox
from ..sip.digest import Challenge, authorization, parse_challenge
from ..sip.errors import ParseError
from ..sip.headers import Via
from ..sip.ids import new_branch, new_call_id, new_tag
from ..sip.message import Request, Response
from ..sip.transaction import Addr
from ..sip.uri import format_host
from ..transport.listeners import LocalAddress

__all__ = ["MIN_REFRESH", "RETRY_FIRST", "RETRY_MAX", "Binding", "Registrations"]

log = logging.getLogger("pkiss.registration")

MIN_REFRESH = 2.0
RETRY_FIRST = 5.0
RETRY_MAX = 300.0


@dataclass(eq=False, slots=True)
class Binding:
    """One registration of the SBC to one carrier."""

    peer: str
    addr: Addr
    username: str
    password: str
    domain: str
    expires: int
    call_id: str = field(default_factory=new_call_id)
    from_tag: str = field(default_factory=new_tag)
    cseq: int = 0
    state: str = "unregistered"  # registering / registered / failed
    next_at: float | None = None  # when the next REGISTER is due; None: one is in flight
    granted: int | None = None
    backoff: float = RETRY_FIRST
    challenge: Challenge | None = None
    proxy: bool = False  # the challenge came in a 407
    nc: int = 0
    sent_nonce: str | None = None  # the nonce the REGISTER in flight answered
    contact: str | None = None
    active: bool = True
    closing: bool = False  # at shutdown: the REGISTER removes the binding (Expires: 0)

    @property
    def registrar(self) -> str:
        return f"sip:{self.domain}"

    @property
    def aor(self) -> str:
        return f"sip:{self.username}@{self.domain}"

    def same_settings(self, other: Binding) -> bool:
        return (self.addr, self.username, self.password, self.domain, self.expires) == (
            other.addr, other.username, other.password, other.domain, other.expires,
        )  # fmt: skip


def _bindings(peers: Mapping[str, Peer]) -> dict[str, Binding]:
    out: dict[str, Binding] = {}
    for name, peer in peers.items():
        reg = peer.registration
        if reg is None:
            continue
        if not peer.hosts:
            log.warning("registration of %s: no host to register to", name)
            continue
        host = min(peer.hosts, key=lambda h: h.priority)  # the first of equal priorities
        addr = Addr(host.transport, host.host, host.port)
        domain = str(reg.domain) if reg.domain else format_host(host.host)
        out[name] = Binding(name, addr, reg.username, reg.password, domain, int(reg.expires))
    return out


def _expires_param(params: Any) -> int | None:
    for k, v in params or ():
        if k.lower() == "expires" and v is not None and str(v).strip().isdigit():
            return int(str(v).strip())
    return None


class Registrations:
    """Every binding of one node, by carrier name."""

    def __init__(
        self, peers: Mapping[str, Peer], now: float, local: Callable[[Addr], LocalAddress]
    ) -> None:
        self.bindings: dict[str, Binding] = {}
        self.local = local
        self.pending: dict[str, Binding] = {}  # REGISTER client transaction -> binding
        self.rebuild(peers, now)

    # ------------------------------------------------------------------------- owner
    def start(self, now: float, out: Outbox) -> None:
        """Every binding's next REGISTER becomes a deadline (at start and after a reload)."""
        for binding in self.bindings.values():
            self._schedule(binding, out)

    def withdraw_all(self, now: float, out: Outbox) -> None:
        """Shutdown: remove the node's bindings from the carriers' registrars."""
        for binding in self.withdraw(now):
            self._send(binding, now, out)

    def on_deadline(self, ref: object, at: float, now: float, out: Outbox) -> None:
        due = ref.next_at if isinstance(ref, Binding) and ref.active else None
        if isinstance(ref, Binding) and due is not None and due <= now:
            self._send(ref, now, out)

    def stale(self, ref: object, at: float) -> bool:
        return not isinstance(ref, Binding) or not ref.active or ref.next_at != at

    def on_response(self, key: str, response: Response, now: float, out: Outbox) -> None:
        if response.status < 200:
            return
        binding = self.pending.pop(key, None)
        if binding is None:
            return
        if self._answered(binding, response, now):
            self._send(binding, now, out)
        else:
            self._schedule(binding, out)

    def on_timeout(self, key: str, now: float, out: Outbox) -> None:
        binding = self.pending.pop(key, None)
        if binding is not None:
            self._unanswered(binding, now)
            self._schedule(binding, out)

    def _schedule(self, binding: Binding, out: Outbox) -> None:
        if binding.active and binding.next_at is not None:
            out.at(binding.next_at, self, binding)

    def _send(self, binding: Binding, now: float, out: Outbox) -> None:
        """The binding's next REGISTER, in a client transaction of its own."""
        if not binding.active or binding.next_at is None:
            return
        local = self.local(binding.addr)
        request = self.request(binding, local.contact, local.via(new_branch()))
        self.pending[out.request(request, binding.addr, self, now)] = binding

    # ------------------------------------------------------------------------- bindings
    def rebuild(self, peers: Mapping[str, Peer], now: float) -> list[Binding]:
        """Follow a new config: a binding whose settings did not change keeps its state and
        schedule; a new or changed one starts unregistered and is due now; a removed one is
        forgotten (``active`` false: its response, if any, is ignored). Returns the bindings
        that are new."""
        old = self.bindings
        fresh: list[Binding] = []
        bindings: dict[str, Binding] = {}
        for name, binding in _bindings(peers).items():
            previous = old.get(name)
            if previous is not None and previous.same_settings(binding):
                bindings[name] = previous
                continue
            binding.next_at = now
            bindings[name] = binding
            fresh.append(binding)
        for name, binding in old.items():
            if bindings.get(name) is not binding:
                binding.active = False
        self.bindings = bindings
        return fresh

    def next_deadline(self) -> float | None:
        return min(
            (b.next_at for b in self.bindings.values() if b.next_at is not None), default=None
        )

    def due(self, now: float) -> list[Binding]:
        return [b for b in self.bindings.values() if b.next_at is not None and b.next_at <= now]

    # ------------------------------------------------------------------------- requests
    def request(self, binding: Binding, contact: str, via: Via) -> Request:
        """The binding's next REGISTER (CSeq + 1), with credentials when a challenge is
        known; marks it in flight."""
        binding.cseq += 1
        binding.next_at = None
        binding.contact = contact
        if binding.closing:
            self._set(binding, "unregistering")
        elif binding.state != "registered":
            self._set(binding, "registering")
        headers: list[tuple[str, str]] = [
            ("Via", str(via)),
            ("Max-Forwards", "70"),
            ("From", f"<{binding.aor}>;tag={binding.from_tag}"),
            ("To", f"<{binding.aor}>"),
            ("Call-ID", binding.call_id),
            ("CSeq", f"{binding.cseq} REGISTER"),
            ("Contact", contact),
            ("Expires", "0" if binding.closing else str(binding.expires)),
        ]
        binding.sent_nonce = None
        ch = binding.challenge
        if ch is not None:
            binding.nc += 1
            value = authorization(ch, binding.username, binding.password, "REGISTER",
                                  binding.registrar, new_tag(), binding.nc)  # fmt: skip
            headers.append(("Proxy-Authorization" if binding.proxy else "Authorization", value))
            binding.sent_nonce = ch.nonce
        request = Request("REGISTER", binding.registrar, headers)
        request.seed_via([via])
        return request

    # ------------------------------------------------------------------------ responses
    def _answered(self, binding: Binding, response: Response, now: float) -> bool:
        """A final response to the binding's REGISTER. True: send the next REGISTER now
        (a challenge to answer, a 423 to follow)."""
        if not binding.active:
            return False
        status = response.status
        if binding.closing and not (status in (401, 407) and binding.state == "unregistering"):
            self._set(binding, "unregistered" if status < 300 else f"unregister failed ({status})")
            binding.next_at = None
            return False
        if 200 <= status < 300:
            self._registered(binding, response, now)
            return False
        if status in (401, 407):
            name = "proxy-authenticate" if status == 407 else "www-authenticate"
            try:
                ch = parse_challenge(response.header(name) or "")
            except ParseError as exc:
                self._failed(binding, f"{status} (unusable challenge: {exc.reason})", now)
                return False
            if ch.nonce == binding.sent_nonce and not ch.stale:
                self._failed(binding, f"{status} (credentials refused)", now)
                binding.challenge = None
                return False
            binding.challenge = ch
            binding.proxy = status == 407
            binding.nc = 0
            binding.next_at = now
            return True
        if status == 423:
            minimum = (response.header("min-expires") or "").strip()
            if minimum.isdigit() and int(minimum) > binding.expires:
                binding.expires = int(minimum)
                binding.next_at = now
                return True
        self._failed(binding, str(status), now)
        return False

    def _unanswered(self, binding: Binding, now: float) -> None:
        if binding.closing:
            self._set(binding, "unregister failed (no response)")
            binding.next_at = None
        elif binding.active:
            self._failed(binding, "no response", now)

    # ------------------------------------------------------------------------- shutdown
    def withdraw(self, now: float) -> list[Binding]:
        """At shutdown: every binding in force is removed from its registrar (RFC 3261
        §10.2.2, a REGISTER with Expires: 0), answering one more challenge if need be; the
        others are stopped. Returns the bindings whose REGISTER is due now."""
        due: list[Binding] = []
        for binding in self.bindings.values():
            binding.closing = True
            if binding.active and binding.state == "registered":
                binding.next_at = now
                due.append(binding)
            else:
                binding.next_at = None
        return due

    def withdrawing(self) -> bool:
        """True while an un-REGISTER waits for its answer."""
        return any(b.closing and b.state == "unregistering" for b in self.bindings.values())

    def _registered(self, binding: Binding, response: Response, now: float) -> None:
        granted: int | None = None
        mine = binding.contact or ""
        contacts = response.contact or []
        for c in contacts:
            if c.uri is not None and f"<{c.uri}>" == mine.split(">")[0] + ">":
                granted = _expires_param(c.params)
                break
        if granted is None and len(contacts) == 1:
            granted = _expires_param(contacts[0].params)
        if granted is None:
            text = (response.header("expires") or "").strip()
            granted = int(text) if text.isdigit() else None
        if not granted:
            granted = binding.expires
        changed = binding.state != "registered" or binding.granted != granted
        binding.granted = granted
        binding.backoff = RETRY_FIRST
        binding.state = "registered"
        binding.next_at = now + max(granted / 2, MIN_REFRESH)
        if changed:
            log.info("registration of %s to %s: registered for %d s", binding.peer,
                     binding.registrar, granted)  # fmt: skip

    def _failed(self, binding: Binding, reason: str, now: float) -> None:
        binding.state = "failed"
        binding.granted = None
        delay = binding.backoff
        binding.backoff = min(delay * 2, RETRY_MAX)
        binding.next_at = now + delay
        log.info("registration of %s to %s: failed: %s", binding.peer, binding.registrar, reason)
        log.info("registration of %s to %s: retry in %g s", binding.peer, binding.registrar,
                 delay)  # fmt: skip

    def _set(self, binding: Binding, state: str) -> None:
        if binding.state != state:
            binding.state = state
            log.info("registration of %s to %s: %s", binding.peer, binding.registrar, state)
