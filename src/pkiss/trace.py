"""Call trace: every SIP message of a call, both legs, as it crossed the wire, for the calls in
progress and the last ``keep`` ended ones (``admin.trace``), with the time, direction,
transport and addresses of each. Read as JSON or as a pcap (``pcap``) that Wireshark and
``sngrep -I`` open.

Bounded: a call keeps at most ``messages`` messages (the rest are counted), the ended calls
``keep`` of them (oldest out), and the Call-IDs not (yet) known as a call's (an OPTIONS probe, a
REGISTER, an INVITE refused before a call was made) ``pending`` buffers (oldest out). What the
node drops before admission (strangers, scanners) is never traced.

Pure: the engine says what crossed (``message``), the B2BUA which Call-IDs make one call
(``link``) and when it ended (``end``); no clock, no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallTrace", "TraceMessage", "Tracer", "pcap"]


@dataclass(frozen=True, slots=True)
class TraceMessage:
    at: float  # Unix time
    direction: str  # "in" (to the node) or "out"
    transport: str  # udp, tcp, tls
    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 6),
            "direction": self.direction,
            "transport": self.transport,
            "src": f"{_host(self.src[0])}:{self.src[1]}",
            "dst": f"{_host(self.dst[0])}:{self.dst[1]}",
            "first_line": self.data.split(b"\r\n", 1)[0].decode("utf-8", "replace"),
            "message": self.data.decode("utf-8", "replace"),
        }


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(slots=True)
class CallTrace:
    """One call: its legs' Call-IDs (the caller's first) and their messages, in order."""

    call_ids: list[str]
    messages: list[TraceMessage] = field(default_factory=list)
    truncated: int = 0  # messages beyond the cap, not kept
    ended: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_ids": list(self.call_ids),
            "ended": self.ended,
            "truncated": self.truncated,
            "messages": [m.as_dict() for m in self.messages],
        }


class Tracer:
    def __init__(self, keep: int = 1000, messages: int = 200, pending: int = 10_000) -> None:
        self.keep = keep
        self.messages = messages
        self.pending = pending
        self.export: Callable[[TraceMessage, str], None] | None = None
        """Told of every message with its call's correlation id (``trace.hep``)."""
        self._calls: dict[str, CallTrace] = {}  # any leg's Call-ID -> its call's trace
        self._ended: dict[str, CallTrace] = {}  # first Call-ID -> trace, oldest first
        self._pending: dict[str, CallTrace] = {}  # Call-IDs of no call (yet), oldest first

    def message(self, call_id: str | None, at: float, direction: str, transport: str,
                src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:  # fmt: skip
        if not call_id:
            return
        trace = self._calls.get(call_id)
        if trace is None:
            trace = self._pending.get(call_id)
            if trace is None:
                trace = self._pending[call_id] = CallTrace([call_id])
                if len(self._pending) > self.pending:
                    del self._pending[next(iter(self._pending))]
        message = TraceMessage(at, direction, transport, src, dst, data)
        if self.export is not None:
            self.export(message, trace.call_ids[0])
        if len(trace.messages) >= self.messages:
            trace.truncated += 1
            return
        trace.messages.append(message)

    def link(self, call_id: str, leg_call_id: str) -> None:
        """``leg_call_id`` (a callee-side leg) belongs to the call of ``call_id``."""
        trace = self._calls.get(call_id)
        if trace is None:
            trace = self._pending.pop(call_id, None) or CallTrace([call_id])
            self._calls[call_id] = trace
        if leg_call_id in trace.call_ids:
            return
        trace.call_ids.append(leg_call_id)
        self._calls[leg_call_id] = trace
        leg = self._pending.pop(leg_call_id, None)
        if leg is not None:
            trace.messages.extend(leg.messages[: max(0, self.messages - len(trace.messages))])
            trace.messages.sort(key=lambda m: m.at)

    def end(self, call_id: str) -> None:
        """The call of ``call_id`` is over: its trace joins the last ``keep`` ended ones (a
        message that still comes, a retransmission or the ACK of a final answer, joins it)."""
        trace = self._calls.get(call_id) or self._pending.pop(call_id, None)
        if trace is None or trace.ended:
            return
        trace.ended = True
        first = trace.call_ids[0]
        for cid in trace.call_ids:
            self._calls[cid] = trace
        self._ended[first] = trace
        while len(self._ended) > self.keep:
            old = self._ended.pop(next(iter(self._ended)))
            for cid in old.call_ids:
                if self._calls.get(cid) is old:
                    del self._calls[cid]

    def find(self, call_id: str) -> CallTrace | None:
        """The trace holding ``call_id``, either leg's."""
        return self._calls.get(call_id) or self._pending.get(call_id)

    def ended(self) -> Iterable[CallTrace]:
        """The ended calls kept, newest first."""
        return reversed(list(self._ended.values()))

    def search(self, text: str, limit: int = 50) -> list[CallTrace]:
        """Calls (newest first, in progress and ended) whose Call-ID, or a number in one of
        their messages' first lines and From/To, contains ``text``."""
        seen: list[CallTrace] = []
        ids: set[int] = set()
        needle = text.encode("utf-8", "replace")
        for trace in reversed(list(self._calls.values())):
            if id(trace) in ids:
                continue
            ids.add(id(trace))
            if any(text in cid for cid in trace.call_ids) or _mentions(trace, needle):
                seen.append(trace)
                if len(seen) >= limit:
                    break
        return seen


_NAMED = (b"from:", b"to:", b"f:", b"t:")


def _mentions(trace: CallTrace, needle: bytes) -> bool:
    """Whether the start line or From/To of one of the call's first messages (each leg's
    INVITE and its first answers: where the numbers are) holds ``needle``."""
    for m in trace.messages[:8]:
        lines = m.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if needle in lines[0]:
            return True
        for line in lines[1:]:
            if line[:5].lower().replace(b" ", b"").startswith(_NAMED) and needle in line:
                return True
    return False


# ------------------------------------------------------------------------------------ pcap
_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101)  # ns, LINKTYPE_RAW


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _packet(m: TraceMessage, seq: dict[tuple[Any, ...], int]) -> bytes:
    src, dst = ipaddress.ip_address(m.src[0]), ipaddress.ip_address(m.dst[0])
    if m.transport == "udp":
        proto = 17
        length = 8 + len(m.data)
        header = struct.pack("!HHHH", m.src[1], m.dst[1], length, 0)
    else:  # TCP and TLS: the SIP as it was inside the stream, one segment a message
        proto = 6
        flow = (m.src, m.dst)
        number = seq.get(flow, 1)
        seq[flow] = number + len(m.data)
        header = struct.pack("!HHIIBBHHH", m.src[1], m.dst[1], number & 0xFFFFFFFF, 0,
                             5 << 4, 0x18, 65535, 0, 0)  # fmt: skip
        length = len(header) + len(m.data)
    if src.version == 4 and dst.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    else:
        pseudo = _v6(src).packed + _v6(dst).packed + struct.pack("!IxxxB", length, proto)
    check = _checksum(pseudo + header + m.data) or 0xFFFF
    if proto == 17:
        header = header[:6] + struct.pack("!H", check)
    else:
        header = header[:16] + struct.pack("!H", check) + header[18:]
    segment = header + m.data
    if src.version == 4 and dst.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0, 0x4000, 64, proto, 0,
                         src.packed, dst.packed)  # fmt: skip
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(segment), proto, 64,
                         _v6(src).packed, _v6(dst).packed)  # fmt: skip
    return ip + segment


def _v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)


def pcap(messages: Iterable[TraceMessage]) -> bytes:
    """The messages as a pcap file (nanosecond stamps, raw IP: UDP datagrams, TCP segments)."""
    out = [_PCAP_HEADER]
    seq: dict[tuple[Any, ...], int] = {}
    for m in messages:
        packet = _packet(m, seq)
        secs = int(m.at)
        out.append(struct.pack("<IIII", secs, int((m.at - secs) * 1e9), len(packet), len(packet)))
        out.append(packet)
    return b"".join(out)
