"""Header names and the structured header values the SIP core works with (RFC 3261 §7.3, §20, §25).

Values are parsed from the text of one header field value (after unfolding). Each class keeps
the parts as written, so what we do not change serialises unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from .errors import ParseError
from .uri import URI, SipURI, format_host, parse_host, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "EMPTY_LISTS",
    "CSeq",
    "NameAddr",
    "Params",
    "Via",
    "canonical_name",
    "get_param",
    "parse_cseq",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "split_commas",
]

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 §7.3.3 and the compact forms registered since (RFC 3515 r, RFC 3891 o, RFC 4028 x...)
COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}
_WELL_KNOWN = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Authentication-Info",
    "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Expires",
    "From", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version", "Organization",
    "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Record-Route",
    "Reply-To", "Require", "Retry-After", "Route", "Server", "Subject", "Supported", "Timestamp",
    "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate", "RSeq", "RAck",
    "P-Asserted-Identity", "P-Preferred-Identity", "Privacy", "Session-Expires", "Min-SE",
    "Event", "Allow-Events", "Subscription-State", "Refer-To", "Referred-By", "Replaces",
    "Reason", "Diversion", "History-Info", "Path", "Service-Route", "Identity", "Info-Package",
]  # fmt: skip
_CANONICAL = {n.lower(): n for n in _WELL_KNOWN}

# List headers whose value may be empty (lower-case long names). RFC 3261 §25.1 writes Accept,
# Accept-Encoding, Accept-Language, Allow and Supported as ``HCOLON [ item *(COMMA item) ]``:
# ``Supported:`` says "no extension" (baresip sends it so). Require, Proxy-Require and
# Unsupported want one option tag at least, but an empty one names none: read as naming none,
# never as a reason to drop the request. Every other list (Via, Contact, Route...) must hold a
# value.
EMPTY_LISTS = frozenset(
    ("accept", "accept-encoding", "accept-language", "allow", "supported", "require",
     "proxy-require", "unsupported")
)  # fmt: skip
_CANONICAL.update(COMPACT_FORMS)
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_name_cache: dict[str, str] = {}

_V = TypeVar("_V")


class ValueCache(Generic[_V]):
    """Parsed values by their text. The same values come back message after message (a call's
    From and To in every request and response, the Via of our requests in their responses,
    "1 INVITE"...) and parsed values are immutable. Bounded, and emptied when full: the texts
    are attacker-controlled, and most are new (a Via's branch, a From's tag) so an LRU's
    bookkeeping would cost more than it saves. Callers look up ``values`` themselves (it is
    never replaced) and ``put`` what they parsed; ``cache_clear`` as functools' caches have."""

    __slots__ = ("limit", "values")

    def __init__(self, limit: int) -> None:
        self.values: dict[str, _V] = {}
        self.limit = limit

    def put(self, text: str, value: _V) -> None:
        values = self.values
        if len(values) >= self.limit:
            values.clear()
        values[text] = value

    def cache_clear(self) -> None:
        self.values.clear()


def canonical_name(name: str) -> str:
    """The header's long name in its usual spelling (``v`` -> ``Via``, ``cseq`` -> ``CSeq``);
    an unknown name is kept as written. Raises ``ParseError`` if it is not a token."""
    try:
        return _name_cache[name]
    except KeyError:
        pass
    if not _TOKEN.match(name):
        raise ParseError("bad header name")
    canon = _CANONICAL.get(name.lower(), name)
    # Bounded in count and size: header names are attacker-controlled.
    if len(_name_cache) < 2048 and len(name) <= 64:
        _name_cache[name] = canon
    return canon


# One list element: runs of ordinary characters, quoted strings (with their backslash escapes)
# and <...> (which may hold commas, RFC 3261 §20.10), possessive so nothing backtracks. It stops
# at a separating comma, or at a '"' that opens a quoted string never closed.
_LIST_ELEMENT = re.compile(r'(?:[^",<]++|"(?:[^"\\]++|\\.)*+"|<[^>]*+>?)*+', re.DOTALL)


