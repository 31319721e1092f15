"""TCP and TLS: a listening socket plus connections both ways, framed by Content-Length.

TLS (RFC 3261 §26.2.1, RFC 5630) is the same transport with an SSL context on each side: the
listening socket's for connections peers open, the client one for connections the SBC opens.

Connections are kept by remote address and reused for anything sent there (RFC 3261 §18.1.1
and §18.2.2: responses go back on the connection the request came on). Outbound connections
are opened on demand; what is sent while one is being opened waits for it. An idle connection is
closed after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import cast

from ..sip.errors import ParseError
from ..sip.message import Message
from ..sip.parser import StreamParser
from ..sip.transaction import Addr

__all__ = ["TcpTransport"]

log = logging.getLogger("pkiss.transport")

MessageSink = Callable[[Message | ParseError, Addr], None]


class _Connection(asyncio.Protocol):
    def __init__(self, owner: TcpTransport, remote: Addr | None = None) -> None:
        self.owner = owner
        self.remote = remote
        self.transport: asyncio.Transport | None = None
        self.parser = StreamParser(owner.max_size)
        self.pending: list[bytes] = []
        self.last_used = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.remote is None:
            peer = transport.get_extra_info("peername")
            self.remote = Addr(self.owner.name, str(peer[0]).split("%", 1)[0], int(peer[1]))
        self.owner._register(self)
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.remote is not None
        self.last_used = asyncio.get_running_loop().time()
        try:
            items = self.parser.feed(data)
        except ParseError as exc:
            self._close(exc)
            return
        for item in items:
            self.owner.sink(item, self.remote)
        if items:
            try:  # a framing error after good messages is raised on the next feed
                self.parser.feed(b"")
            except ParseError as exc:
                self._close(exc)

    def _close(self, exc: ParseError) -> None:
        log.info("closing tcp %s: %s", self.remote, exc.reason)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._unregister(self)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        else:
            self.last_used = asyncio.get_running_loop().time()
            self.transport.write(data)


class TcpTransport:
    def __init__(
        self, host: str, port: int, sink: MessageSink, max_size: int = 65535,
        idle_timeout: float = 600.0, *, name: str = "tcp",
        server_ssl: ssl.SSLContext | None = None, client_ssl: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.host = host
        self.port = port
        self.sink = sink
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[tuple[str, int], _Connection] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True,
            ssl=self.server_ssl,
        )  # fmt: skip
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _register(self, conn: _Connection) -> None:
        assert conn.remote is not None
        self._connections[(conn.remote.host, conn.remote.port)] = conn

    def _unregister(self, conn: _Connection) -> None:
        if conn.remote is not None:
            key = (conn.remote.host, conn.remote.port)
            if self._connections.get(key) is conn:
                del self._connections[key]

    def send(self, data: bytes, dest: Addr) -> None:
        key = (dest.host, dest.port)
        conn = self._connections.get(key)
        if conn is None:
            conn = _Connection(self, Addr(self.name, dest.host, dest.port))
            self._connections[key] = conn
            asyncio.get_running_loop().create_task(self._connect(conn, dest))
        conn.write(data)

    async def _connect(self, conn: _Connection, dest: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.client_ssl is None:
                await loop.create_connection(lambda: conn, dest.host, dest.port)
            else:
                await loop.create_connection(
                    lambda: conn, dest.host, dest.port, ssl=self.client_ssl,
                    server_hostname=dest.host,
                )  # fmt: skip
        except (OSError, ssl.SSLError) as exc:
            log.info("%s connect to %s failed: %s", self.name, dest, exc)
            self._unregister(conn)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._connections.clear()
