"""A sans-I/O test bench for the B2BUA: wire bytes in, parsed sends out, explicit time."""

from __future__ import annotations

from typing import Any

from pkiss.b2bua import Calls
from pkiss.config import parse_config
from pkiss.core import TransactionUser, assemble
from pkiss.routing.attribution import PeerIndex
from pkiss.sip.message import Message, Request, Response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import Addr, Send
from pkiss.sip.uri import SipURI, parse_uri
from pkiss.transport.listeners import LocalAddress

OPERATOR = Addr("udp", "127.0.0.2", 5060)
PBX1 = Addr("udp", "127.0.0.3", 5060)
PBX2 = Addr("udp", "127.0.0.4", 5060)

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060]}
  pbx:
    role: pbx
    hosts: [{address: "127.0.0.3:5060", priority: 1}, {address: "127.0.0.4:5060", priority: 2}]
    dids: ["+331*"]
    setup_timeout: 3
    health: false
"""


def local(dest: Addr) -> LocalAddress:
    return LocalAddress(dest.transport, "127.0.0.1", 5060)


class Bench:
    """The node's sans-I/O core between fake peers; ``options`` go to ``pkiss.core.assemble``
    (``media``, ``on_end``, ``on_refused``...)."""

    def __init__(self, config: str = CONFIG, **options: Any) -> None:
        self.config = cfg = parse_config(config)
        self.peers = PeerIndex(cfg.peers)
        self.core: TransactionUser = assemble(cfg, local, 0.0, **options)
        self.now = 0.0

    @property
    def calls(self) -> Calls:
        return self.core.calls

    def feed(self, data: bytes, source: Addr) -> list[Send]:
        # messages go through the wire form, as in the engine
        sends = self.core.receive(parse_datagram(data), source, self.peers.match(source), self.now)
        return [Send(parse_datagram(bytes(s.message)), s.dest) for s in sends]

    def advance(self, to: float) -> list[Send]:
        out: list[Send] = []
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > to:
                break
            self.now = max(self.now, deadline)
            out += [Send(parse_datagram(bytes(s.message)), s.dest)
                    for s in self.core.handle_timer(self.now)]  # fmt: skip
        self.now = to
        return out


def to(sends: list[Send], dest: Addr) -> list[Message]:
    return [s.message for s in sends if s.dest == dest]


def requests(sends: list[Send], dest: Addr, method: str) -> list[Request]:
    return [m for m in to(sends, dest) if isinstance(m, Request) and m.method == method]


def responses(sends: list[Send], dest: Addr) -> list[Response]:
    return [m for m in to(sends, dest) if isinstance(m, Response)]


def invite(n: int = 1, *, sdp: bool = True, called: str = "+33123456789") -> bytes:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n" if sdp else b""
    )
    head = (
        f"INVITE sip:{called}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-op{n}\r\n"
        f"From: <sip:+33999@127.0.0.2>;tag=op{n}\r\nTo: <sip:{called}@127.0.0.1>\r\n"
        f"Call-ID: call{n}@127.0.0.2\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:+33999@127.0.0.2:5060>\r\nMax-Forwards: 70\r\n"
        + ("Content-Type: application/sdp\r\n" if sdp else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answer(request: Request, status: int, tag: str = "pbx", *, sdp: bool = False) -> bytes:
    body = (
        b"v=0\r\no=- 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n" if sdp else b""
    )
    to_value = request.header("to") or ""
    if status > 100 and ";tag=" not in to_value:
        to_value += f";tag={tag}"
    return (
        f"SIP/2.0 {status} Whatever\r\n"
        + "".join(f"Via: {v}\r\n" for v in request.header_lines("via"))
        + f"From: {request.header('from')}\r\nTo: {to_value}\r\n"
        f"Call-ID: {request.header('call-id')}\r\nCSeq: {request.header('cseq')}\r\n"
        f"Contact: <sip:{_hostport(request)}>\r\n"
        + ("Content-Type: application/sdp\r\n" if sdp else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _hostport(request: Request) -> str:
    """Where the answering peer says it is (its Contact): the host the request was sent to."""
    uri = request.uri if not isinstance(request.uri, str) else parse_uri(request.uri)
    if isinstance(uri, SipURI) and uri.host.startswith("127.0.0."):
        return f"{uri.host}:{uri.port or 5060}"
    return "127.0.0.3:5060"


def in_dialog(method: str, n: int, to_tag: str, cseq: int, branch: str = "x") -> bytes:
    return (
        f"{method} sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-{method}{n}{branch}\r\n"
        f"From: <sip:+33999@127.0.0.2>;tag=op{n}\r\n"
        f"To: <sip:+33123456789@127.0.0.1>;tag={to_tag}\r\n"
        f"Call-ID: call{n}@127.0.0.2\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:+33999@127.0.0.2:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def cancel(n: int = 1) -> bytes:
    return (
        f"CANCEL sip:+33123456789@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-op{n}\r\n"
        f"From: <sip:+33999@127.0.0.2>;tag=op{n}\r\nTo: <sip:+33123456789@127.0.0.1>\r\n"
        f"Call-ID: call{n}@127.0.0.2\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def answer_with(request: Request, status: int, header: str) -> bytes:
    """A final response to ``request`` carrying one extra header line (a challenge...)."""
    return answer(request, status).replace(
        b"Content-Length:", header.encode() + b"\r\nContent-Length:"
    )