def split_commas(value: str) -> list[str]:
    """Split a header value on the commas that separate values: not inside a quoted string
    (with its backslash escapes) nor inside ``<...>``. Elements are stripped; an element that is
    empty raises ``ParseError`` (RFC 3261 §7.3.1: ``a,,b`` is not a list)."""
    if '"' not in value and "<" not in value:
        parts = value.split(",")
    else:
        parts = []
        pos = 0
        n = len(value)
        match = _LIST_ELEMENT.match
        while True:
            m = match(value, pos)
            end = pos if m is None else m.end()  # it matches, if only the empty string
            parts.append(value[pos:end])
            if end == n:
                break
            if value[end] != ",":
                raise ParseError("unbalanced quotes")
            pos = end + 1
    out = [p.strip(" \t") for p in parts]
    if not all(out):
        raise ParseError("empty value in a list")
    return out


_QUOTED = re.compile(r'"((?:[^"\\]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"')
# White space is SP and HT only: after unfolding nothing else is LWS (Latin-1 "\x85" and "\xa0"
# are white space to Python's \s, not to RFC 3261).
_PARAM = re.compile(
    r"[ \t]*;[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"(?:[ \t]*=[ \t]*("
    r'"(?:[^"\\]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'  # quoted-string
    r"|[A-Za-z0-9\-.!%*_+`'~:\[\]]+"  # token, or host (IPv6 references too)
    r"))?"
)


# The common shape: no white space, no quoted string; split as it is, without the loop below.
_SIMPLE_PARAMS = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)+\Z")


def _split_params(text: str) -> Params:
    """``text`` matched by ``_SIMPLE_PARAMS``."""
    return _split_param_list(text[1:])


def _split_param_list(text: str) -> Params:
    """``text`` matched by ``_SIMPLE_PARAMS`` once a ``;`` is put before it."""
    out: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        out.append((name, value if eq else None))
    return tuple(out)


def parse_params(text: str) -> Params:
    """Parse ``;name[=value]...`` (generic-param, RFC 3261 §25.1) with white space allowed
    around ``;`` and ``=``. Values may be tokens, hosts (IPv6 too) or quoted strings."""
    if _SIMPLE_PARAMS.match(text):
        return _split_params(text)
    return _parse_params_general(text)


def _parse_params_general(text: str) -> Params:
    out: list[tuple[str, str | None]] = []
    pos = 0
    n = len(text)
    match = _PARAM.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            if text[pos:].strip(" \t"):
                raise ParseError("bad header parameter")
            break
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(out)


def params_text(params: Params) -> str:
    if not params:
        return ""
    return "".join([f";{k}" if v is None else f";{k}={v}" for k, v in params])


def get_param(params: Params, name: str) -> str | None:
    """Value by case-insensitive name; ``""`` for a flag parameter; None when absent."""
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return "" if v is None else v
    return None


# ---------------------------------------------------------------------------------------- Via

_VIA = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)"
    r"(?:[ \t]*:[ \t]*([0-9]+))?[ \t]*"
)
# via-params whose value RFC 3261 §20.42 defines as a token or host: never a quoted string
# (a via-extension, being a generic-param, may be one).
_VIA_TOKEN_PARAMS = frozenset(("branch", "received", "maddr", "ttl", "rport"))
# Long values are parsed each time, so that an attacker cannot fill the caches with large
# strings.
_CACHED_LENGTH = 256
_SENT_BY: ValueCache[tuple[str, str, int | None]] = ValueCache(1024)
_sent_by_values = _SENT_BY.values


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/<transport> host[:port];params``."""

    transport: str
    host: str
    port: int | None
    params: Params = ()

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{params_text(self.params)}"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return get_param(self.params, "received")

    @property
    def rport(self) -> str | None:
        return get_param(self.params, "rport")

    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port


# What nearly every Via looks like: ``SIP/2.0/UDP host[:port]`` then parameters without white
# space or quotes (``_SIMPLE_PARAMS``); anything else takes the general path. The part before
# the parameters is the same in every message from one sender: kept once validated.
_VIA_SENT_BY = re.compile(
    r"SIP/2\.0/([A-Za-z0-9\-.!%*_+`'~]+) (\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)(?::([0-9]+))?\Z"
)


def _sent_by(prefix: str) -> tuple[str, str, int | None] | None:
    """(transport, host, port) of ``SIP/2.0/<transport> host[:port]``; None when it has
    another shape; ``ParseError`` when it has this one but a bad host or port."""
    m = _VIA_SENT_BY.match(prefix)
    if m is None:
        return None
    transport, host, port = m.groups()
    parse_host(host)  # validate (IPv6 literal, hostname)
    port_number: int | None = None
    if port is not None:
        digits = port.lstrip("0")
        if len(digits) > 5 or (port_number := int(digits or "0")) > 65535:
            raise ParseError("bad Via port")
    return transport.upper(), host, port_number


def _parse_via(value: str) -> Via:
    prefix, semi, rest = value.partition(";")
    sent_by = _sent_by_values.get(prefix)
    if sent_by is None:
        sent_by = _sent_by(prefix)
        if sent_by is None:
            return _parse_via_general(value)
        if len(prefix) <= _CACHED_LENGTH:
            _SENT_BY.put(prefix, sent_by)
    if not semi:
        return Via(sent_by[0], sent_by[1], sent_by[2], ())
    if not _SIMPLE_PARAMS.match(value, len(prefix)):
        return _parse_via_general(value)
    params = _split_param_list(rest)
    for k, v in params:
        if not v and k.lower() == "branch":
            raise ParseError("empty Via branch")
    return Via(sent_by[0], sent_by[1], sent_by[2], params)


def _parse_via_general(value: str) -> Via:
    m = _VIA.match(value)
    if m is None:
        raise ParseError("bad Via")
    protocol, version, transport, host, port = m.groups()
    if protocol.upper() != "SIP" or version != "2.0":
        raise ParseError("bad Via protocol")
    parse_host(host)  # validate (IPv6 literal, hostname)
    port_number: int | None = None
    if port is not None:
        digits = port.lstrip("0")
        if len(digits) > 5 or (port_number := int(digits or "0")) > 65535:
            raise ParseError("bad Via port")
    params = parse_params(value[m.end() :]) if m.end() < len(value) else ()
    for k, v in params:
        lname = k.lower()
        if v is not None and v.startswith('"') and lname in _VIA_TOKEN_PARAMS:
            raise ParseError("bad Via parameter")
        if lname == "branch" and not v:
            raise ParseError("empty Via branch")
    return Via(transport.upper(), host, port_number, params)


_VIAS: ValueCache[Via] = ValueCache(4096)
_via_values = _VIAS.values

# ----------------------------------------------------------------------------------- NameAddr

_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*\Z")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, Route, Record-Route value: ``[display] <uri>;params`` or ``uri;params``.

    ``display`` is kept as written (a quoted string keeps its quotes). ``star`` is a
    ``Contact: *``."""

    uri: URI | None
    display: str | None = None
    params: Params = ()
    star: bool = False

    def __str__(self) -> str:
        if self.star:
            return "*"
        disp = f"{self.display} " if self.display else ""
        return f"{disp}<{self.uri}>{params_text(self.params)}"

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        params = (*(p for p in self.params if p[0].lower() != "tag"), ("tag", tag))
        return replace(self, params=params)

    @property
    def sip_uri(self) -> SipURI:
        """The URI, asserted to be a SIP URI (raise ``ParseError`` otherwise)."""
        if not isinstance(self.uri, SipURI):
            raise ParseError("not a SIP URI")
        return self.uri


