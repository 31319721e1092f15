"""UDP endpoint: one socket per listen address."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable

from ..sip.transaction import Addr

__all__ = ["UdpTransport"]

log = logging.getLogger("pkiss.transport")

_SO_MEMINFO = 55  # Linux: sk_meminfo, [0] bytes in the receive queue, [1] its size

DatagramSink = Callable[[bytes, Addr], None]
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, sink: DatagramSink) -> None:
        self.sink = sink

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        host = str(addr[0])
        if "%" in host:  # IPv6 zone index
            host = host.split("%", 1)[0]
        self.sink(data, Addr("udp", host, int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction layer times out on its own
        log.debug("udp error: %s", exc)


class UdpTransport:
    """A bound UDP socket. ``send`` never blocks; a full socket buffer drops the datagram
    (UDP retransmissions of the transaction layer cover it)."""

    def __init__(self, host: str, port: int, sink: DatagramSink) -> None:
        self.host = host
        self.port = port
        self._sink = sink
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._sink), local_addr=(self.host, self.port)
        )
        self._transport = transport
        sock = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:  # bursts must wait in the kernel, not be dropped (capped by net.core.*mem_max)
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            except OSError:  # pragma: no cover - a platform that refuses: keep its default
                pass
        self.port = int(transport.get_extra_info("sockname")[1])

    def backlog(self) -> float:
        """How full the socket's receive queue is (0 to 1): datagrams the node has not read
        yet (Linux ``SO_MEMINFO``; 0 where the platform does not tell)."""
        if self._transport is None:
            return 0.0
        sock = self._transport.get_extra_info("socket")
        try:
            info = struct.unpack("9I", sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 36))
        except (OSError, struct.error):
            return 0.0
        return info[0] / info[1] if info[1] else 0.0

    def send(self, data: bytes, dest: Addr) -> None:
        if self._transport is not None:
            self._transport.sendto(data, (dest.host, dest.port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
