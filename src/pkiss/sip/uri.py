"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), and any other absolute URI.

URIs are immutable values. Parts are kept as written (escapes included) so a URI we do not
change serialises to the same text; comparisons that RFC 3261 §19.1.4 defines (scheme and host
case-insensitive, parameters by name case-insensitively) are offered as helpers, not by ``==``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from functools import lru_cache

from .errors import ParseError

__all__ = [
    "URI",
    "AbsoluteURI",
    "SipURI",
    "TelURI",
    "escape_user",
    "format_host",
    "parse_uri",
    "unescape",
]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+\Z")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*\Z")
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
_PARAMCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+\Z")
# hname / hvalue chars: hnv-unreserved = [ ] / ? : + $
_HEADERS = re.compile(
    rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})+=(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*"
    rf"(?:&(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})+=(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*)*\Z"
)
# hostname = *( domainlabel "." ) toplabel [ "." ] (RFC 3261 §25.1): a label neither starts nor
# ends with "-", and the top label starts with a letter, so "10.10.10.256" is not a hostname.
# "_" is tolerated inside labels (seen in the field). Possessive runs keep matching linear.
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9][A-Za-z0-9\-_]*+(?<![\-_])\.)*[A-Za-z][A-Za-z0-9\-_]*+(?<![\-_])\.?\Z"
)
_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\Z")
_DIGITS = re.compile(r"[0-9]{1,5}\Z")
# tel: global or local number, then ;params (RFC 3966 kept loose: visual separators allowed)
_TELNUMBER = re.compile(r"\+?[0-9A-Fa-f*#\-.()pPwW]+\Z")
# What may follow "scheme:" in a URI we do not know: printable ASCII but for < > and quotes.
_OPAQUE = re.compile(r"[!#-;=?-~]+\Z")
_ESCAPED = re.compile(r"%([0-9A-Fa-f]{2})")
# Longer URIs are parsed without the cache: an attacker must not fill it with 64 KB strings.
_CACHED_URI_LENGTH = 256


def unescape(text: str) -> str:
    """Decode %HH escapes once (RFC 3261 §19.1.4: never recursively); a ``%`` that does not
    start an escape is kept as it is (RFC 4475 §3.1.1.5)."""
    if "%" not in text:
        return text
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)


_USER_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,/"
)


