"""The built-in RTP relay: per call and per media stream, one socket pair (RTP, RTCP) facing
each side; what one side sends to its pair goes out of the other pair to the other side.

Where to send is what each side's SDP says, corrected by the source of the first packet that
side sends after it (symmetric RTP: a peer behind NAT is reached where its packets come from).
Only a source on the host the SDP names, or on the host the peer signals from, is learned:
a stranger sending to a relay port is ignored.

The sockets are plain non-blocking sockets watched by the event loop (``add_reader``) from the
moment they are bound: each packet costs one ``recvfrom`` and one ``sendto``. The pairs of an
ended call go back to a pool, open and watched, and serve later calls (after ``QUARANTINE``
other pairs, so that late packets of the old call have stopped): a call costs no system call
once the pool has warmed up. Packets to a pooled socket have no route and are dropped.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sdp import SdpError, parse_sdp
from .engine import MediaError

__all__ = ["BuiltinRelay"]

log = logging.getLogger("pkiss.media")

_OTHER = {"a": "b", "b": "a"}
_READ_BURST = 32  # packets read per wake-up, at most
QUARANTINE = 32
"""Port pairs that rest in the pool before another call gets one of them."""


@dataclass(slots=True)
class _Side:
    """The socket pair facing one side, and where that side receives."""

    rtp: socket.socket
    rtcp: socket.socket
    port: int
    dest: list[Any] = field(default_factory=lambda: [None, None])  # RTP, RTCP (host, port)
    hosts: tuple[str, ...] = ()  # sources this side's media may come from
    latched: bool = False


@dataclass(slots=True)
class _Call:
    streams: list[dict[str, _Side]] = field(default_factory=list)
    last_packet: float | None = None
    started: float = 0.0


class BuiltinRelay:
    def __init__(
        self,
        host: str,
        ports: tuple[int, int],
        add_reader: Callable[..., Any] | None = None,
        remove_reader: Callable[[int], Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.host = host
        self.port_min = ports[0] + ports[0] % 2  # RTP on even ports (RFC 3550 §11)
        self.port_max = ports[1]
        self._next = self.port_min
        self._add_reader = add_reader
        self._remove_reader = remove_reader
        self._clock = clock
        self.calls: dict[str, _Call] = {}
        self.stats = {"packets": 0, "bytes": 0, "ignored": 0}
        # socket fd -> (call, the side it faces, the other side, 0 RTP / 1 RTCP)
        self._routes: dict[int, tuple[str, _Side, _Side, int]] = {}
        # pairs of ended calls, sockets open and watched, oldest first
        self._free: deque[tuple[socket.socket, socket.socket, int]] = deque()
        self._bound: set[int] = set()

    # ------------------------------------------------------------------------ signalling
    def rewrite(self, call: str, side: str, body: bytes, address: str, peer_host: str,
                now: float, kind: str = "offer") -> bytes:  # fmt: skip
        """(offers and answers are rewritten alike: each tells where its side receives)"""
        session = parse_sdp(body)
        state = self.calls.get(call)
        if state is None:
            state = self.calls[call] = _Call(started=now)
        other = _OTHER[side]
        ports: list[int | None] = []
        for index, media in enumerate(session.media):
            if index == len(state.streams):
                state.streams.append(self._open_stream(call))
            stream = state.streams[index]
            mine = stream[side]
            if media.port == 0:
                mine.dest = [None, None]
                ports.append(None)
                continue
            conn = session.connection_for(media)
            if conn is None:
                raise SdpError(f"m={media.kind} has no c= line")
            host = conn[1]
            mine.dest = [(host, media.port), (host, media.port + 1)]
            mine.hosts = tuple(dict.fromkeys((host, peer_host)))
            mine.latched = False
            ports.append(stream[other].port)
        return bytes(session.rewrite(address, ports))

    def release(self, call: str) -> None:
        """The call's port pairs go back to the pool, sockets open and watched: a packet that
        still comes to them finds no route and is dropped."""
        state = self.calls.pop(call, None)
        if state is None:
            return
        for stream in state.streams:
            for side in stream.values():
                for sock in (side.rtp, side.rtcp):
                    self._routes.pop(sock.fileno(), None)
                self._free.append((side.rtp, side.rtcp, side.port))

    def close(self) -> None:
        """Stop: every socket of the pool and of the calls is closed."""
        for key in list(self.calls):
            self.release(key)
        while self._free:
            rtp, rtcp, _ = self._free.popleft()
            for sock in (rtp, rtcp):
                if self._remove_reader is not None:
                    self._remove_reader(sock.fileno())
                sock.close()

    def idle(self, now: float, timeout: float) -> list[str]:
        return [key for key, state in self.calls.items()
                if now - (state.last_packet if state.last_packet is not None else state.started)
                >= timeout]  # fmt: skip

    # ----------------------------------------------------------------------------- ports
    def _open_stream(self, call: str) -> dict[str, _Side]:
        stream: dict[str, _Side] = {}
        try:
            for name in ("a", "b"):
                stream[name] = self._take_pair()
        except MediaError:
            for side in stream.values():
                self._free.appendleft((side.rtp, side.rtcp, side.port))
            raise
        for name, side in stream.items():
            peer = stream[_OTHER[name]]
            self._routes[side.rtp.fileno()] = (call, side, peer, 0)
            self._routes[side.rtcp.fileno()] = (call, side, peer, 1)
        return stream

    def _take_pair(self) -> _Side:
        """A pair from the pool when enough wait there (the oldest first: stray packets of
        the call that had it have had time to stop), else a new one; the pool again when
        no port is left to bind."""
        if len(self._free) > QUARANTINE:
            return _Side(*self._free.popleft())
        try:
            return self._bind_pair()
        except MediaError:
            if self._free:
                return _Side(*self._free.popleft())
            raise

    def _bind_pair(self) -> _Side:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        span = self.port_max - self.port_min + 1
        for _ in range(max(span // 2, 1)):
            port = self._next
            self._next = port + 2 if port + 3 <= self.port_max else self.port_min
            if port in self._bound:
                continue
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((self.host, port))
                rtcp.bind((self.host, port + 1))
            except OSError as exc:
                rtp.close()
                rtcp.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise MediaError(f"cannot bind {self.host}:{port}: {exc.strerror}") from None
            rtp.setblocking(False)
            rtcp.setblocking(False)
            self._bound.add(port)
            if self._add_reader is not None:
                for sock in (rtp, rtcp):
                    self._add_reader(sock.fileno(), self._readable, sock)
            return _Side(rtp, rtcp, port)
        raise MediaError(f"no free port pair in {self.port_min}-{self.port_max}")

    # --------------------------------------------------------------------------- packets
    def _readable(self, sock: socket.socket) -> None:
        """Packets from one side (on its socket), out to the other side through the other
        side's socket of the same kind; nothing routed (a pooled socket): dropped."""
        stats = self.stats
        route = self._routes.get(sock.fileno())
        forwarded = False
        for _ in range(_READ_BURST):
            try:
                data, source = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if route is None:
                stats["ignored"] += 1
                continue
            _, side, peer, which = route
            if source[0] not in side.hosts:
                stats["ignored"] += 1
                continue
            if which == 0:
                if not side.latched:
                    side.dest[0] = source[:2]
                    side.latched = True
            else:
                side.dest[1] = source[:2]
            dest = peer.dest[which]
            if dest is None:
                continue
            try:
                (peer.rtcp if which else peer.rtp).sendto(data, dest)
            except OSError:
                continue  # a full buffer or an unreachable port: RTP tolerates loss
            stats["packets"] += 1
            stats["bytes"] += len(data)
            forwarded = True
        if forwarded and self._clock is not None and route is not None:
            state = self.calls.get(route[0])
            if state is not None:
                state.last_packet = self._clock()
