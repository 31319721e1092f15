"""Who sent a request: the peer it is attributed to (CONFIG.md, routing rules).

By source address and port first (a port-specific match beats an address-only one); when
several peers share that source (tenants of one multi-tenant PBX), by the tenant header their
``match.header`` names, then by domain (the host of From, To or the Request-URI against
``match.domain``/``domain``), then by the digest username of the credentials the B2BUA
challenges for; a PBX with ``hosts: registered`` has no source and is found by that
username alone (or, by the engine, by the source of its current registration).
The config refuses peers that cannot be told apart. A response
needs no attribution beyond its source: it is matched to its transaction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ..config import Peer
from ..sip.digest import parse_credentials
from ..sip.errors import ParseError
from ..sip.message import Message, Request
from ..sip.transaction import Addr
from ..sip.uri import SipURI

__all__ = ["PeerIndex"]


class PeerIndex:
    """Source addresses to peers: exact addresses in a dict, networks scanned after."""

    def __init__(self, peers: Mapping[str, Peer]) -> None:
        self._exact: dict[str, list[tuple[int | None, Peer]]] = {}
        self._networks: list[tuple[Any, int | None, Peer]] = []
        # PBXs with ``hosts: registered``: no fixed source, known by their digest username
        self.registered: dict[str, Peer] = {
            p.match.username: p for p in peers.values() if p.registered and p.match.username
        }
        for peer in peers.values():
            for source in peer.match_sources:
                net = source.network
                if net.num_addresses == 1:
                    host = str(net.network_address)
                    self._exact.setdefault(host, []).append((source.port, peer))
                else:
                    self._networks.append((net, source.port, peer))
        for entries in self._exact.values():
            entries.sort(key=lambda e: e[0] is None)  # a port-specific match first

    def candidates(self, addr: Addr) -> list[Peer]:
        """Every peer whose sources hold ``addr``; port-specific matches only, if any."""
        by_port: list[Peer] = []
        by_host: list[Peer] = []
        for port, peer in self._exact.get(addr.host, ()):
            if port == addr.port:
                by_port.append(peer)
            elif port is None:
                by_host.append(peer)
        if self._networks and not by_port:
            ip = ipaddress.ip_address(addr.host)
            for net, port, peer in self._networks:
                if ip in net:
                    if port == addr.port:
                        by_port.append(peer)
                    elif port is None:
                        by_host.append(peer)
        return by_port or by_host

    def match(self, addr: Addr) -> Peer | None:
        """A peer at ``addr``, or None: the cheap check made before parsing anything."""
        found = self.candidates(addr)
        return found[0] if found else None

    def identify(self, addr: Addr, message: Message) -> Peer | None:
        """The peer a message from ``addr`` comes from, or None when it cannot be told."""
        found = self.candidates(addr)
        if not found and self.registered and _starts_a_call(message):
            # a registered PBX sends from anywhere: its credentials name it (the B2BUA checks
            # them); without credentials it is found by its binding's source, or not at all
            assert isinstance(message, Request)
            return self.registered.get(_credentials_username(message) or "")
        if len(found) <= 1 or not _starts_a_call(message):
            # in-dialog requests find their call by Call-ID and tag, responses their
            # transaction: any peer at that source will do for them
            return found[0] if found else None
        assert isinstance(message, Request)
        with_header = [p for p in found if p.match.header]
        for peer in with_header:
            if all(message.header(k) == v for k, v in peer.match.header.items()):
                return peer
        hosts = _hosts(message)
        for peer in found:
            domain = peer.match_domain
            if domain is not None and domain.lower() in hosts:
                return peer
        with_username = [p for p in found if p.match.username]
        if with_username:
            # digest username: the B2BUA challenges a request without credentials (407) and
            # checks the password of the peer the credentials name
            username = _credentials_username(message)
            for peer in with_username:
                if peer.match.username == username:
                    return peer
            return with_username[0]
        # the one peer that asks for nothing more, if there is exactly one
        plain = [p for p in found if not p.match.header and p.match_domain is None]
        return plain[0] if len(plain) == 1 else None


def _starts_a_call(message: Message) -> bool:
    if not isinstance(message, Request) or message.method not in ("INVITE", "REGISTER"):
        return False
    to = message.to
    return to is None or not to.tag


def _credentials_username(request: Request) -> str | None:
    value = request.header("proxy-authorization") or request.header("authorization")
    if value is None:
        return None
    try:
        return parse_credentials(value).username
    except ParseError:
        return None


def _hosts(request: Request) -> set[str]:
    out: set[str] = set()
    for uri in (request.uri, getattr(request.from_, "uri", None), getattr(request.to, "uri", None)):
        if isinstance(uri, SipURI):
            out.add(uri.host.lower())
    return out
