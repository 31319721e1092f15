"""One leg of a call: the SBC's side of one SIP dialog (RFC 3261 §12), with its own Call-ID,
tags, CSeq space, Contact and Via. Legs never share any of these: that is topology hiding.

A leg sends its in-dialog requests where RFC 3261 §12.2.1.1 says: to its first Route (the
peer's record-routing proxy), else to its remote target (the peer's Contact), refreshed by
re-INVITE and UPDATE. Latching to the address the dialog was set up with (``dest``) is the
fallback: when that URI names no IP address (the node resolves no names), when it names a
private address while the peer talks from a public one (a peer behind NAT), and over TCP or
TLS when it names the host the connection already goes to (the connection is reused).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from ..sip.dialog import Dialog
from ..sip.errors import ParseError
from ..sip.ids import new_branch
from ..sip.message import Header, Request
from ..sip.transaction import Addr
from ..sip.uri import SipURI, parse_uri
from ..transport.listeners import LocalAddress
from .session_timer import LegTimer

__all__ = ["Leg", "LocalAddress"]

_SDP_METHODS = frozenset({"INVITE", "UPDATE", "ACK", "PRACK"})


class Leg(Dialog):
    """One side of a call: its dialog, the peer it belongs to, where its requests go
    (``dest``) and the SBC's own address on that side (``local``)."""

    __slots__ = ("_hop", "confirmed", "dest", "local", "peer", "reinvite_pending", "sdp", "side",
                 "timer")  # fmt: skip

    def __init__(
        self,
        side: str,
        peer: str,
        call_id: str,
        local_tag: str,
        local_party: str,
        remote_party: str,
        remote_target: str,
        dest: Addr,
        local: LocalAddress,
        local_cseq: int = 1,
    ) -> None:
        super().__init__(call_id, local_tag, local_party, remote_party, remote_target, local_cseq)
        self.side = side
        self.peer = peer
        self.dest = dest
        self.local = local
        self.confirmed = False
        self.reinvite_pending = False  # a re-INVITE from this leg awaits its answer (§14.1)
        self._hop: tuple[str, Addr] | None = None  # (next hop URI, its address)
        self.sdp = b""  # the session description the node last sent on this leg
        self.timer: LegTimer | None = None  # RFC 4028, this leg's own (session_timer.py)

    def request(
        self,
        method: str,
        *,
        headers: Sequence[Header] = (),
        body: bytes = b"",
        cseq: int | None = None,
        max_forwards: int = 70,
    ) -> Request:
        """A request within this leg's dialog, with the SBC's Via (fresh branch) and Contact."""
        if body and method in _SDP_METHODS:
            self.sdp = body
        return self.build(
            method, self.local.via(new_branch()), contact=self.local.contact, headers=headers,
            body=body, cseq=cseq, max_forwards=max_forwards,
        )  # fmt: skip

    def next_address(self) -> Addr:
        """The address of this leg's next in-dialog request (see the module's docstring)."""
        uri = super().next_hop()
        cached = self._hop
        if cached is not None and cached[0] == uri:
            return cached[1]
        addr = _address_of(uri, self.dest, bool(self.route_set))
        self._hop = (uri, addr)
        return addr

    def ack(self, invite_cseq: int, body: bytes = b"", headers: Sequence[Header] = ()) -> Request:
        """The ACK for a 2xx to our INVITE with that CSeq number (§13.2.2.4)."""
        return self.request("ACK", cseq=invite_cseq, body=body, headers=headers)


def _address_of(text: str, latched: Addr, routed: bool) -> Addr:
    try:
        uri = parse_uri(text)
    except ParseError:
        return latched
    if not isinstance(uri, SipURI):
        return latched
    host = uri.host_address
    private = _private(host)
    if private is None:
        return latched  # a name: no DNS on the call path
    transport = uri.transport or ("tls" if uri.scheme == "sips" else latched.transport)
    if transport not in ("udp", "tcp", "tls"):
        return latched
    if private and not _private(latched.host):
        return latched  # a private address seen from a public one: behind NAT
    if transport != "udp" and not routed and host == latched.host:
        return latched  # the connection the peer opened, reused
    port = uri.port or (5061 if transport == "tls" else 5060)
    return Addr(transport, host, port)


@lru_cache(maxsize=4096)
def _private(host: str) -> bool | None:
    """Whether the IP address ``host`` is private; None for a name. Cached: two legs a call
    ask it of the same few peer addresses."""
    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return None
