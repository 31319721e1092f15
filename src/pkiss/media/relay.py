"""The built-in RTP relay: per call and per media stream, one socket pair (RTP, RTCP) facing
each side; what one side sends to its pair goes out of the other pair to the other side.

Where to send is what each side's SDP says, corrected by the source of the first packet that
side sends after it (symmetric RTP: a peer behind NAT is reached where its packets come from).
Which sources are accepted is the ``learn`` setting (``media.learn``):

- ``signalled`` (the default): only a source on the host the SDP names, or on the host the
  peer signals from; a stranger sending to a relay port is ignored, always.
- ``first-packet``: as rtpengine does, the relay also latches onto the source of the first
  packet that reaches a side's ports within ``LEARN_WINDOW`` seconds of an offer or answer
  for that stream, wherever it comes from (a phone that binds RTP on the wildcard address
  sends from another address than its SDP names: baresip on loopback sends from 127.0.0.1).
  Once a side has its first packet, that source (by host) and the signalled hosts are the
  only ones accepted: after the window, a stranger is ignored again. The side whose SDP
  changes forgets what it learned and learns again. The price (RTP bleed): within the
  window, before the peer's first packet, anyone who guesses the port is taken for the peer.

RTCP goes where the side's ``a=rtcp`` says (RFC 3605), else to its RTP port + 1. When both
sides' SDP carry ``a=rtcp-mux`` (RFC 5761: offered and accepted), each sends RTCP to the RTP
port it got and the relay carries it there, RTP socket to RTP socket like the RTP itself; what
still reaches a muxed stream's RTCP socket (an offerer's RTCP sent before the answer, which
§5.1.3 allows) goes out of the other side's RTP socket too. The SDP crosses with its
``a=rtcp-mux`` untouched (sdp/session.py), so both ends mux or neither does: the relay never
has to split one side's muxed RTCP toward a side that does not mux. DTLS-SRTP's handshake
(RFC 5764 §5.1.2: told apart from RTP by its first byte, 20-63) and T.38's UDPTL packets are
relayed the same way, as the RTP they share the ports with: the relay decrypts and
rewrites none of them (it reads a muxed packet's second byte, to tell RTCP from RTP).

Plain RTCP names its sender: RFC 3550 §6.5 SDES items carry a CNAME (baresip's is its SIP
URI with its IP address, ``sip:+33987650001@127.0.3.2``), and may carry a NAME, EMAIL,
PHONE, LOC, TOOL, NOTE or PRIV; a BYE may carry a reason, free text. The relay hides them from
the other side as the SDP rewrite hides the party's address: in the compound RTCP of a stream
whose SDP protocol is ``RTP/AVP`` or ``RTP/AVPF`` (on its RTCP port, or muxed on its RTP port
and told apart by the second byte, packet types 192-223: RFC 5761 §4), each CNAME becomes a
pseudonym (RFC 7022 §4.2: 96 bits, base64, 16 characters) derived from the original with a
key of the call's own (``_Call.secret``): stable for the call, so one SSRC keeps its name and
the streams of one participant still share one (what RFC 3550 §6.5.1 has CNAME for, lip
sync), and different in every call; RtpStreamId, RepairedRtpStreamId (RFC 8852) and MID (RFC
8843), identifiers the SDP negotiated, stay; every other item goes, as does a BYE's reason.
Each chunk and packet is written back well formed: items ended by a null octet, padded to a
32-bit word, lengths counted anew, the packet's own padding dropped (§6.4, §6.5, A.2). What
does not parse as a compound RTCP packet (version 2, lengths adding up to the datagram) is
relayed as it came; so is SRTCP (``RTP/SAVP``, ``RTP/SAVPF``, ``UDP/TLS/RTP/SAVP(F)``:
encrypted and authenticated, it cannot be read and must not be changed). RTP pays nothing
for it: only a packet already known to be RTCP is read.
``stats``: ``rtcp`` RTCP packets relayed, of which ``rtcp_muxed`` came on an RTP port and
``rtcp_rewritten`` had something of their sender's taken out.

Each side's pair is of that side's address family: a call may come in over IPv6 and leave
over IPv4, its media too (the relay binds one address per family).

Each socket is read and written by a datagram endpoint of the event loop (uvloop's, in C):
the socket is bound at once (``rewrite`` is synchronous) and its endpoint opened by a task at
the loop's next turn; what arrives before waits in the socket's buffer, and what must go out
of it before goes through the socket itself. A packet costs one ``datagram_received`` call
of the port it came to: it checks the source against the side's (attribute reads, no lookup
by descriptor), latches the side on its first packet, and hands the packet to the other
side's transport. RTCP (on its own port, or muxed and told apart by its second byte) takes a
slower path of its own. A transport whose buffer fills (``pause_writing``) drops what it is
given until it drains, as a full socket would: RTP tolerates loss, not delay. Each port counts
the packets and octets it relayed in plain integers; ``stats`` adds them up, and ``idle``
notes when a call's counts last moved: a call's last packet is known to within the interval
between two ``idle`` calls (in the server, a quarter of ``media.timeout``, 0.5 to 5 s).

The pairs of an ended call go back to a pool, endpoints open, and serve later calls (after
``QUARANTINE`` other pairs, so that late packets of the old call have stopped): a call costs
no system call once the pool has warmed up. Packets to a pooled socket have no route and are
dropped (``ignored``).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ..sdp import SdpError, parse_sdp
from .engine import MediaError

__all__ = ["LEARN_WINDOW", "BuiltinRelay", "Learn", "cname_pseudonym", "private_rtcp"]

log = logging.getLogger("pkiss.media")

_OTHER = {"a": "b", "b": "a"}
QUARANTINE = 32
"""Port pairs that rest in the pool before another call gets one of them."""
LEARN_WINDOW = 3.0
"""Seconds after an offer or answer during which ``first-packet`` learns a source that was not
signalled (rtpengine's delayed learning waits as long)."""

Learn = Literal["signalled", "first-packet"]

_PLAIN_RTP = frozenset({"RTP/AVP", "RTP/AVPF"})
"""SDP protocols whose RTCP is plain (RFC 3551, RFC 4585): the relay may read and rewrite it."""
_SDES, _BYE = 202, 203  # RTCP packet types (RFC 3550 §12.1)
_CNAME = 1  # SDES item types (RFC 3550 §12.2)
_KEPT_ITEMS = frozenset({12, 13, 15})
"""SDES items that name no party and that receivers need: RtpStreamId, RepairedRtpStreamId
(RFC 8852), MID (RFC 8843): identifiers the SDP negotiated."""

_SEND_ERRORS = (OSError, ValueError, TypeError)
"""What sending to a destination an SDP named may raise (a full buffer, an unreachable or
malformed address): RTP tolerates loss, the packet is dropped."""


class _Port(asyncio.DatagramProtocol):
    """One relay socket and the protocol of its datagram endpoint: what it receives comes from
    the side its pair faces (``side``, None while pooled) and leaves through the other side's
    pair. ``transport`` is the endpoint's, None until it is open (or while its buffer is
    full): until then the port sends through its socket, and what it receives waits in the
    socket's buffer. ``packets`` and ``octets`` count what it received and relayed."""

    __slots__ = ("_transport", "closed", "octets", "opening", "packets", "paused", "relay",
                 "side", "sock", "task", "transport")  # fmt: skip

    def __init__(self, relay: BuiltinRelay, sock: socket.socket) -> None:
        self.relay = relay
        self.sock = sock
        self.side: _Side | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.task: asyncio.Task[Any] | None = None
        self.opening = False
        self.closed = False
        self.paused = False
        self.packets = 0
        self.octets = 0

    # ------------------------------------------------------------------- endpoint
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        datagrams = cast(asyncio.DatagramTransport, transport)
        self._transport = datagrams
        if self.closed:  # the relay closed while the endpoint was being opened
            datagrams.close()
        elif not self.paused:
            self.transport = datagrams

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = self._transport = None
        if not self.closed:
            log.warning("relay port %s closed: %s", self.local, exc)

    def pause_writing(self) -> None:
        """The socket's send buffer and the transport's are full: drop, as a full socket
        buffer would, rather than queue."""
        self.paused = True
        self.transport = None

    def resume_writing(self) -> None:
        self.paused = False
        self.transport = self._transport

    @property
    def local(self) -> str:
        try:
            host, port = self.sock.getsockname()[:2]
        except OSError:
            return "?"
        return f"{host}:{port}"

    def send(self, data: bytes, dest: Any) -> bool:
        """``data`` out of this port to ``dest``: False when it could not go."""
        transport = self.transport
        try:
            if transport is not None:
                transport.sendto(data, dest)
            elif self.paused or self.closed:
                return False
            else:
                self.sock.sendto(data, dest)
        except _SEND_ERRORS:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self.side = None
        if self._transport is not None:
            try:
                self._transport.close()  # and its socket, at the loop's next turn
            except RuntimeError:  # the loop is closed: nothing will run that turn
                self.sock.close()
        elif not self.opening:  # the endpoint's task has not started: it never will
            if self.task is not None:
                self.task.cancel()
            self.sock.close()
        # else: the endpoint is being opened; connection_made closes it
        self.transport = None

    def _accepts(self, side: _Side, addr: Any) -> bool:
        """Whether a packet from ``addr`` is ``side``'s (see the module)."""
        if side.peer is None or (side.replaced is not None and addr[:2] == side.replaced):
            return False
        host = addr[0]
        return host in side.hosts or host == side.learned or self.relay._learns(side, host)


class _RtpPort(_Port):
    __slots__ = ()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """A packet from one side to its RTP port: out of the other side's RTP port (the
        path every RTP packet takes: nothing but attribute reads and the send)."""
        side = self.side
        if side is None:
            self.relay.ignored += 1
            return
        peer = side.peer
        if peer is None:
            self.relay.ignored += 1
            return
        host = addr[0]
        if (
            side.replaced is not None or (host not in side.hosts and host != side.learned)
        ) and not self._accepts(side, addr):  # a stranger, the party replaced, or learned
            self.relay.ignored += 1
            return
        if not side.latched:
            side.latch(addr)
        if side.mux and len(data) > 1 and 192 <= data[1] <= 223:
            self._muxed_rtcp(side, peer, data)
            return
        dest = peer.dest[0]
        if dest is None:
            return
        out = peer.rtp
        transport = out.transport
        if transport is not None:
            try:
                transport.sendto(data, dest)
            except _SEND_ERRORS:
                return
        elif not out.send(data, dest):
            return
        self.packets += 1
        self.octets += len(data)

    def _muxed_rtcp(self, side: _Side, peer: _Side, data: bytes) -> None:
        """RTCP muxed on the RTP port (RFC 5761): out of the other side's RTP port."""
        relay = self.relay
        if side.plain:
            data = relay._private(data, side.secret)
        dest = peer.dest[0]
        if dest is None or not peer.rtp.send(data, dest):
            return
        self.packets += 1
        self.octets += len(data)
        relay.rtcp += 1
        relay.rtcp_muxed += 1


class _RtcpPort(_Port):
    __slots__ = ()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """RTCP from one side to its RTCP port: out of the other side's RTCP port, or of its
        RTP port when both sides mux."""
        side = self.side
        relay = self.relay
        if side is None or not self._accepts(side, addr):
            relay.ignored += 1
            return
        peer = side.peer
        assert peer is not None
        if side.learned is None and side.learn_until:
            side.learned = addr[0]  # a signalled host's first packet: nothing else is learned
        side.dest[1] = addr[:2]
        if side.plain:
            data = relay._private(data, side.secret)
        muxed = side.mux and peer.mux  # RFC 5761: both mux, all on RTP
        dest = peer.dest[0 if muxed else 1]
        if dest is None or not (peer.rtp if muxed else peer.rtcp).send(data, dest):
            return
        self.packets += 1
        self.octets += len(data)
        relay.rtcp += 1


_Pair = tuple[_RtpPort, _RtcpPort, int]


@dataclass(slots=True, eq=False)
class _Side:
    """The socket pair facing one side, and where that side receives."""

    rtp: _RtpPort
    rtcp: _RtcpPort
    port: int
    family: int
    call: str = ""
    name: str = ""
    peer: _Side | None = None  # the pair facing the other side of the stream, once taken
    dest: list[Any] = field(default_factory=lambda: [None, None])  # RTP, RTCP (host, port)
    hosts: tuple[str, ...] = ()  # sources this side's media may come from
    latched: bool = False
    mux: bool = False  # its SDP has a=rtcp-mux: it sends and receives RTCP on the RTP port
    learned: str | None = None  # first-packet: the host of this side's first packet
    learn_until: float = 0.0  # first-packet: a new source is learned before this time
    replaced: Any = None  # (host, port) of the party this side had before it changed hands
    plain: bool = False  # its SDP's protocol is plain RTP: its RTCP is read and rewritten
    secret: bytes = b""  # the call's key for CNAME pseudonyms (_Call.secret)
    # its ports' counters when the call took the pair (a pooled pair counted for other calls)
    base_packets: int = 0
    base_octets: int = 0

    def latch(self, addr: Any) -> None:
        """This side's first RTP packet since its SDP: its media goes back where it came
        from (symmetric RTP)."""
        if self.learned is None and self.learn_until:
            self.learned = addr[0]  # a signalled host's first packet: nothing else is learned
        self.dest[0] = addr[:2]
        self.latched = True


_Agreed = tuple[list[Any], tuple[str, ...], bool, bool, str | None, float, Any, bool]
"""What an offer changes in a side (``dest``, ``hosts``, ``mux``, ``latched``, ``learned``,
``learn_until``, ``replaced``, ``plain``), kept until the offer is answered."""


def _agreed(side: _Side) -> _Agreed:
    return (list(side.dest), side.hosts, side.mux, side.latched, side.learned, side.learn_until,
            side.replaced, side.plain)  # fmt: skip


@dataclass(slots=True)
class _Call:
    streams: list[dict[str, _Side]] = field(default_factory=list)
    # side -> its streams as they were before its offer still unanswered (rollback)
    offered: dict[str, list[_Agreed | None]] = field(default_factory=dict)
    last_packet: float | None = None
    started: float = 0.0
    seen: int = 0  # its ports' packet counters, added up, when idle() last looked
    # the key of this call's CNAME pseudonyms: nothing links them to another call's
    secret: bytes = field(default_factory=lambda: os.urandom(16))


def _family(host: str) -> int:
    return 6 if ":" in host else 4


class BuiltinRelay:
    def __init__(
        self,
        host: str,
        ports: tuple[int, int],
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        clock: Callable[[], float] | None = None,
        host6: str | None = None,
        learn: Learn = "signalled",
    ) -> None:
        """``loop``: the event loop whose datagram endpoints read the relay's sockets (None,
        or a loop that opens none: the sockets are bound, and nobody reads them). ``clock``
        (default: ``loop.time``, else ``time.monotonic``) must count in the time of the
        ``now`` given to ``rewrite``; ``learn``: which sources are accepted (see the module)."""
        if learn not in ("signalled", "first-packet"):
            raise ValueError(f"learn must be signalled or first-packet, not {learn!r}")
        self.learn = learn
        self.hosts = {_family(host): host}
        if host6 is not None:
            self.hosts[6] = host6
        self.host = host
        self.port_min = ports[0] + ports[0] % 2  # RTP on even ports (RFC 3550 §11)
        self.port_max = ports[1]
        self._next = {4: self.port_min, 6: self.port_min}
        self._loop = loop if hasattr(loop, "create_datagram_endpoint") else None
        self._clock = clock or (loop.time if loop is not None else time.monotonic)
        self.calls: dict[str, _Call] = {}
        # counters of the rarer events; packets and bytes are counted by each port
        self.ignored = self.learned = self.rtcp = self.rtcp_muxed = self.rtcp_rewritten = 0
        self._closed_counts = [0, 0]  # packets, bytes of the ports closed
        self._ports: list[_Port] = []  # every port bound: in calls or pooled
        # socket fd -> its port, for the ports of calls in progress
        self._routes: dict[int, _Port] = {}
        # pairs of ended calls per family, endpoints open, oldest first
        self._free: dict[int, deque[_Pair]] = {4: deque(), 6: deque()}
        self._bound: dict[int, set[int]] = {4: set(), 6: set()}

    @property
    def stats(self) -> dict[str, int]:
        """``packets`` and ``bytes`` relayed (RTP and RTCP), ``ignored`` (from no side's
        source, or to a pooled port), ``learned`` (first-packet), ``rtcp``, ``rtcp_muxed``,
        ``rtcp_rewritten`` (see the module)."""
        packets, octets = self._closed_counts
        for port in self._ports:
            packets += port.packets
            octets += port.octets
        return {"packets": packets, "bytes": octets, "ignored": self.ignored,
                "learned": self.learned, "rtcp": self.rtcp, "rtcp_muxed": self.rtcp_muxed,
                "rtcp_rewritten": self.rtcp_rewritten}  # fmt: skip

    # ------------------------------------------------------------------------ signalling
    def rewrite(self, call: str, side: str, body: bytes, address: str, peer_host: str,
                now: float, kind: str = "offer") -> bytes:  # fmt: skip
        """(offers and answers are rewritten alike: each tells where its side receives)"""
        session = parse_sdp(body)
        state = self.calls.get(call)
        if state is None:
            state = self.calls[call] = _Call(started=now)
        other = _OTHER[side]
        if kind == "offer":
            state.offered[side] = [_agreed(s[side]) if side in s else None for s in state.streams]
        else:
            state.offered.pop(other, None)  # the other side's offer is answered
        ports: list[int | None] = []
        for index, media in enumerate(session.media):
            if index == len(state.streams):
                state.streams.append({})
            stream = state.streams[index]
            if media.port == 0:
                if side in stream:
                    stream[side].dest = [None, None]
                ports.append(None)
                continue
            conn = session.connection_for(media)
            if conn is None:
                raise SdpError(f"m={media.kind} has no c= line")
            host = conn[1]
            mine = self._side(call, stream, side, _family(host))
            theirs = self._side(call, stream, other, _family(address))
            rtcp = media.rtcp()
            rtcp_dest = (host, media.port + 1)
            if rtcp is not None:  # JSEP's placeholder "9 IN IP4 0.0.0.0" names no address
                rtcp_dest = (host if rtcp[1] in (None, "0.0.0.0", "::") else rtcp[1], rtcp[0])
            hosts = tuple(dict.fromkeys((host, peer_host)))
            if mine.hosts and not set(hosts) & set(mine.hosts):
                # another party on this side (a transfer): the media the one before still
                # sends, until it hears its BYE, must not be taken for the new one's
                mine.replaced = mine.dest[0]  # where it sent from, or else its SDP said
            mine.dest = [(host, media.port), rtcp_dest]
            mine.mux = media.muxed
            mine.plain = media.proto.upper() in _PLAIN_RTP
            mine.hosts = hosts
            mine.latched = False
            if self.learn == "first-packet":
                # both ends may start sending now: the offerer once it has the answer
                mine.learned = None
                mine.learn_until = theirs.learn_until = now + LEARN_WINDOW
            ports.append(theirs.port)
        return bytes(session.rewrite(address, ports))

    def rollback(self, call: str, side: str) -> None:
        """``side``'s last offer was refused: its streams send where they did before."""
        state = self.calls.get(call)
        before = state.offered.pop(side, None) if state is not None else None
        if state is None or before is None:
            return
        for stream, agreed in zip(state.streams, before, strict=False):
            if agreed is not None and side in stream:
                mine = stream[side]
                (mine.dest, mine.hosts, mine.mux, mine.latched, mine.learned, mine.learn_until,
                 mine.replaced, mine.plain) = agreed  # fmt: skip

    @property
    def sockets(self) -> int:
        """Sockets the relay holds: two per port pair it bound, in calls or pooled."""
        return 2 * sum(len(ports) for ports in self._bound.values())

    def release(self, call: str) -> None:
        """The call's port pairs go back to the pool, endpoints open: a packet that still
        comes to them finds no route and is dropped."""
        state = self.calls.pop(call, None)
        if state is None:
            return
        for stream in state.streams:
            for side in stream.values():
                side.peer = None
                for port in (side.rtp, side.rtcp):
                    port.side = None
                    self._routes.pop(port.sock.fileno(), None)
                self._free[side.family].append((side.rtp, side.rtcp, side.port))

    def counts(self, call: str) -> tuple[int, int, int, int] | None:
        """Packets and bytes (RTP and RTCP) relayed for ``call`` from side "a", then from side
        "b"; None for a call the relay does not hold. A few additions per stream: read once,
        when the call ends."""
        state = self.calls.get(call)
        if state is None:
            return None
        counts = [0, 0, 0, 0]
        for stream in state.streams:
            for name, side in stream.items():
                i = 0 if name == "a" else 2
                counts[i] += side.rtp.packets + side.rtcp.packets - side.base_packets
                counts[i + 1] += side.rtp.octets + side.rtcp.octets - side.base_octets
        return counts[0], counts[1], counts[2], counts[3]

    def close(self) -> None:
        """Stop: every socket of the pool and of the calls is closed (an endpoint's socket
        once the loop has run the endpoint's closing)."""
        for key in list(self.calls):
            self.release(key)
        for free in self._free.values():
            while free:
                rtp, rtcp, _ = free.popleft()
                for port in (rtp, rtcp):
                    self._closed_counts[0] += port.packets
                    self._closed_counts[1] += port.octets
                    port.close()
        self._ports.clear()
        for bound in self._bound.values():
            bound.clear()

    def idle(self, now: float, timeout: float) -> list[str]:
        """(a call's last packet is known to within the interval between two calls of
        ``idle``: the ports count packets, ``idle`` notes when a call's counts moved)"""
        found = []
        for key, state in self.calls.items():
            count = 0
            for stream in state.streams:
                for side in stream.values():
                    count += side.rtp.packets + side.rtcp.packets
            if count != state.seen:
                state.seen = count
                state.last_packet = now
            last = state.last_packet if state.last_packet is not None else state.started
            if now - last >= timeout:
                found.append(key)
        return found

    # ----------------------------------------------------------------------------- ports
    def _side(self, call: str, stream: dict[str, _Side], name: str, family: int) -> _Side:
        """The pair of ``stream`` facing side ``name``, taken on first need."""
        side = stream.get(name)
        if side is not None:
            return side
        side = stream[name] = self._take_pair(family)
        state = self.calls[call]
        side.secret = state.secret
        side.call, side.name = call, name
        side.base_packets = side.rtp.packets + side.rtcp.packets
        side.base_octets = side.rtp.octets + side.rtcp.octets
        peer = stream.get(_OTHER[name])
        if peer is not None:
            side.peer, peer.peer = peer, side
        for port in (side.rtp, side.rtcp):
            port.side = side
            self._routes[port.sock.fileno()] = port
            state.seen += port.packets  # what the pair relayed before is not this call's
        return side

    def _take_pair(self, family: int) -> _Side:
        """A pair from the pool when enough wait there (the oldest first: stray packets of
        the call that had it have had time to stop), else a new one; the pool again when
        no port is left to bind."""
        free = self._free[family]
        if len(free) > QUARANTINE:
            return _Side(*free.popleft(), family)
        try:
            return self._bind_pair(family)
        except MediaError:
            if free:
                return _Side(*free.popleft(), family)
            raise

    def _bind_pair(self, family: int) -> _Side:
        host = self.hosts.get(family)
        if host is None:
            raise MediaError(f"no IPv{family} address to relay media on (sbc.listen)")
        af = socket.AF_INET6 if family == 6 else socket.AF_INET
        bound = self._bound[family]
        span = self.port_max - self.port_min + 1
        for _ in range(max(span // 2, 1)):
            port = self._next[family]
            self._next[family] = port + 2 if port + 3 <= self.port_max else self.port_min
            if port in bound:
                continue
            rtp = socket.socket(af, socket.SOCK_DGRAM)
            rtcp = socket.socket(af, socket.SOCK_DGRAM)
            try:
                rtp.bind((host, port))
                rtcp.bind((host, port + 1))
            except OSError as exc:
                rtp.close()
                rtcp.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise MediaError(f"cannot bind {host}:{port}: {exc.strerror}") from None
            rtp.setblocking(False)
            rtcp.setblocking(False)
            bound.add(port)
            pair = _RtpPort(self, rtp), _RtcpPort(self, rtcp)
            for one in pair:
                self._ports.append(one)
                self._open(one)
            return _Side(*pair, port, family)
        raise MediaError(f"no free port pair in {self.port_min}-{self.port_max}")

    def _open(self, port: _Port) -> None:
        """Give ``port`` its datagram endpoint (a task: the loop opens it at its next turn;
        packets wait in the socket's buffer until then)."""
        loop = self._loop
        if loop is None:
            return

        async def opening() -> None:
            port.opening = True
            try:
                await loop.create_datagram_endpoint(lambda: port, sock=port.sock)
            except Exception as exc:  # the socket stays, unread: its packets are lost
                port.opening = False
                log.error("relay port %s: no endpoint: %s", port.local, exc)
                if port.closed:
                    port.sock.close()
            finally:
                port.task = None

        port.task = loop.create_task(opening())

    # --------------------------------------------------------------------------- packets
    def _private(self, data: bytes, secret: bytes) -> bytes:
        """A plain RTCP packet with nothing of its sender's left (see the module)."""
        out = private_rtcp(data, secret)
        if out is not data:
            self.rtcp_rewritten += 1
        return out

    def _learns(self, side: _Side, host: str) -> bool:
        """first-packet: whether ``host``, not signalled, is taken as this side's source (its
        first packet, within the window)."""
        if side.learned is not None or not side.learn_until:
            return False
        if self._clock() >= side.learn_until:
            return False
        side.learned = host
        self.learned += 1
        log.debug("call %s: side %s's media learned from %s (signalled: %s)", side.call,
                  side.name, host, ", ".join(side.hosts))  # fmt: skip
        return True


# ------------------------------------------------------------------------------- RTCP


def cname_pseudonym(secret: bytes, cname: bytes) -> bytes:
    """The CNAME that stands for ``cname`` in a call keyed ``secret``: 96 bits, base64, 16
    characters (RFC 7022 §4.2's random CNAME), a keyed hash of the original, so that the same
    original always gets the same pseudonym within the call and nothing links two calls."""
    return base64.b64encode(hashlib.blake2b(cname, digest_size=12, key=secret).digest())


def private_rtcp(data: bytes, secret: bytes) -> bytes:
    """The compound RTCP packet ``data`` with its SDES items and BYE reasons rewritten (see
    the module); ``data`` itself when it has none, or when it does not parse as RTCP (RFC
    3550 §6.1, A.2: version 2 in every packet, lengths adding up to the datagram, padding on
    the last packet only)."""
    size = len(data)
    offset = 0
    pieces: list[bytes] = []
    changed = False
    while offset < size:
        if size - offset < 4:
            return data
        first = data[offset]
        if first >> 6 != 2:
            return data
        end = offset + (int.from_bytes(data[offset + 2 : offset + 4], "big") + 1) * 4
        if end > size:
            return data
        stop = end
        if first & 0x20:  # padded: the last octet counts the padding (§6.4.1)
            pad = data[end - 1]
            if end != size or pad == 0 or pad > end - offset - 4:
                return data
            stop = end - pad
        kind = data[offset + 1]
        new: bytes | None = None
        if kind == _SDES:
            new = _private_sdes(data, offset, stop, first & 0x1F, secret)
        elif kind == _BYE:
            new = _private_bye(data, offset, stop, first & 0x1F)
        else:
            pieces.append(data[offset:end])
            offset = end
            continue
        if new is None:
            return data
        pieces.append(new)
        changed = changed or new != data[offset:end]
        offset = end
    return b"".join(pieces) if changed else data


def _private_sdes(data: bytes, start: int, stop: int, count: int, secret: bytes) -> bytes | None:
    """An SDES packet (RFC 3550 §6.5) anew: each chunk's SSRC/CSRC, its CNAME as a pseudonym,
    the items of ``_KEPT_ITEMS``, a null octet and nulls to the next 32-bit word; no padding.
    None when it does not parse."""
    out = bytearray(4)
    pos = start + 4
    for _ in range(count):
        if pos + 4 > stop:
            return None
        out += data[pos : pos + 4]
        pos += 4
        while True:
            if pos >= stop:
                return None
            item = data[pos]
            if item == 0:
                break
            if pos + 2 > stop:
                return None
            item_end = pos + 2 + data[pos + 1]
            if item_end > stop:
                return None
            if item == _CNAME:
                name = cname_pseudonym(secret, data[pos + 2 : item_end])
                out += bytes((_CNAME, len(name)))
                out += name
            elif item in _KEPT_ITEMS:
                out += data[pos:item_end]
            pos = item_end
        pos = start + ((pos - start) // 4 + 1) * 4  # past the null and the chunk's padding
        if pos > stop:
            return None
        out += bytes(4 - len(out) % 4)  # one null octet at least, to a 32-bit word
    out[0:4] = bytes((0x80 | count, _SDES)) + (len(out) // 4 - 1).to_bytes(2, "big")
    return bytes(out)


def _private_bye(data: bytes, start: int, stop: int, count: int) -> bytes | None:
    """A BYE packet (RFC 3550 §6.6) with its SSRC/CSRC list and without its reason, whatever
    text that held; None when the list overruns the packet."""
    listed = start + 4 + 4 * count
    if listed > stop:
        return None
    if listed == stop and not data[start] & 0x20:
        return data[start:stop]  # no reason, no padding: as it came
    return bytes((0x80 | count, _BYE)) + count.to_bytes(2, "big") + data[start + 4 : listed]
