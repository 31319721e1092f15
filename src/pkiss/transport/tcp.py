"""TCP and TLS: a listening socket plus connections both ways, framed by Content-Length.

TLS (RFC 3261 §26.2.1, RFC 5630) is the same transport with an SSL context on each side: the
listening socket's for connections peers open, the client one for connections the SBC opens.

Connections are kept by remote address and reused for anything sent there (RFC 3261 §18.1.1
and §18.2.2: responses go back on the connection the request came on). Outbound connections
are opened on demand; what is sent while one is being opened waits for it.

Inbound connections are accepted here, not by the event loop's server, so that each one is
judged on its source address before anything is read from it or any TLS handshake starts
(``ConnectionGate.open``: closed at once, or held and counted). A held connection has
``tls_handshake`` seconds to finish its handshake, then ``first_message`` seconds to deliver
a complete message, and is closed after ``idle`` seconds without a message either way (CRLF
keep-alives do not count) (``security.connections``). When the system has no descriptor left
for ``accept``, the listener stops watching its socket for a second at a time (the kernel
keeps the pending connections in its backlog) and says so once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

from ..security.connections import ConnectionGate
from ..sip.errors import ParseError
from ..sip.message import Message
from ..sip.parser import StreamParser
from ..sip.transaction import Addr

__all__ = ["TcpTransport"]

log = logging.getLogger("pkiss.transport")

MessageSink = Callable[[Message | ParseError, Addr], None]

BACKLOG = 1024
"""Connections the kernel completes and queues before the node accepts them."""
ACCEPT_BURST = 64
"""Connections accepted per wake-up, at most: the rest of the loop gets its turn."""
ACCEPT_RETRY = 1.0
"""Seconds a listener out of descriptors waits before it tries ``accept`` again."""
_EXHAUSTED = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class _Connection(asyncio.Protocol):
    def __init__(self, owner: TcpTransport, remote: Addr | None = None,
                 inbound: bool = False) -> None:  # fmt: skip
        self.owner = owner
        self.remote = remote
        self.inbound = inbound
        self.transport: asyncio.Transport | None = None
        self.parser = StreamParser(owner.max_size)
        self.pending: list[bytes] = []
        self.last_used = 0.0
        self.task: asyncio.Task[None] | None = None  # an inbound one, until it is set up
        self.handed = False  # its socket is the event loop's (being set up)
        self.shut_early = False  # shut before its socket was handed over
        self.timer: asyncio.TimerHandle | None = None  # first message, then idle
        self.spoke = False  # a complete message came

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.remote is None:
            peer = transport.get_extra_info("peername")
            self.remote = Addr(self.owner.name, str(peer[0]).split("%", 1)[0], int(peer[1]))
        self.owner._register(self)
        loop = asyncio.get_running_loop()
        self.last_used = loop.time()
        if self.inbound and self.owner.gate is not None:
            wait = self.owner.gate.config.first_message
            self.timer = loop.call_later(wait, self._expire, "first_message")
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.remote is not None
        try:
            items = self.parser.feed(data)
        except ParseError as exc:
            self._close(exc)
            return
        if items:
            self.last_used = asyncio.get_running_loop().time()
            if not self.spoke:
                self._spoke()
        for item in items:
            self.owner.sink(item, self.remote)
        if items:
            try:  # a framing error after good messages is raised on the next feed
                self.parser.feed(b"")
            except ParseError as exc:
                self._close(exc)

    def _spoke(self) -> None:
        """The first complete message: the first-message deadline gives way to idleness."""
        self.spoke = True
        gate = self.owner.gate
        if self.inbound and gate is not None:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(gate.config.idle, self._idle)

    def _idle(self) -> None:
        gate = self.owner.gate
        assert gate is not None
        loop = asyncio.get_running_loop()
        due = self.last_used + gate.config.idle
        if loop.time() >= due:
            self._expire("idle")
        else:
            self.timer = loop.call_at(due, self._idle)

    def _expire(self, reason: str) -> None:
        self.timer = None
        log.info("closing %s %s: %s", self.owner.name, self.remote, reason.replace("_", " "))
        self.owner.close_inbound(self, reason)

    def _close(self, exc: ParseError) -> None:
        log.info("closing %s %s: %s", self.owner.name, self.remote, exc.reason)
        if self.inbound:
            self.owner.close_inbound(self, "malformed")
        elif self.transport is not None:
            self.transport.close()

    def shut(self) -> None:
        """Close now: abort the transport, or stop the handshake still under way."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()
        elif self.task is not None:
            if self.handed:  # the loop closes the socket when its set-up is cancelled
                self.task.cancel()
            else:  # the task has not run yet: it closes the socket itself
                self.shut_early = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
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
        gate: ConnectionGate | None = None, *, name: str = "tcp",
        server_ssl: ssl.SSLContext | None = None, client_ssl: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        """``gate``: the node's verdict on inbound connections and their deadlines; without
        one, every connection is held for as long as its peer keeps it."""
        self.name = name
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.host = host
        self.port = port
        self.sink = sink
        self.max_size = max_size
        self.gate = gate
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: dict[tuple[str, int], _Connection] = {}
        self._inbound: set[_Connection] = set()
        self.outbound = 0

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.create_server((self.host, self.port), family=family, backlog=BACKLOG)
        listener.setblocking(False)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        loop.add_reader(listener.fileno(), self._accept)

    # ----------------------------------------------------------------------------- inbound
    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        for _ in range(ACCEPT_BURST):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause(exc)
                else:
                    log.warning("%s accept failed: %s", self.name, exc)
                return
            self._take(sock, peer)

    def _pause(self, exc: OSError) -> None:
        """No descriptor left: stop watching the listening socket (it stays readable, so
        watching it would spin), and look again in ``ACCEPT_RETRY`` seconds."""
        assert self._loop is not None and self._listener is not None
        if self.gate is not None:
            self.gate.exhausted(f"{self.name}:{self.host}:{self.port}", exc, self._loop.time())
        else:
            log.error("%s listener cannot accept: %s", self.name, exc)
        self._loop.remove_reader(self._listener.fileno())
        self._loop.call_later(ACCEPT_RETRY, self._resume)

    def _resume(self) -> None:
        if self._listener is not None and self._loop is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _take(self, sock: socket.socket, peer: tuple[str | int, ...]) -> None:
        """One accepted socket: judged by the gate on its source, closed or set up."""
        assert self._loop is not None
        host = str(peer[0]).split("%", 1)[0]
        conn = _Connection(self, Addr(self.name, host, int(peer[1])), inbound=True)
        if self.gate is not None and self.gate.open(conn, host, self._loop.time()) is not None:
            sock.close()
            return
        sock.setblocking(False)
        self._inbound.add(conn)
        conn.task = self._loop.create_task(self._set_up(conn, sock))

    async def _set_up(self, conn: _Connection, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        if conn.shut_early:
            sock.close()
            conn.task = None
            self._forget(conn)
            return
        conn.handed = True
        try:
            if self.server_ssl is None:
                await loop.connect_accepted_socket(lambda: conn, sock)
            else:
                wait = self.gate.config.tls_handshake if self.gate is not None else 60.0
                await loop.connect_accepted_socket(lambda: conn, sock, ssl=self.server_ssl,
                                                   ssl_handshake_timeout=wait)  # fmt: skip
        except OSError as exc:  # ssl.SSLError included; plain TCP: reset before it was set up
            conn.task = None
            if self.server_ssl is None:
                pass
            elif isinstance(exc, ConnectionAbortedError):  # the handshake took too long
                log.info("closing %s %s: tls handshake not done in time", self.name, conn.remote)
                self.close_inbound(conn, "tls_handshake")
            else:
                log.info("%s handshake with %s failed: %s", self.name, conn.remote, exc)
                self.close_inbound(conn, "tls_error")
        finally:
            conn.task = None
            if conn.transport is None:  # never set up: shut, cancelled or failed
                self._forget(conn)

    def close_inbound(self, conn: _Connection, reason: str) -> None:
        """Close an inbound connection the node gives up on, counted by ``reason``."""
        if self.gate is not None:
            self.gate.close(conn, reason)
        else:
            conn.shut()
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        self._inbound.discard(conn)
        if self.gate is not None:
            self.gate.release(conn)

    # ----------------------------------------------------------------------------- table
    def _register(self, conn: _Connection) -> None:
        assert conn.remote is not None
        self._connections[(conn.remote.host, conn.remote.port)] = conn
        if not conn.inbound:
            self.outbound += 1
            if self.gate is not None:
                self.gate.outbound += 1

    def _unregister(self, conn: _Connection) -> None:
        if conn.remote is not None:
            key = (conn.remote.host, conn.remote.port)
            if self._connections.get(key) is conn:
                del self._connections[key]
        if conn.inbound:
            self._forget(conn)
        elif conn.transport is not None:
            self.outbound -= 1
            if self.gate is not None:
                self.gate.outbound -= 1

    # ---------------------------------------------------------------------------- outbound
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
            key = (dest.host, dest.port)
            if self._connections.get(key) is conn:
                del self._connections[key]

    def close(self) -> None:
        if self._listener is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for conn in list(self._inbound):
            conn.shut()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._connections.clear()
