"""SDP (RFC 4566/8866) as the SBC needs it: a session description read into lines it can
rewrite, every line it does not touch kept as it came.

Only the lines that carry addresses are interpreted: ``o=`` (origin), ``c=`` (connection, at
session or media level), ``m=`` (media: port) and ``a=rtcp:`` (RFC 3605); ``a=rtcp-mux`` is
read, not changed.

RTCP multiplexing (RFC 5761): a side that offers or accepts ``a=rtcp-mux`` sends its RTCP to
the RTP port it got and receives it on its own. The attribute crosses as it came, both ways,
so that the two ends agree with each other and with the relay, which carries the muxed RTCP
on the RTP port pair (``Media.muxed``). ``a=rtcp`` names the relay: its RTCP port (RTP port
+ 1), or its RTP port when a muxing side's own ``a=rtcp`` named its RTP port (RFC 5761
§5.1.3, RFC 8858 §4: an answer accepting the mux, ``rtcp-mux-only``, rtpengine's answers,
WebRTC's placeholder port 9); without ``a=rtcp`` none is added (RFC 3605's default, port
+ 1, is where the relay listens).

Other media than RTP cross alike: ``m=image <port> udptl t38`` (T.38 fax, ITU-T T.38 Annex D)
gets the relay's port and keeps its ``a=T38Fax...`` attributes; DTLS-SRTP's
``UDP/TLS/RTP/SAVP`` with ``a=fingerprint`` and ``a=setup`` (RFC 5763, RFC 8842) keeps them,
the relay carrying the DTLS handshake on the media ports like any packet.

What the other side of a relayed call sees reveals nothing of the first side (its addresses,
users or software); what media needs passes untouched. Dropped (``_TYPES``, ``_DROPPED``):

- the ICE attributes (RFC 8839: ``candidate``, ``remote-candidates``, ``ice-*``...): they
  describe paths around the relay, with the host's own addresses;
- ``i=``, ``u=``, ``e=``, ``p=`` (session or media title, URI, e-mail, phone: RFC 8866
  §5.4-5.6 describe them as the originator's) and ``k=`` (obsolete, RFC 8866 §5.12);
  lines of a type RFC 8866 does not define, which its parsers must ignore anyway (§5);
- ``a=tool`` (names the software and its version, RFC 8866 §6.3);
- ``a=ssrc``, ``a=ssrc-group`` (RFC 5576), ``a=msid``, ``a=msid-semantic`` (RFC 8830): the CNAME
  there is the sender's RTCP name, which phones fill with their SIP URI and address (baresip:
  ``cname:sip:+33987650001@127.0.6.1``), and stream ids are stable identifiers of the endpoint.
  They are dropped rather than given an opaque value: all are optional hints (RFC 5576: a
  receiver learns SSRCs and CNAMEs from the media itself; RFC 8830 with JSEP, RFC 8829: without
  ``msid`` a receiver puts the tracks in a default stream), and a made-up CNAME would contradict
  the one in the sender's RTCP. A relay that does not terminate RTCP cannot do better than the
  sender's own SDES; SRTCP hides it on the wire. (rtpengine 10.5 passes all four through;
  Kamailio's topos does not touch bodies; B2BUAs that write their own SDP, such as Asterisk or
  FreeSWITCH, do not copy the other side's.)
- ``a=identity`` (RFC 8827: an identity assertion naming the user), ``a=altc`` (RFC
  6947: alternative addresses), ``a=path`` (MSRP, RFC 4975: a URI with the host's address).

Kept because media needs them end to end: ``a=rtpmap``, ``a=fmtp``, ``a=rtcp-fb``, directions,
``a=crypto`` and ``a=fingerprint`` with ``a=setup`` (SDES and DTLS-SRTP keys must reach the
other endpoint: the relay does not terminate SRTP), ``a=mid`` and ``a=group`` (BUNDLE),
``a=extmap``, ``a=rtcp-mux``, ``a=ptime``; and ``a=label`` (RFC 4574): a token other lines
refer a stream by, as ``a=mid``, not a name of the sender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ASCII digits, at most five: str.isdigit() takes "²" and thousands of digits, which int()
# refuses with ValueError (found by fuzzing the receive path)
_PORT = re.compile(r"[0-9]{1,5}\Z")

__all__ = ["Media", "SdpError", "Session", "parse_sdp"]

_ICE = ("candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd",
        "ice-options", "ice-lite", "ice-mismatch", "ice-pacing")  # fmt: skip
_DROPPED = frozenset((*_ICE, "tool", "ssrc", "ssrc-group", "msid", "msid-semantic", "identity",
                      "altc", "path"))  # fmt: skip
"""Attributes (names compared in lower case) that never cross to the other side."""
_TYPES = frozenset("vosctbrzam")
"""Line types that cross: RFC 8866's, less i= u= e= p= k=."""


