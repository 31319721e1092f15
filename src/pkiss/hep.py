"""HEP export (``trace.hep``): every traced SIP message, as a HEPv3 packet, to a Homer or
heplify collector (or ``sngrep -L``), over UDP. Both legs of a call carry the same correlation
id (the caller's Call-ID), so the collector shows them as one call.

HEPv3 (the HEP/EEP protocol, version 3): ``HEP3``, the packet's length, then chunks of
(vendor 0, type, length including the 6-byte chunk header, value).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct

from .trace import TraceMessage

__all__ = ["HepSender", "encode"]

log = logging.getLogger("pkiss.hep")

_FAMILY, _PROTO, _SRC4, _DST4, _SRC6, _DST6 = 1, 2, 3, 4, 5, 6
_SPORT, _DPORT, _SECS, _USECS, _TYPE, _AGENT, _PAYLOAD, _CORRELATION = 7, 8, 9, 10, 11, 12, 15, 17
_SIP = 1


def _chunk(kind: int, value: bytes) -> bytes:
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value


def encode(m: TraceMessage, correlation: str, agent: int = 0) -> bytes:
    """``m`` as one HEPv3 packet."""
    src, dst = ipaddress.ip_address(m.src[0]), ipaddress.ip_address(m.dst[0])
    v6 = src.version == 6 or dst.version == 6
    if v6:
        addresses = _chunk(_SRC6, _as_v6(src).packed) + _chunk(_DST6, _as_v6(dst).packed)
    else:
        addresses = _chunk(_SRC4, src.packed) + _chunk(_DST4, dst.packed)
    secs = int(m.at)
    body = b"".join((
        _chunk(_FAMILY, bytes([10 if v6 else 2])),
        _chunk(_PROTO, bytes([17 if m.transport == "udp" else 6])),
        addresses,
        _chunk(_SPORT, struct.pack("!H", m.src[1])),
        _chunk(_DPORT, struct.pack("!H", m.dst[1])),
        _chunk(_SECS, struct.pack("!I", secs)),
        _chunk(_USECS, struct.pack("!I", int((m.at - secs) * 1e6))),
        _chunk(_TYPE, bytes([_SIP])),
        _chunk(_AGENT, struct.pack("!I", agent)),
        _chunk(_CORRELATION, correlation.encode("utf-8", "replace")),
        _chunk(_PAYLOAD, m.data),
    ))  # fmt: skip
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


def _as_v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)


class HepSender:
    """Sends to one collector from a non-blocking UDP socket: a full socket buffer drops the
    packet (counted), it never waits."""

    def __init__(self, host: str, port: int, agent: int = 0) -> None:
        self.dest = (host, port)
        self.agent = agent
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.sent = 0
        self.failed = 0

    def __call__(self, m: TraceMessage, correlation: str) -> None:
        try:
            self._sock.sendto(encode(m, correlation, self.agent), self.dest)
            self.sent += 1
        except OSError as exc:  # full buffer, collector unreachable (ICMP): not the call's
            self.failed += 1
            if self.failed in (1, 1000, 100_000):
                log.warning("HEP to %s:%d failing (%d so far): %s", *self.dest, self.failed, exc)

    def close(self) -> None:
        self._sock.close()