def _parse_name_addr(value: str, allow_star: bool = False) -> NameAddr:
    text = value.strip(" \t")
    if allow_star and text == "*":
        return NameAddr(None, star=True)
    display: str | None = None
    if text.startswith('"'):
        # A quoted display name may hold "<" and ">": find the URI after its closing quote.
        m = _QUOTED.match(text)
        if m is None:
            raise ParseError("bad display name")
        display = m.group(0)
        lt = text.find("<", m.end())
        if lt < 0:
            raise ParseError("display name without <uri>")
        if text[m.end() : lt].strip(" \t"):
            raise ParseError("bad display name")
    else:
        lt = text.find("<")
        if lt > 0:
            display_text = text[:lt].rstrip(" \t")
            if _DISPLAY_TOKENS.match(display_text):
                display = display_text
            elif ":" in display_text:
                # No token holds ":", a URI does: an addr-spec whose parameters quote a "<"
                # (``sip:a@b;+sip.instance="<urn:uuid:...>"``, RFC 5626 §4.2).
                lt = -1
            else:
                raise ParseError("bad display name")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise ParseError("unclosed <")
        uri_text = text[lt + 1 : gt]
        if not uri_text or uri_text != uri_text.strip(" \t"):
            raise ParseError("white space inside <>")
        rest = text[gt + 1 :]
        params = parse_params(rest) if rest else ()
        return NameAddr(parse_uri(uri_text), display, params)
    # addr-spec: no <>; parameters after the first ';' are header parameters (RFC 3261 §20.10)
    uri_text, semi, rest = text.partition(";")
    uri_text = uri_text.rstrip(" \t")
    if not uri_text or "?" in uri_text or "," in uri_text or " " in uri_text or "\t" in uri_text:
        raise ParseError("bad addr-spec")
    params = parse_params(semi + rest) if semi else ()
    return NameAddr(parse_uri(uri_text), None, params)