def _kept(key: str, value: str) -> bool:
    if key not in _TYPES:
        return False
    return key != "a" or value.split(":", 1)[0].strip().lower() not in _DROPPED


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

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` (``""`` for a flag such as ``a=rtcp-mux``), None
        when absent; names compare in lower case."""
        for key, value in self.lines:
            if key == "a":
                found, colon, rest = value.partition(":")
                if found.strip().lower() == name:
                    return rest.strip() if colon else ""
        return None

    @property
    def muxed(self) -> bool:
        """Whether the stream offers or accepts RTCP on the RTP port (RFC 5761 ``a=rtcp-mux``,
        or RFC 8858's ``a=rtcp-mux-only``, which comes with it or stands for it)."""
        return self.attribute("rtcp-mux") is not None or self.attribute("rtcp-mux-only") is not None

    def rtcp(self) -> tuple[int, str | None] | None:
        """Where this stream's RTCP goes by ``a=rtcp`` (RFC 3605): (port, address or None for
        the stream's own); None without one, or one that does not read."""
        value = self.attribute("rtcp")
        if not value:
            return None
        parts = value.split()
        if not _PORT.match(parts[0]) or int(parts[0]) > 65535:
            return None
        address = parts[3].split("/")[0] if len(parts) == 4 and parts[1] == "IN" else None
        return int(parts[0]), address


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
        ``-``), s= is ``-``, ``a=rtcp`` names port + 1, or the port itself when it named the
        RTP port (RTCP muxed; a disabled stream's ``a=rtcp`` is dropped), and what would
        reveal the other side is dropped (see the module)."""
        family = "IP6" if ":" in address else "IP4"
        lines: list[tuple[str, str]] = []
        for key, value in self.lines:
            if not _kept(key, value):
                continue
            if key == "o":
                parts = value.split()
                if len(parts) != 6:
                    raise SdpError(f"bad o= line: {value!r}")
                value = f"- {parts[1]} {parts[2]} IN {family} {address}"
            elif key == "s":
                value = "-"  # a session name may tell the other side's software
            elif key == "c":
                value = f"IN {family} {address}"
            lines.append((key, value))
        media: list[Media] = []
        for m, port in zip(self.media, ports, strict=True):
            port = port or 0
            mlines: list[tuple[str, str]] = []
            for key, value in m.lines:
                if not _kept(key, value):
                    continue
                if key == "c":
                    value = f"IN {family} {address}"
                elif key == "a" and value.split(":", 1)[0].strip().lower() == "rtcp":
                    if not port:
                        continue
                    rtcp = m.rtcp()
                    on_rtp = m.muxed and rtcp is not None and rtcp[0] == m.port
                    value = f"rtcp:{port if on_rtp else port + 1} IN {family} {address}"
                mlines.append((key, value))
            media.append(Media(m.kind, port, m.count if port else "", m.proto, m.formats, mlines))
        return Session(lines, media)

    def scrubbed(self) -> Session:
        """A copy with ``s=-``, the origin's user name ``-`` and nothing that would reveal the
        other side (see the module), addresses untouched: for an SDP another relay (rtpengine)
        has already pointed at itself."""
        lines: list[tuple[str, str]] = []
        for key, value in self.lines:
            if not _kept(key, value):
                continue
            if key == "s":
                value = "-"
            elif key == "o" and " " in value:
                value = "- " + value.split(" ", 1)[1]
            lines.append((key, value))
        media = [Media(m.kind, m.port, m.count, m.proto, m.formats,
                       [(k, v) for k, v in m.lines if _kept(k, v)])
                 for m in self.media]  # fmt: skip
        return Session(lines, media)

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
            if not _PORT.match(port_text) or int(port_text) > 65535:
                raise SdpError(f"bad port in m= line: {value!r}")
            media.append(Media(parts[0], int(port_text), f"/{count}" if count else "",
                               parts[2], parts[3] if len(parts) > 3 else ""))  # fmt: skip
        elif media:
            media[-1].lines.append((key, value))
        else:
            session.append((key, value))
    return Session(session, media)
