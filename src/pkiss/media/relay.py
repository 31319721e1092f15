"""The built-in RTP relay: per call and per media stream, one socket pair (RTP, RTCP) facing
each side; what one side sends to its pair goes out of the other pair to the other side.

Where to send is what each side's SDP says, corrected by the source of the first packet that
side sends after it (symmetric RTP: a peer behind NAT is reached where its packets come from).
Only a source on the host the SDP names, or on the host the peer signals from, is learned:
a stranger sending to a relay port is ignored.

The sockets are plain non-blocking sockets watched by the event loop (``add_reader``): setting
a stream up is synchronous, and each packet costs one ``recvfrom`` and one ``sendto``.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sdp import SdpError, parse_sdp
from .engine import MediaError

__all__ = ["BuiltinRelay"]

log = logging.getLogger("pkiss.media")

_OTHER = {"a": "b", "b": "a"}
_READ_BURST = 32  # packets read per wake-up, at most


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
        state = self.calls.pop(call, None)
        if state is None:
            return
        for stream in state.streams:
            for side in stream.values():
                for sock in (side.rtp, side.rtcp):
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
                stream[name] = self._open_pair()
        except MediaError:
            for side in stream.values():
                side.rtp.close()
                side.rtcp.close()
            raise
        for name, side in stream.items():
            peer = stream[_OTHER[name]]
            self._watch(call, side.rtp, side, peer, 0)
            self._watch(call, side.rtcp, side, peer, 1)
        return stream

    def _open_pair(self) -> _Side:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        span = self.port_max - self.port_min + 1
        for _ in range(max(span // 2, 1)):
            port = self._next
            self._next = port + 2 if port + 3 <= self.port_max else self.port_min
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
            return _Side(rtp, rtcp, port)
        raise MediaError(f"no free port pair in {self.port_min}-{self.port_max}")

    # --------------------------------------------------------------------------- packets
    def _watch(self, call: str, sock: socket.socket, side: _Side, peer: _Side,
               which: int) -> None:  # fmt: skip
        if self._add_reader is not None:
            self._add_reader(sock.fileno(), self._readable, call, sock, side, peer, which)

    def _readable(self, call: str, sock: socket.socket, side: _Side, peer: _Side,
                  which: int) -> None:  # fmt: skip
        """Packets from ``side`` (on its socket), out to the other side through ``peer``'s."""
        out = peer.rtcp if which else peer.rtp
        stats = self.stats
        forwarded = False
        for _ in range(_READ_BURST):
            try:
                data, source = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            host = source[0]
            if host not in side.hosts:
                stats["ignored"] += 1
                continue
            if not side.latched and which == 0:
                side.dest[0] = source[:2]
                side.latched = True
            elif which == 1:
                side.dest[1] = source[:2]
            dest = peer.dest[which]
            if dest is None:
                continue
            try:
                out.sendto(data, dest)
            except OSError:
                continue  # a full buffer or an unreachable port: RTP tolerates loss
            stats["packets"] += 1
            stats["bytes"] += len(data)
            forwarded = True
        if forwarded and self._clock is not None:
            state = self.calls.get(call)
            if state is not None:
                state.last_packet = self._clock()
