"""The node as registrar of the PBXs with ``hosts: registered`` (RFC 3261 §10.3).

The digest username of the credentials names the peer; one binding per peer, the last
REGISTER wins; the calls to it go to the source address of that REGISTER (latching, as behind
NAT). A REGISTER without valid credentials gets a 401 challenge; one naming no registered
peer too, counted as a refused credential when it carried any.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..config import Peer
from ..outbox import Outbox
from ..security.auth import DEFAULT, DigestAuth
from ..sip.digest import parse_credentials
from ..sip.errors import ParseError
from ..sip.ids import new_tag
from ..sip.message import Header, Request, make_response
from ..sip.transaction import Addr
from .bindings import Bindings

__all__ = ["REGISTER_DEFAULT", "REGISTER_MAX", "Registrar"]

log = logging.getLogger("pkiss.registration")

REGISTER_DEFAULT = 3600
"""Seconds a binding lasts when the REGISTER names no expiry."""
REGISTER_MAX = 3600
"""The longest binding granted (seconds)."""


class Registrar:
    """Owner of the REGISTER requests the node receives; keeps ``bindings``."""

    def __init__(self, peers: Mapping[str, Peer], auth: DigestAuth, bindings: Bindings) -> None:
        self.auth = auth
        self.bindings = bindings
        self.reconfigure(peers)

    def reconfigure(self, peers: Mapping[str, Peer]) -> None:
        """New registered peers; bindings of peers no longer registered ones are forgotten."""
        self.by_username = {
            p.match.username: (name, p)
            for name, p in peers.items()
            if p.registered and p.match.username
        }
        self.active = bool(self.by_username)
        # a REGISTER naming nobody yet is challenged with every algorithm a registered peer
        # asks for, in the order first met (MD5 alone by default)
        offered: list[str] = []
        for _, p in self.by_username.values():
            for algorithm in p.auth.algorithms if p.auth is not None else DEFAULT:
                if algorithm not in offered:
                    offered.append(algorithm)
        self.algorithms = tuple(offered) or DEFAULT
        self.bindings.retain({name for name, _ in self.by_username.values()})

    def on_register(
        self, request: Request, source: Addr, key: str | None, now: float, out: Outbox
    ) -> None:
        username: str | None = None
        value = request.header("authorization")
        if value is not None:
            try:
                username = parse_credentials(value).username
            except ParseError:
                username = None
        found = self.by_username.get(username) if username is not None else None
        if found is None:
            if value is not None:
                log.info("REGISTER from %s: no registered peer for user %r", source, username)
                self.auth.failed(source, now)
            first = self.auth.challenge(request, source, now, registrar=True,
                                        algorithms=self.algorithms)  # fmt: skip
            out.respond(key, first, now)
            return
        name, peer = found
        challenge = self.auth.check(
            request, source, username or "", peer.password or "", now, registrar=True, peer=name,
            algorithms=peer.auth.algorithms if peer.auth is not None else DEFAULT,
        )  # fmt: skip
        if challenge is not None:
            out.respond(key, challenge, now)
            return

        def answer(
            status: int, headers: list[Header] | None = None, reason: str | None = None
        ) -> None:
            response = make_response(request, status, reason, to_tag=new_tag(),
                                     headers=headers or [])  # fmt: skip
            out.respond(key, response, now)

        contacts = request.contact
        header = request.header("expires")
        try:
            default = int(header) if header is not None else REGISTER_DEFAULT
        except ValueError:
            answer(400, reason="Bad Expires")
            return
        if not contacts:  # a query: the current binding
            binding = self.bindings.lookup(name, now)
            headers: list[Header] = []
            if binding is not None:
                left = max(int(binding.expires_at - now), 0)
                headers.append(("Contact", f"<{binding.contact}>;expires={left}"))
            answer(200, headers)
            return
        if any(c.star for c in contacts):
            if default != 0 or len(contacts) != 1:
                answer(400)  # §10.3 step 6
                return
            self.bindings.unregister(name)
            log.info("peer %s unregistered from %s", name, source)
            answer(200)
            return
        contact = contacts[-1]
        param = contact.param("expires")
        try:
            expires = int(param) if param else default
        except ValueError:
            expires = default
        expires = max(min(expires, REGISTER_MAX), 0)
        uri = str(contact.uri)
        if expires == 0:
            self.bindings.unregister(name)
            log.info("peer %s unregistered from %s", name, source)
            answer(200)
            return
        self.bindings.register(name, uri, source, expires, now)
        log.info("peer %s registered from %s for %ds", name, source, expires)
        answer(200, [("Contact", f"<{uri}>;expires={expires}"), ("Expires", str(expires))])
