"""multipart/* bodies (RFC 2046 §5.1), as SIP-I carriers send SDP beside ISUP (RFC 3204):
split into parts that keep their headers and bytes, and joined back with the same boundary.
Bytes in, bytes out: a part's body is never decoded."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ParseError

__all__ = ["Part", "boundary_of", "join_parts", "split_parts"]

_BOUNDARY = re.compile(r';\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.I)


@dataclass(frozen=True, slots=True)
class Part:
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def content_type(self) -> str:
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value.split(";", 1)[0].strip().lower()
        return "text/plain"  # RFC 2046 §5.1: the default of a part


def boundary_of(content_type: str) -> str | None:
    """The boundary of a ``multipart/...`` Content-Type, None for any other type."""
    if not content_type.lower().lstrip().startswith("multipart/"):
        return None
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise ParseError("multipart Content-Type without a boundary")
    return found.group(1) or found.group(2)


def split_parts(body: bytes, boundary: str) -> list[Part]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise ParseError("multipart body without its parts")
    parts: list[Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter: the epilogue follows
        if not chunk.startswith(b"\r\n"):
            raise ParseError("multipart delimiter not followed by CRLF")
        chunk = chunk[2:]
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]  # the CRLF belongs to the next delimiter
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            if chunk.startswith(b"\r\n"):  # a part with no headers
                head, payload = b"", chunk[2:]
            else:
                raise ParseError("multipart part without a blank line")
        headers: list[tuple[str, str]] = []
        for line in head.decode("utf-8", "replace").split("\r\n") if head else []:
            name, colon, value = line.partition(":")
            if not colon:
                raise ParseError("bad header in a multipart part")
            headers.append((name.strip(), value.strip()))
        parts.append(Part(tuple(headers), payload))
    else:
        raise ParseError("multipart body without its close delimiter")
    return parts


def join_parts(parts: list[Part], boundary: str) -> bytes:
    out = bytearray()
    for part in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        for name, value in part.headers:
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + part.body + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return bytes(out)
