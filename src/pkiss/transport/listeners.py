"""The node's listeners, one per transport and address family, and the node's own address as
each destination sees it (what Via and Contact say)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Sbc
from ..security.connections import ConnectionGate
from ..sip.errors import ParseError
from ..sip.headers import Via
from ..sip.message import Message
from ..sip.transaction import Addr
from ..sip.uri import format_host
from .tcp import TcpTransport
from .tls import tls_contexts
from .udp import UdpTransport

__all__ = ["Listeners", "LocalAddress"]

log = logging.getLogger("pkiss.transport")


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """The SBC's own address on one transport, as written in Via and Contact."""

    transport: str
    host: str
    port: int

    def via(self, branch: str) -> Via:
        return Via(self.transport.upper(), format_host(self.host), self.port,
                   (("branch", branch), ("rport", None)))  # fmt: skip

    @property
    def contact(self) -> str:
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"<sip:{format_host(self.host)}:{self.port}{suffix}>"

    @property
    def hostport(self) -> str:
        return f"{format_host(self.host)}:{self.port}"


class Listeners:
    """``sbc.listen``: the transports, keyed by (transport, address family)."""

    def __init__(self, sbc: Sbc, max_message_bytes: int,
                 gate: ConnectionGate | None = None) -> None:  # fmt: skip
        """``gate``: what inbound TCP and TLS connections may hold (every listener's)."""
        self.sbc = sbc
        self.max_message_bytes = max_message_bytes
        self.gate = gate
        self.transports: dict[tuple[str, int], UdpTransport | TcpTransport] = {}
        self._local_cache: dict[tuple[str, str], LocalAddress] = {}

    async def start(
        self,
        on_datagram: Callable[[bytes, Addr], None],
        on_stream_message: Callable[[Message | ParseError, Addr], None],
    ) -> None:
        max_size = self.max_message_bytes
        for ep in self.sbc.listen:
            family = 6 if ":" in ep.host else 4
            transport: UdpTransport | TcpTransport
            if ep.transport == "udp":
                transport = UdpTransport(ep.host, ep.port, on_datagram)
            elif ep.transport == "tcp":
                transport = TcpTransport(ep.host, ep.port, on_stream_message, max_size,
                                         self.gate)  # fmt: skip
            else:
                server_ssl, client_ssl = tls_contexts(self.sbc.tls)
                transport = TcpTransport(ep.host, ep.port, on_stream_message, max_size,
                                         self.gate, name="tls", server_ssl=server_ssl,
                                         client_ssl=client_ssl)  # fmt: skip
            await transport.start()
            self.transports[(ep.transport, family)] = transport
            log.info("listening on %s:%s:%d", ep.transport, ep.host, transport.port)

    def reconfigure(self, sbc: Sbc) -> None:
        """A reload: ``advertise`` may change (the listeners stay until the node restarts)."""
        self.sbc = sbc
        self._local_cache.clear()

    def backlog(self) -> float:
        """The fullest UDP receive queue (0 to 1): how far behind the node is."""
        return max((t.backlog() for t in self.transports.values()
                    if isinstance(t, UdpTransport)), default=0.0)  # fmt: skip

    def send(self, data: bytes, dest: Addr) -> None:
        transport = self.transports.get((dest.transport, 6 if ":" in dest.host else 4))
        if transport is None:
            log.warning("no %s transport to reach %s", dest.transport, dest)
            return
        transport.send(data, dest)

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()
        if self.gate is not None:
            self.gate.close_all()

    def local(self, dest: Addr) -> LocalAddress:
        """Our address as a peer at ``dest`` sees it: the advertised address, else the
        listening address of that transport, else (wildcard listen) the source address the
        kernel picks for that destination."""
        key = (dest.transport, dest.host)
        found = self._local_cache.get(key)
        if found is not None:
            return found
        family = 6 if ":" in dest.host else 4
        transport = self.transports.get((dest.transport, family)) or self.transports.get(
            ("udp", family)
        )
        port = transport.port if transport is not None else 5060
        host = self.sbc.advertise
        if host is None:
            host = transport.host if transport is not None else "127.0.0.1"
            if host in ("0.0.0.0", "::"):
                host = _source_address_for(dest.host, family)
        found = LocalAddress(dest.transport, str(host), port)
        if len(self._local_cache) < 4096:
            self._local_cache[key] = found
        return found


def _source_address_for(host: str, family: int) -> str:
    """The local address the kernel would use toward ``host`` (no packet is sent)."""
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "::1" if family == 6 else "127.0.0.1"
