"""SIP messages: ``Request`` and ``Response`` (RFC 3261 §7).

A message is a start line, an ordered list of header fields and a body. Header names are held
in their canonical long form (``v`` becomes ``Via``); values as received, unfolded. The
structured headers the core needs (Via, From, To, Call-ID, CSeq, Contact, Route, Record-Route,
Max-Forwards) are parsed on first use and cached; ``validate()`` parses them all at once, which
the parser does for every message it accepts. The index of header values by lower-case name is
built on first use too (the parser hands over the one it built while reading the lines): a
message the node builds and only sends never needs it.

Messages are treated as immutable: derive a new one with ``replace()``. A message that came off
the wire keeps its bytes in ``raw`` and serialises to exactly those bytes until replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from .errors import ParseError
from .headers import (
    EMPTY_LISTS,
    CSeq,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_commas,
)
from .uri import URI, SipURI, parse_uri

__all__ = ["Header", "Index", "Message", "More", "Request", "Response", "reason_phrase"]

Header = tuple[str, str]
Index = dict[str, str]
"""A message's header values by lower-case name: the first of each name."""
More = dict[str, list[str]]
"""Every value of the names a message has more than once (most have none: no list each)."""

_CALLID = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?\Z"
)
_DIGITS = re.compile(r"[0-9]+\Z")
_UNSET: object = object()
_LOWER: dict[str, str] = {}
_CONTENT_LENGTH = ("content-length", "l")

# Reason phrases we send (RFC 3261 §21 and later RFCs).
_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}  # fmt: skip


def _max_forwards(value: str) -> int:
    if len(value) <= 3 and value.isdigit() and value.isascii():  # the common case: "70"
        number = int(value)
        if number <= 255:
            return number
    # RFC 3261 §20.22: 0-255; the length is checked before int() sees thousands of digits.
    digits = value.lstrip("0")
    if len(digits) > 3 or not _DIGITS.match(value) or int(digits or "0") > 255:
        raise ParseError("bad Max-Forwards")
    return int(digits or "0")


