"""Digest challenges the node makes (RFC 3261 §22): peers known by a digest username prove it.

A request without valid credentials gets a challenge (407 with Proxy-Authenticate, or 401
with WWW-Authenticate for a REGISTER, §22.2), one per algorithm of the peer's
``auth.algorithms`` (RFC 8760; MD5 alone by default: some UAs give up on a challenge set
holding an algorithm they lack); credentials with another algorithm are refused; an expired
nonce with the right password gets ``stale=true``. Nonces are
stateless (an HMAC of their time, ``sip.digest.Nonces``). One realm for every peer at a
source: the challenge is made before the node knows which tenant it speaks to (the
credentials tell). Each refused credential is told to ``on_failure`` (security counts them
per source).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from ..sip.digest import Nonces, parse_credentials, verify
from ..sip.digest import challenge as digest_challenge
from ..sip.errors import ParseError
from ..sip.ids import new_tag
from ..sip.message import Header, Request, Response, make_response
from ..sip.transaction import Addr

__all__ = ["DEFAULT", "DigestAuth"]

DEFAULT = ("MD5",)
"""The algorithms of a challenge when the peer's config names none."""

log = logging.getLogger("pkiss.security")


class DigestAuth:
    def __init__(
        self,
        realm_of: Callable[[Addr], str],
        on_failure: Callable[[Addr, float], None] | None = None,
    ) -> None:
        self.nonces = Nonces(os.urandom(32))
        self.realm_of = realm_of
        self.on_failure = on_failure

    def check(
        self, request: Request, source: Addr, username: str, password: str, now: float,
        *, registrar: bool = False, peer: str = "", algorithms: Sequence[str] = DEFAULT,
    ) -> Response | None:  # fmt: skip
        """None when ``request`` carries valid credentials of ``username``; else the
        challenge to answer it with. ``registrar``: a REGISTER (401/WWW-Authenticate)."""
        realm = self.realm_of(source)
        stale = False
        value = request.header("authorization" if registrar else "proxy-authorization")
        if value is not None:
            try:
                creds = parse_credentials(value)
            except ParseError:
                creds = None
            if (
                creds is not None
                and creds.username == username
                and creds.realm == realm
                and creds.algorithm.upper() in algorithms
            ):
                state = self.nonces.check(creds.nonce, now)
                good = verify(creds, password, request.method)
                if good and state == "valid":
                    return None
                stale = good and state == "stale"
            if not stale:
                log.info("%s from %s: credentials refused for peer %s", request.method, source,
                         peer or username)  # fmt: skip
                self.failed(source, now)
        return self.challenge(request, source, now, stale=stale, registrar=registrar,
                              algorithms=algorithms)  # fmt: skip

    def failed(self, source: Addr, now: float) -> None:
        if self.on_failure is not None:
            self.on_failure(source, now)

    def challenge(
        self, request: Request, source: Addr, now: float, *, stale: bool = False,
        registrar: bool = False, algorithms: Sequence[str] = DEFAULT,
    ) -> Response:  # fmt: skip
        realm = self.realm_of(source)
        nonce = self.nonces.issue(now)
        name = "WWW-Authenticate" if registrar else "Proxy-Authenticate"
        challenges: list[Header] = [
            (name, digest_challenge(realm, nonce, algorithm, stale=stale))
            for algorithm in algorithms
        ]
        return make_response(request, 401 if registrar else 407, to_tag=new_tag(),
                             headers=challenges)  # fmt: skip