def escape_user(text: str) -> str:
    """``text`` (a number, unescaped) as the user part of a URI the node writes: what is not
    unreserved or user-unreserved is %HH-escaped, ``;`` and ``?`` too (RFC 3261 §19.1.2 allows
    them, but a number holding them would read as parameters or headers elsewhere)."""
    if _USER_SAFE.issuperset(text):
        return text
    return "".join(c if c in _USER_SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def format_host(host: str) -> str:
    """A host for a URI or Via: IPv6 addresses get their brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _params_text(params: tuple[tuple[str, str | None], ...]) -> str:
    if not params:
        return ""
    return "".join([f";{k}" if v is None else f";{k}={v}" for k, v in params])


def _get_param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return "" if v is None else v
    return None


@dataclass(frozen=True, slots=True)
class SipURI:
    """``sip:`` or ``sips:`` URI. ``host`` keeps IPv6 brackets; ``host_address`` drops them."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str | None = None

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":" + self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(_params_text(self.params))
        if self.headers is not None:
            parts.append("?" + self.headers)
        return "".join(parts)

    @property
    def host_address(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def param(self, name: str) -> str | None:
        """Value of a URI parameter by case-insensitive name; ``""`` for a flag, None if absent."""
        return _get_param(self.params, name)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased (peers write ``UDP`` and ``udp`` alike)."""
        t = self.param("transport")
        return t.lower() if t else None

    def with_params(self, params: tuple[tuple[str, str | None], ...]) -> SipURI:
        return replace(self, params=params)

    def replace(self, **changes: object) -> SipURI:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TelURI:
    """``tel:`` URI (RFC 3966): ``number`` is the global or local number as written."""

    number: str
    params: tuple[tuple[str, str | None], ...] = ()
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{_params_text(self.params)}"

    @property
    def user(self) -> str:
        return self.number

    def param(self, name: str) -> str | None:
        return _get_param(self.params, name)


@dataclass(frozen=True, slots=True)
class AbsoluteURI:
    """A URI of a scheme we do not route on (RFC 3261 §19.1: ``absoluteURI``), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    @property
    def user(self) -> None:
        return None


URI = SipURI | TelURI | AbsoluteURI


_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+"
# A whole parameter list that is valid, to split without checking each part on its own.
_PARAM_LIST = re.compile(rf"{_PARAMCHAR}(?:={_PARAMCHAR})?(?:;{_PARAMCHAR}(?:={_PARAMCHAR})?)*\Z")


def _parse_params(text: str, what: str) -> tuple[tuple[str, str | None], ...]:
    if _PARAM_LIST.match(text):
        out: list[tuple[str, str | None]] = []
        for part in text.split(";"):
            name, eq, value = part.partition("=")
            out.append((name, value if eq else None))
        return tuple(out)
    return _parse_params_general(text, what)


def _parse_params_general(text: str, what: str) -> tuple[tuple[str, str | None], ...]:
    """Each parameter checked on its own: the error names what is wrong."""
    out: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name or not _PARAMCHARS.match(name):
            raise ParseError(f"bad {what} parameter")
        if eq:
            if not value or not _PARAMCHARS.match(value):
                raise ParseError(f"bad {what} parameter value")
            out.append((name, value))
        else:
            out.append((name, None))
    return tuple(out)


# Validated ``host[:port]`` texts: a node sees the same few (its peers, itself) in every Via,
# URI and Contact. Bounded (and emptied when full): the texts are attacker-controlled.
_HOSTS: dict[str, tuple[str, int | None]] = {}
_HOSTS_SIZE = 4096


def parse_host(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets) and validate both; the host keeps brackets."""
    found = _HOSTS.get(text)
    if found is None:
        found = _parse_host(text)
        if len(text) <= 80:
            if len(_HOSTS) >= _HOSTS_SIZE:
                _HOSTS.clear()
            _HOSTS[text] = found
    return found


def _parse_host(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError("unclosed IPv6 reference")
        host = text[: end + 1]
        # ipaddress accepts a "%zone" suffix, which has no place in a SIP URI (RFC 5118 §4).
        if "%" in host:
            raise ParseError("bad IPv6 address")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            # RFC 5118 §4.10: "[2001:db8:::192.0.2.1]" fits RFC 3261's ABNF but is no address.
            raise ParseError("bad IPv6 address") from None
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise ParseError("bad host")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        ipv4 = _IPV4.match(host)
        if ipv4 is not None:
            if any(int(octet) > 255 for octet in ipv4.groups()):
                raise ParseError("bad IPv4 address")
        elif not _HOSTNAME.match(host):
            raise ParseError("bad host")
        if not colon:
            return host, None
    if not _DIGITS.match(port_text) or int(port_text) > 65535:
        raise ParseError("bad port")
    return host, int(port_text)


def parse_uri(text: str) -> URI:
    """Parse a URI; raises ``ParseError``. Short URIs are cached: they repeat across messages
    and are immutable."""
    if len(text) > _CACHED_URI_LENGTH:
        return _parse_uri(text)
    return _parse_uri_cached(text)


def _parse_uri(text: str) -> URI:
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise ParseError("bad URI scheme")
    lscheme = scheme.lower()
    if lscheme == "sip" or lscheme == "sips":
        return _parse_sip(lscheme, rest)
    if lscheme == "tel":
        number, _, params = rest.partition(";")
        if not _TELNUMBER.match(number):
            raise ParseError("bad tel URI")
        return TelURI(number, _parse_params(params, "URI") if params else ())
    if not rest or not _OPAQUE.match(rest):
        raise ParseError("bad URI")
    return AbsoluteURI(lscheme, rest)


_parse_uri_cached = lru_cache(maxsize=4096)(_parse_uri)


def _parse_sip(scheme: str, rest: str) -> SipURI:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user_text, pcolon, password_text = userinfo.partition(":")
        if not _USER.match(user_text):
            raise ParseError("bad URI user part")
        user = user_text
        if pcolon:
            if not _PASSWORD.match(password_text):
                raise ParseError("bad URI password")
            password = password_text
    rest, qmark, headers_text = rest.partition("?")
    headers: str | None = None
    if qmark:
        if not _HEADERS.match(headers_text):
            raise ParseError("bad URI headers")
        headers = headers_text
    hostport, semi, params_text = rest.partition(";")
    host, port = parse_host(hostport)
    params = _parse_params(params_text, "URI") if semi else ()
    return SipURI(scheme, user, password, host, port, params, headers)