def reason_phrase(status: int) -> str:
    return _REASONS.get(status) or _REASONS.get(status // 100 * 100, "Unknown")


class Message:
    """Common part of requests and responses."""

    __slots__ = (
        "_call_id",
        "_contact",
        "_cseq",
        "_from",
        "_index",
        "_more",
        "_record_route",
        "_route",
        "_to",
        "_via",
        "body",
        "headers",
        "raw",
    )

    def __init__(
        self,
        headers: Sequence[Header],
        body: bytes = b"",
        raw: bytes | None = None,
        index: Index | None = None,
        more: More | None = None,
    ):
        """``index``, when given, must be the first value of each of ``headers``' names by
        lower-case name, and ``more`` every value of the names that occur more than once, in
        order (the parser builds both as it reads); they are built on first use otherwise."""
        self.headers: tuple[Header, ...] = tuple(headers)
        self.body = body
        self.raw = raw
        self._index = index
        self._more = more
        self._via: list[Via] | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._cseq: CSeq | None = None
        self._call_id: object = _UNSET
        self._contact: list[NameAddr] | None = None
        self._route: list[NameAddr] | None = None
        self._record_route: list[NameAddr] | None = None

    # -------------------------------------------------------------------- generic header access
    def _make_index(self) -> Index:
        index: Index = {}
        more: More | None = None
        lower = _LOWER
        for name, value in self.headers:
            key = lower.get(name)
            if key is None:
                key = name.lower()
                if len(lower) < 2048:  # shared keys: one string per header name, not per message
                    lower[name] = key
            first = index.get(key)
            if first is None:
                index[key] = value
            elif more is None:
                more = {key: [first, value]}
            else:
                values = more.get(key)
                if values is None:
                    more[key] = [first, value]
                else:
                    values.append(value)
        self._index = index
        self._more = more
        return index

    def _key(self, name: str) -> str | None:
        """The index's key for a header name (any case), or None when there is no such header."""
        index = self._index
        if index is None:
            index = self._make_index()
        if name in index:  # callers mostly ask in lower case already
            return name
        key = name.lower()
        return key if key in index else None

    def _all(self, key: str) -> list[str] | None:
        """Every value of a lower-case name, or None when there is none: a fresh list for a name
        met once, the index's own list otherwise (not to be changed)."""
        index = self._index
        if index is None:
            index = self._make_index()
        first = index.get(key)
        if first is None:
            return None
        more = self._more
        if more is not None:
            values = more.get(key)
            if values is not None:
                return values
        return [first]

    def header(self, name: str) -> str | None:
        """First value of a header field (by canonical name, case-insensitive), or None."""
        key = self._key(name)
        if key is None:
            return None
        index = self._index
        assert index is not None
        return index[key]

    def header_lines(self, name: str) -> list[str]:
        """Every field value of that name, one per header line, in order."""
        key = self._key(name)
        if key is None:
            return []
        values = self._all(key)
        return list(values) if values else []

    def values(self, name: str) -> list[str]:
        """Every comma-separated value of a list header, across all its lines. A line with no
        value is no value for the headers whose grammar allows it (``Supported:``, see
        ``EMPTY_LISTS``) and a ``ParseError`` for the others, as is an empty element."""
        return self._split(name.lower())

    def _split(self, key: str) -> list[str]:
        """``values()`` by lower-case name."""
        index = self._index
        if index is None:
            index = self._make_index()
        line = index.get(key)
        if line is None:
            return []
        more = self._more
        lines = more.get(key) if more is not None else None
        if lines is None:
            if "," not in line:  # the common case: one value on one line
                value = line.strip(" \t")
                if value:
                    return [value]
                if key in EMPTY_LISTS:
                    return []
                raise ParseError("empty value in a list")
            return split_commas(line)
        out: list[str] = []
        for line in lines:
            if key in EMPTY_LISTS and not line.strip(" \t"):
                continue
            out.extend(split_commas(line))
        return out

    def _first(self, key: str) -> str | None:
        """``header()`` by lower-case name."""
        index = self._index
        if index is None:
            index = self._make_index()
        return index.get(key)

    def count(self, name: str) -> int:
        key = self._key(name)
        if key is None:
            return 0
        values = self._all(key)
        return len(values) if values else 0

    def has(self, name: str) -> bool:
        return self._key(name) is not None

    # --------------------------------------------------------------------- structured headers
    def seed_via(self, via: list[Via]) -> None:
        """Cache the parsed Via values of a message we built (their text came from them)."""
        self._via = via

    @property
    def via(self) -> list[Via]:
        via = self._via
        if via is None:
            values = self._split("via")
            via = [parse_via(values[0])] if len(values) == 1 else [parse_via(v) for v in values]
            self._via = via
        return via

    @property
    def top_via(self) -> Via | None:
        via = self._via
        if via is None:
            via = self.via
        return via[0] if via else None

    @property
    def from_(self) -> NameAddr | None:
        found = self._from
        if found is None:
            value = self._first("from")
            if value is None:
                return None
            found = self._from = parse_name_addr(value)
        return found

    @property
    def to(self) -> NameAddr | None:
        found = self._to
        if found is None:
            value = self._first("to")
            if value is None:
                return None
            found = self._to = parse_name_addr(value)
        return found

    @property
    def call_id(self) -> str | None:
        found = self._call_id
        if found is _UNSET:
            value = self._first("call-id")
            if value is not None and not _CALLID.match(value):
                raise ParseError("bad Call-ID")
            self._call_id = found = value
        return found  # type: ignore[return-value]

    @property
    def cseq(self) -> CSeq | None:
        found = self._cseq
        if found is None:
            value = self._first("cseq")
            if value is None:
                return None
            found = self._cseq = parse_cseq(value)
        return found

    @property
    def contact(self) -> list[NameAddr]:
        found = self._contact
        if found is None:
            values = self._split("contact")
            if len(values) == 1:
                found = [parse_name_addr(values[0], allow_star=True)]
            else:
                found = [parse_name_addr(v, allow_star=True) for v in values]
                # Contact = STAR / contact-param list (RFC 3261 §25.1): "*" stands alone
                if len(found) > 1 and any(c.star for c in found):
                    raise ParseError("Contact * with other contacts")
            self._contact = found
        return found

    @property
    def route(self) -> list[NameAddr]:
        found = self._route
        if found is None:
            found = self._route = [parse_name_addr(v) for v in self._split("route")]
        return found

    @property
    def record_route(self) -> list[NameAddr]:
        found = self._record_route
        if found is None:
            found = self._record_route = [parse_name_addr(v) for v in self._split("record-route")]
        return found

    @property
    def max_forwards(self) -> int | None:
        value = self._first("max-forwards")
        if value is None:
            return None
        return _max_forwards(value)

    def validate(self) -> None:
        """Parse every structured header present; raise ``ParseError`` on the first bad one."""
        index = self._index
        if index is None:
            index = self._make_index()
        more = self._more
        if self._via is None:
            value = index.get("via")
            if value is None:
                self._via = []
            elif "," not in value and (more is None or "via" not in more):  # one value
                value = value.strip(" \t")
                if not value:
                    raise ParseError("empty value in a list")
                self._via = [parse_via(value)]
            else:
                _ = self.via
        value = index.get("call-id")
        if value is None:
            self._call_id = None
        else:
            if not _CALLID.match(value):
                raise ParseError("bad Call-ID")
            self._call_id = value
        value = index.get("cseq")
        if value is not None:
            self._cseq = parse_cseq(value)
        if "contact" in index:
            _ = self.contact
        if "route" in index:
            _ = self.route
        if "record-route" in index:
            _ = self.record_route
        value = index.get("max-forwards")
        if value is not None:
            _max_forwards(value)
        value = index.get("from")
        if value is not None:
            self._from = parse_name_addr(value)
            if more is not None and "from" in more:
                for value in more["from"][1:]:
                    parse_name_addr(value)
        value = index.get("to")
        if value is not None:
            self._to = parse_name_addr(value)
            if more is not None and "to" in more:
                for value in more["to"][1:]:
                    parse_name_addr(value)

    # ------------------------------------------------------------------------- serialisation
    def _start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        raw = self.raw
        if raw is not None:
            return raw
        lines = [self._start_line()]
        # Ours replaces any Content-Length a caller put in, whatever its spelling ("l", §7.3.3;
        # only names of those lengths are lowered to compare).
        lines += [
            f"{n}: {v}"
            for n, v in self.headers
            if not ((len(n) == 14 or len(n) == 1) and n.lower() in _CONTENT_LENGTH)
        ]
        body = self.body
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "\r\n".join(lines).encode("latin-1", "replace") + body

    def _derive_headers(
        self,
        headers: Iterable[Header] | None,
        set_headers: dict[str, str | None] | None,
    ) -> list[Header]:
        out = list(self.headers if headers is None else headers)
        if set_headers:
            for name, value in set_headers.items():
                lname = name.lower()
                kept = [h for h in out if h[0].lower() != lname]
                if value is not None:
                    # replace in place of the first occurrence, else append
                    pos = next((i for i, h in enumerate(out) if h[0].lower() == lname), None)
                    if pos is None:
                        kept.append((name, value))
                    else:
                        before = sum(1 for h in out[:pos] if h[0].lower() != lname)
                        kept.insert(before, (name, value))
                out = kept
        return out


class Request(Message):
    """A SIP request. ``uri`` is the parsed Request-URI; ``uri_text`` as received."""

    __slots__ = ("_uri", "method", "uri_text")

    def __init__(
        self,
        method: str,
        uri: str | URI,
        headers: Sequence[Header],
        body: bytes = b"",
        raw: bytes | None = None,
        index: Index | None = None,
        more: More | None = None,
    ):
        Message.__init__(self, headers, body, raw, index, more)
        self.method = method
        if isinstance(uri, str):
            self.uri_text = uri
            self._uri: URI | None = None
        else:
            self.uri_text = str(uri)
            self._uri = uri

    @property
    def uri(self) -> URI:
        if self._uri is None:
            self._uri = parse_uri(self.uri_text)
        return self._uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri_text} SIP/2.0"

    def validate(self) -> None:
        uri = self.uri
        if isinstance(uri, SipURI) and uri.headers is not None:
            # RFC 3261 §19.1.1: escaped headers are not allowed in a Request-URI
            raise ParseError("headers in the Request-URI")
        Message.validate(self)
        cseq = self.cseq
        if cseq is not None and cseq.method != self.method:
            raise ParseError("CSeq method does not match the request")

    def replace(
        self,
        *,
        method: str | None = None,
        uri: str | URI | None = None,
        headers: Iterable[Header] | None = None,
        set_headers: dict[str, str | None] | None = None,
        body: bytes | None = None,
    ) -> Request:
        return Request(
            method or self.method,
            self.uri_text if uri is None else uri,
            self._derive_headers(headers, set_headers),
            self.body if body is None else body,
        )

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text} call-id={self.header('call-id')}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None,
        headers: Sequence[Header],
        body: bytes = b"",
        raw: bytes | None = None,
        index: Index | None = None,
        more: More | None = None,
    ):
        Message.__init__(self, headers, body, raw, index, more)
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def replace(
        self,
        *,
        status: int | None = None,
        reason: str | None = None,
        headers: Iterable[Header] | None = None,
        set_headers: dict[str, str | None] | None = None,
        body: bytes | None = None,
    ) -> Response:
        return Response(
            status or self.status,
            reason if reason is not None else (self.reason if status is None else None),
            self._derive_headers(headers, set_headers),
            self.body if body is None else body,
        )

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.header('call-id')}>"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Sequence[Header] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6.2: Via, From, Call-ID and CSeq copied,
    To copied with ``to_tag`` added when it has none (never for 100 Trying, §8.2.6.1).
    ``headers`` are appended (Contact, Content-Type, Allow...)."""
    index = request._index
    if index is None:
        index = request._make_index()
    values = request._all("via")
    out: list[Header] = [("Via", v) for v in values] if values else []
    value = index.get("from")
    if value is not None:
        out.append(("From", value))
    value = index.get("to")
    if value is not None:
        if to_tag is not None and status > 100:
            to = request.to
            if to is not None and not to.tag:
                value = f"{value};tag={to_tag}"
        out.append(("To", value))
    value = index.get("call-id")
    if value is not None:
        out.append(("Call-ID", value))
    value = index.get("cseq")
    if value is not None:
        out.append(("CSeq", value))
    if headers:
        out.extend(headers)
    return Response(status, reason, out, body)


__all__ += ["make_response"]


def stamp_received(request: Request, host: str, port: int) -> Request:
    """The request with ``received`` (RFC 3261 §18.2.1) and ``rport`` (RFC 3581 §4) set on its
    top Via when the sender asked for rport or wrote another address than the one it sent from,
    so that responses, which copy the Via, say where the request really came from."""
    top = request.top_via
    if top is None:
        return request
    wants_rport = top.rport == ""
    if not wants_rport and top.host.strip("[]") == host:
        return request
    params = tuple(p for p in top.params if p[0].lower() not in ("received", "rport"))
    params += (("received", host),)
    if wants_rport:
        params += (("rport", str(port)),)
    vias = [str(replace(top, params=params)), *request.values("via")[1:]]
    headers: list[Header] = []
    done = False
    for name, value in request.headers:
        if name == "Via":
            if not done:
                headers.extend(("Via", v) for v in vias)
                done = True
            continue
        headers.append((name, value))
    stamped = Request(request.method, request.uri_text, headers, request.body)
    return stamped


__all__ += ["stamp_received"]