_NAME_ADDRS: ValueCache[NameAddr] = ValueCache(8192)
_name_addr_values = _NAME_ADDRS.values

# ---------------------------------------------------------------------------------------- CSeq

_CSEQ = re.compile(r"[ \t]*([0-9]+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*\Z")
MAX_CSEQ = 2**32 - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def _parse_cseq(value: str) -> CSeq:
    m = _CSEQ.match(value)
    if m is None:
        raise ParseError("bad CSeq")
    digits = m.group(1).lstrip("0")
    # RFC 3261 §8.1.1.5: less than 2**32; checked on the length first so that int() never sees
    # thousands of digits (ValueError past sys.get_int_max_str_digits()).
    if len(digits) > 10 or (seq := int(digits or "0")) > MAX_CSEQ:
        raise ParseError("CSeq number too large")
    return CSeq(seq, m.group(2))


_CSEQS: ValueCache[CSeq] = ValueCache(1024)
_cseq_values = _CSEQS.values


def parse_via(value: str) -> Via:
    """One Via value (after comma splitting); raises ``ParseError``."""
    via = _via_values.get(value)
    if via is None:
        via = _parse_via(value)
        if len(value) <= _CACHED_LENGTH:
            if len(_via_values) >= _VIAS.limit:  # ValueCache.put, inlined
                _via_values.clear()
            _via_values[value] = via
    return via


def parse_name_addr(value: str, allow_star: bool = False) -> NameAddr:
    """A name-addr or addr-spec with header parameters (RFC 3261 §20.10); raises ``ParseError``."""
    found = _name_addr_values.get(value)
    if found is None:
        found = _parse_name_addr(value, allow_star)
        # a Contact "*" is one only where allowed: not kept, what is kept reads the same anywhere
        if len(value) <= _CACHED_LENGTH and not found.star:
            if len(_name_addr_values) >= _NAME_ADDRS.limit:  # ValueCache.put, inlined
                _name_addr_values.clear()
            _name_addr_values[value] = found
    return found


def parse_cseq(value: str) -> CSeq:
    """``CSeq: <number> <method>``; raises ``ParseError``."""
    found = _cseq_values.get(value)
    if found is None:
        found = _parse_cseq(value)
        if len(value) <= 32:
            _CSEQS.put(value, found)
    return found


__all__ += ["format_host", "params_text"]
