"""Bytes to messages: one datagram at a time, or a byte stream framed by Content-Length.

RFC 3261 §7: a start line, header fields ending with an empty line, then a body whose length
is given by Content-Length. Over UDP the body is the rest of the datagram when Content-Length is
absent, and octets beyond it are ignored (§18.3). Over a stream Content-Length is mandatory and
a framing error (no, negative, conflicting Content-Length) is fatal to the connection.

Everything is decoded as Latin-1, so the bytes of a header we copy round-trip exactly, UTF-8
included. Every problem raises ``ParseError``; nothing else escapes (fuzzed in the tests).
"""

from __future__ import annotations

import re

from .errors import ParseError
from .headers import canonical_name
from .message import Header, Index, Message, More, Request, Response

Head = tuple[str, list[Header], Index, More | None]

__all__ = ["DEFAULT_MAX_SIZE", "StreamParser", "parse_datagram", "parse_head"]

DEFAULT_MAX_SIZE = 65535
_FOLD = re.compile(r"\r\n[ \t]+")
_STATUS = re.compile(r"[0-9]{3}\Z")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_TOO_LONG = 10**10  # a Content-Length longer than any message we take
# Methods seen every day, tokens without a regular expression to check them.
_METHODS = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
     "MESSAGE", "REFER", "NOTIFY", "SUBSCRIBE", "PUBLISH")
)  # fmt: skip


def _content_length(index: Index, more: More | None) -> int | None:
    """The body length; ``ParseError`` if it is not 1*DIGIT or two values differ (RFC 4475
    §3.3.9: conflicting values are a framing error)."""
    found = index.get("content-length")
    if found is None:
        return None
    if more is not None and "content-length" in more:
        for value in more["content-length"]:
            if value != found:
                raise ParseError("conflicting Content-Length")
    if len(found) <= 10 and found.isdigit() and found.isascii():
        return int(found)  # the common case: a few ASCII digits
    if not _DIGITS.match(found):
        raise ParseError("bad Content-Length")
    digits = found.lstrip("0")
    # More than 10 digits is more than any max_size: say so without int() of thousands of
    # digits (ValueError past sys.get_int_max_str_digits()).
    return int(digits or "0") if len(digits) <= 10 else _TOO_LONG


# Header name as written -> (canonical name, lower-case key of the index). Bounded in count
# and size: header names are attacker-controlled.
_NAMES: dict[str, tuple[str, str]] = {}


def _name(written: str) -> tuple[str, str]:
    canon = canonical_name(written.rstrip(" \t"))
    entry = (canon, canon.lower())
    if len(_NAMES) < 2048 and len(written) <= 64:
        _NAMES[written] = entry
    return entry


def parse_head(head: bytes) -> tuple[str, list[Header]]:
    """Split a message head (without the final empty line) into its start line and headers."""
    start, headers, _, _ = _parse_head(head)
    return start, headers


