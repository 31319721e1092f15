"""Digest authentication maths (RFC 3261 §22.4 with RFC 2617; SHA-256 per RFC 7616/RFC 8760).

Pure functions: parse a challenge (WWW-Authenticate / Proxy-Authenticate), parse credentials
(Authorization / Proxy-Authorization), compute the response, build either header, verify
credentials. Nonces are the caller's business (they need a clock and a secret).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .errors import ParseError
from .headers import split_commas

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "Credentials",
    "authorization",
    "challenge",
    "parse_challenge",
    "parse_credentials",
    "response",
    "verify",
]

# algorithm token -> hash function name; "-sess" variants hash the nonce pair into HA1.
ALGORITHMS = {
    "MD5": "md5",
    "MD5-SESS": "md5",
    "SHA-256": "sha256",
    "SHA-256-SESS": "sha256",
}


def _params(text: str) -> dict[str, str]:
    scheme, _, rest = text.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ParseError("not a Digest challenge or credentials")
    out: dict[str, str] = {}
    for item in split_commas(rest):
        name, eq, value = item.partition("=")
        if not eq:
            raise ParseError("bad digest parameter")
        value = value.strip()
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"'):
                raise ParseError("bad quoted digest parameter")
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[name.strip().lower()] = value
    return out


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None


def parse_challenge(value: str) -> Challenge:
    p = _params(value)
    if "realm" not in p or "nonce" not in p:
        raise ParseError("digest challenge without realm or nonce")
    algorithm = p.get("algorithm", "MD5").upper()
    qop = tuple(q.strip().lower() for q in p["qop"].split(",") if q.strip()) if "qop" in p else ()
    return Challenge(p["realm"], p["nonce"], algorithm, qop, p.get("opaque"),
                     p.get("stale", "").lower() == "true")  # fmt: skip


def parse_credentials(value: str) -> Credentials:
    p = _params(value)
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
    if missing:
        raise ParseError(f"digest credentials without {missing[0]}")
    return Credentials(
        p["username"], p["realm"], p["nonce"], p["uri"], p["response"].lower(),
        p.get("algorithm", "MD5").upper(), p.get("qop"), p.get("nc"), p.get("cnonce"),
        p.get("opaque"),
    )  # fmt: skip


def _h(algorithm: str, text: str) -> str:
    name = ALGORITHMS.get(algorithm.upper())
    if name is None:
        raise ParseError(f"unsupported digest algorithm {algorithm}")
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


def response(
    algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
    nonce: str, qop: str | None = None, nc: str | None = None, cnonce: str | None = None,
) -> str:  # fmt: skip
    """The request-digest of RFC 2617 §3.2.2.1 (qop ``auth`` or none; RFC 7616 hashes)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    ch: Challenge, username: str, password: str, method: str, uri: str, cnonce: str,
    nc: int = 1,
) -> str:  # fmt: skip
    """The Authorization / Proxy-Authorization value answering ``ch``."""
    qop = "auth" if "auth" in ch.qop else None
    nc_text = f"{nc:08x}"
    digest = response(ch.algorithm, username, ch.realm, password, method, uri, ch.nonce, qop,
                      nc_text, cnonce)  # fmt: skip
    parts = [
        f"Digest username={_quote(username)}", f"realm={_quote(ch.realm)}",
        f"nonce={_quote(ch.nonce)}", f"uri={_quote(uri)}", f"response={_quote(digest)}",
        f"algorithm={ch.algorithm}",
    ]  # fmt: skip
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if ch.opaque is not None:
        parts.append(f"opaque={_quote(ch.opaque)}")
    return ", ".join(parts)


def challenge(realm: str, nonce: str, algorithm: str = "MD5", *, stale: bool = False,
              opaque: str | None = None) -> str:  # fmt: skip
    """A WWW-Authenticate / Proxy-Authenticate value (qop=auth)."""
    parts = [f"Digest realm={_quote(realm)}", f"nonce={_quote(nonce)}",
             f"algorithm={algorithm}", 'qop="auth"']  # fmt: skip
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    if stale:
        parts.append("stale=true")
    return ", ".join(parts)


def verify(creds: Credentials, password: str, method: str) -> bool:
    """Whether the credentials were made with ``password`` (constant-time comparison)."""
    try:
        expected = response(creds.algorithm, creds.username, creds.realm, password, method,
                            creds.uri, creds.nonce, creds.qop, creds.nc, creds.cnonce)  # fmt: skip
    except ParseError:
        return False
    return _same(expected, creds.response)


def _same(ours: str, theirs: str) -> bool:
    """Constant-time equality; ``hmac.compare_digest`` raises TypeError on str with non-ASCII
    characters, which a peer's credentials may hold (found by fuzzing the receive path)."""
    return hmac.compare_digest(ours.encode(), theirs.encode("utf-8", "surrogateescape"))


class Nonces:
    """Nonces the SBC issues in its own challenges: ``<time>.<HMAC>``, so a nonce needs no
    storage and cannot be forged; valid ``lifetime`` seconds. ``now`` comes from the caller."""

    def __init__(self, secret: bytes, lifetime: float = 300.0) -> None:
        self._secret = secret
        self.lifetime = lifetime

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]

    def issue(self, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        return f"{stamp}.{self._mac(stamp)}"

    def check(self, nonce: str, now: float) -> str:
        """``"valid"``, ``"stale"`` (ours but too old: challenge again with stale=true) or
        ``"invalid"``."""
        stamp, dot, mac = nonce.partition(".")
        if not dot or not _same(mac, self._mac(stamp)):
            return "invalid"
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return "invalid"
        return "valid" if 0 <= now - issued <= self.lifetime else "stale"


__all__ += ["Nonces"]
