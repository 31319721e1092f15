"""SDP (RFC 4566/8866) as the SBC needs it: a session description read into lines it can
rewrite, every line it does not touch kept as it came.

Only the lines that carry addresses are interpreted: ``o=`` (origin), ``c=`` (connection, at
session or media level), ``m=`` (media: port), ``a=rtcp:`` (RFC 3605) and the ICE attributes
(RFC 8839), which a relay must remove because they describe paths around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Media", "SdpError", "Session", "parse_sdp"]

_ICE = ("candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd",
        "ice-options", "ice-lite", "ice-mismatch", "ice-pacing")  # fmt: skip


class SdpError(ValueError):
    """The body is not a session description the SBC can rewrite (answered 488 or 400)."""


@dataclass(slots=True)
class Media:
    """One ``m=`` section: its header fields and the lines under it, in order."""

    kind: str
    port: int
    count: str  # "/2" when the m= line gives a number of ports, else ""
    proto: str
    formats: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    def connection(self) -> str | None:
        for key, value in self.lines:
            if key == "c":
                return value
        return None


@dataclass(slots=True)
class Session:
    lines: list[tuple[str, str]]
    """Session-level lines (``v=`` first), in order."""
    media: list[Media]

    def connection_for(self, media: Media) -> tuple[str, str] | None:
        """(address type, address) where ``media`` is received: its own ``c=``, else the
        session's."""
        value = media.connection()
        if value is None:
            value = next((v for k, v in self.lines if k == "c"), None)
        if value is None:
            return None
        parts = value.split()
        if len(parts) != 3 or parts[0] != "IN":
            raise SdpError(f"bad c= line: {value!r}")
        return parts[1], parts[2].split("/")[0]

    def rewrite(self, address: str, ports: list[int | None]) -> Session:
        """A copy that receives media at ``address``: ``ports[i]`` for the i-th ``m=`` (None
        or 0 keeps a disabled stream at port 0); o= and c= carry ``address`` (o= with user
        ``-``), s= is ``-``, RTCP goes to port + 1, ICE attributes are dropped."""
        family = "IP6" if ":" in address else "IP4"
        lines: list[tuple[str, str]] = []
        for key, value in self.lines:
            if key == "o":
                parts = value.split()
                if len(parts) != 6:
                    raise SdpError(f"bad o= line: {value!r}")
                value = f"- {parts[1]} {parts[2]} IN {family} {address}"
            elif key == "s":
                value = "-"  # a session name may tell the other side's software
            elif key == "c":
                value = f"IN {family} {address}"
            elif key == "a" and value.split(":", 1)[0] in _ICE:
                continue
            lines.append((key, value))
        media: list[Media] = []
        for m, port in zip(self.media, ports, strict=True):
            port = port or 0
            mlines: list[tuple[str, str]] = []
            for key, value in m.lines:
                if key == "c":
                    value = f"IN {family} {address}"
                elif key == "a":
                    name = value.split(":", 1)[0]
                    if name in _ICE:
                        continue
                    if name == "rtcp" and port:
                        value = f"rtcp:{port + 1} IN {family} {address}"
                mlines.append((key, value))
            media.append(Media(m.kind, port, m.count if port else "", m.proto, m.formats, mlines))
        return Session(lines, media)

    def scrubbed(self) -> Session:
        """A copy with ``s=-`` and the origin's user name ``-``: both may tell the other
        side's software or users."""
        lines: list[tuple[str, str]] = []
        for key, value in self.lines:
            if key == "s":
                value = "-"
            elif key == "o" and " " in value:
                value = "- " + value.split(" ", 1)[1]
            lines.append((key, value))
        return Session(lines, self.media)

    def __bytes__(self) -> bytes:
        out = [f"{k}={v}" for k, v in self.lines]
        for m in self.media:
            out.append(f"m={m.kind} {m.port}{m.count} {m.proto} {m.formats}".rstrip())
            out.extend(f"{k}={v}" for k, v in m.lines)
        return ("\r\n".join(out) + "\r\n").encode()


def parse_sdp(body: bytes) -> Session:
    """Read a session description; SdpError when it is not one (RFC 8866 §5: ``v=0`` first,
    ``<type>=<value>`` lines, CRLF or LF)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("not UTF-8") from None
    raw = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not raw or raw[0].strip() != "v=0":
        raise SdpError("does not start with v=0")
    session: list[tuple[str, str]] = []
    media: list[Media] = []
    for line in raw:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"bad line: {line[:40]!r}")
        key, value = line[0], line[2:].rstrip()
        if key == "m":
            parts = value.split(" ", 3)
            if len(parts) < 3:
                raise SdpError(f"bad m= line: {value!r}")
            port_text, _, count = parts[1].partition("/")
            if not port_text.isdigit() or int(port_text) > 65535:
                raise SdpError(f"bad port in m= line: {value!r}")
            media.append(Media(parts[0], int(port_text), f"/{count}" if count else "",
                               parts[2], parts[3] if len(parts) > 3 else ""))  # fmt: skip
        elif media:
            media[-1].lines.append((key, value))
        else:
            session.append((key, value))
    return Session(session, media)