def _parse_head(head: bytes) -> Head:
    """The start line, the headers and their values by lower-case name."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    rest = "".join(lines)  # one copy, then two scans in C, rather than counting CRs and LFs
    if "\r" in rest or "\n" in rest:
        raise ParseError("bare CR or LF in header section")
    found = _read_lines(lines, False)
    if found is None:
        # §7.3.1: line folding is white space. Seldom seen: looked for only when a line
        # starts with white space or has no colon (which a continuation may bring).
        found = _read_lines(_FOLD.sub(" ", text).split("\r\n"), True)
        assert found is not None
    return found


def _read_lines(lines: list[str], unfolded: bool) -> Head | None:
    """The start line, headers and index of a head split into lines. Before ``unfolded``,
    None for a line that continues the one before or has no colon: the caller unfolds the
    head and calls again."""
    headers: list[Header] = []
    append = headers.append
    index: Index = {}
    more: More | None = None
    names = _NAMES
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        entry = names.get(name) if colon else None
        if entry is None:
            if not colon:
                if unfolded:
                    raise ParseError("header line without a colon")
                return None
            if not unfolded and (line[:1] == " " or line[:1] == "\t"):
                return None
            entry = _name(name)
        value = value.strip(" \t")
        append((entry[0], value))
        key = entry[1]
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
    return lines[0], headers, index, more


def _build(start: str, headers: list[Header], index: Index, more: More | None, body: bytes,
           raw: bytes) -> Message:  # fmt: skip
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if parts[0] != "SIP/2.0" and parts[0].upper() != "SIP/2.0":
            raise ParseError("unsupported SIP version")
        if len(parts) < 2 or not _STATUS.match(parts[1]):
            raise ParseError("bad status code")
        status = int(parts[1])
        if status < 100 or status > 699:
            raise ParseError("bad status code")
        reason = parts[2] if len(parts) > 2 else ""
        msg: Message = Response(status, reason, headers, body, raw, index, more)
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ParseError("bad request line")
        method, uri, version = parts
        if method not in _METHODS and not _TOKEN.match(method):
            raise ParseError("bad method")
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            if version[:4].upper() == "SIP/":
                raise ParseError("SIP version not supported", 505)
            raise ParseError("bad request line")
        msg = Request(method, uri, headers, body, raw, index, more)
    msg.validate()
    return msg


def parse_datagram(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Message:
    """Parse one UDP datagram (RFC 3261 §18.3). Raises ``ParseError``."""
    if len(data) > max_size:
        raise ParseError("message too large", 513)
    start = 0
    while data.startswith(b"\r\n", start):  # §7.5: ignore CRLFs before the start line
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise ParseError("no end of header section")
    start_line, headers, index, more = _parse_head(data[start:end])
    length = _content_length(index, more)
    body_at = end + 4
    if length is None:
        body = data[body_at:]
    else:
        if body_at + length > len(data):
            raise ParseError("Content-Length larger than the message")
        body = data[body_at : body_at + length]
    raw = data if start == 0 and (length is None or body_at + length == len(data)) else None
    if raw is None:
        raw = data[start : body_at + len(body)]
    return _build(start_line, headers, index, more, body, raw)


class StreamParser:
    """Frames messages out of a byte stream (TCP, TLS) by Content-Length.

    ``feed(data)`` returns the complete messages now available. A ``ParseError`` from a
    framing problem leaves the stream unusable: the caller closes the connection. A head or a
    message larger than ``max_size`` is a framing error too (no slow-loris growth)."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        # The head's end is not in buf[:_scanned], so feeding byte by byte stays linear.
        self._scanned = 0
        # A head already parsed, waiting for its body: (body offset, length, the head).
        self._head: tuple[int, int, Head] | None = None
        self._error: ParseError | None = None

    def feed(self, data: bytes) -> list[Message | ParseError]:
        """Messages framed so far; a message that frames but does not parse is returned as its
        ``ParseError`` (the stream stays usable). Raises ``ParseError`` on a framing error:
        at once if no message came before it, else on the next call (``feed(b"")`` will do),
        so the messages framed before the error are not lost. Every later call raises it."""
        if self._error is not None:
            raise self._error
        out: list[Message | ParseError] = []
        try:
            self._frame(data, out)
        except ParseError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def _frame(self, data: bytes, out: list[Message | ParseError]) -> None:
        buf = self._buf
        buf += data
        while True:
            if self._head is None:
                if self._scanned == 0:
                    # keep-alive CRLFs between messages (RFC 5626 §3.5.1)
                    start = 0
                    n = len(buf)
                    while start < n and buf[start] in (13, 10):
                        start += 1
                    if start:
                        del buf[:start]
                if not buf:
                    return
                end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if end < 0:
                    if len(buf) > self.max_size:
                        raise ParseError("header section too large", 513)
                    self._scanned = len(buf)
                    return
                head = _parse_head(bytes(buf[:end]))
                length = _content_length(head[2], head[3])
                if length is None:
                    # RFC 3261 §18.3: Content-Length MUST be used with stream transports
                    raise ParseError("no Content-Length on a stream")
                if end + 4 + length > self.max_size:
                    raise ParseError("message too large", 513)
                self._head = (end + 4, length, head)
            body_at, length, (start_line, headers, index, more) = self._head
            total = body_at + length
            if len(buf) < total:
                return
            raw = bytes(buf[:total])
            del buf[:total]
            self._head = None
            self._scanned = 0
            try:
                out.append(_build(start_line, headers, index, more, raw[body_at:], raw))
            except ParseError as exc:
                out.append(exc)
