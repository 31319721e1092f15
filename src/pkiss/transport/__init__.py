"""asyncio transports: the only place sockets live. They hand bytes and addresses to a sink
and send bytes to addresses; they know nothing of SIP beyond stream framing."""

from .tcp import TcpTransport
from .tls import tls_contexts
from .udp import UdpTransport

__all__ = ["TcpTransport", "UdpTransport", "tls_contexts"]
