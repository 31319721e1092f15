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
from .message import Header, Message, Request, Response

__all__ = ["DEFAULT_MAX_SIZE", "StreamParser", "parse_datagram", "parse_head"]

DEFAULT_MAX_SIZE = 65535
_FOLD = re.compile(r"\r\n[ \t]+")
_STATUS = re.compile(r"[0-9]{3}\Z")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_DIGITS = re.compile(r"[0-9]+\Z")


def _content_length(headers: list[Header]) -> int | None:
    found: str | None = None
    for name, value in headers:
        if name == "Content-Length":
            if found is not None and value != found:
                raise ParseError("conflicting Content-Length")
            found = value
    if found is None:
        return None
    if not _DIGITS.match(found):
        raise ParseError("bad Content-Length")
    return int(found)


def parse_head(head: bytes) -> tuple[str, list[Header]]:
    """Split a message head (without the final empty line) into its start line and headers."""
    text = head.decode("latin-1")
    crlf = text.count("\r\n")
    if text.count("\n") != crlf or text.count("\r") != crlf:
        raise ParseError("bare CR or LF in header section")
    if "\r\n " in text or "\r\n\t" in text:
        text = _FOLD.sub(" ", text)  # §7.3.1: line folding is white space
    lines = text.split("\r\n")
    headers: list[Header] = []
    append = headers.append
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ParseError("header line without a colon")
        append((canonical_name(name.rstrip(" \t")), value.strip(" \t")))
    return lines[0], headers


def _build(start: str, headers: list[Header], body: bytes, raw: bytes) -> Message:
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if parts[0].upper() != "SIP/2.0":
            raise ParseError("unsupported SIP version")
        if len(parts) < 2 or not _STATUS.match(parts[1]):
            raise ParseError("bad status code")
        status = int(parts[1])
        if status < 100 or status > 699:
            raise ParseError("bad status code")
        msg: Message = Response(status, parts[2] if len(parts) > 2 else "", headers, body, raw)
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ParseError("bad request line")
        method, uri, version = parts
        if not _TOKEN.match(method):
            raise ParseError("bad method")
        if version.upper() != "SIP/2.0":
            if version[:4].upper() == "SIP/":
                raise ParseError("SIP version not supported", 505)
            raise ParseError("bad request line")
        msg = Request(method, uri, headers, body, raw)
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
    start_line, headers = parse_head(data[start:end])
    length = _content_length(headers)
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
    return _build(start_line, headers, body, raw)


class StreamParser:
    """Frames messages out of a byte stream (TCP, TLS) by Content-Length.

    ``feed(data)`` returns the complete messages now available. A ``ParseError`` from a
    framing problem leaves the stream unusable: the caller closes the connection. A head or a
    message larger than ``max_size`` is a framing error too (no slow-loris growth)."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message | ParseError]:
        """Messages framed so far; a message that frames but does not parse is returned as its
        ``ParseError`` (the stream stays usable). Raises ``ParseError`` on a framing error."""
        buf = self._buf
        buf += data
        out: list[Message | ParseError] = []
        while True:
            start = 0
            n = len(buf)
            while start < n and buf[start] in (13, 10):  # keep-alive CRLFs (RFC 5626 §3.5.1)
                start += 1
            if start:
                del buf[:start]
            if not buf:
                return out
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_size:
                    raise ParseError("header section too large", 513)
                return out
            head = bytes(buf[:end])
            try:
                start_line, headers = parse_head(head)
                length = _content_length(headers)
            except ParseError:
                raise
            if length is None:
                raise ParseError("no Content-Length on a stream")
            total = end + 4 + length
            if total > self.max_size:
                raise ParseError("message too large", 513)
            if len(buf) < total:
                return out
            raw = bytes(buf[:total])
            del buf[:total]
            try:
                out.append(_build(start_line, headers, raw[end + 4 :], raw))
            except ParseError as exc:
                out.append(exc)
