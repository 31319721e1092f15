"""The prober sends the monitor's OPTIONS probes and reports their outcome, with explicit time:
the probe's shape, alive/dead verdicts, timeouts, late responses, routing around a down host."""

from __future__ import annotations

import textwrap

from pkiss.config import parse_config
from pkiss.core import TransactionUser, assemble
from pkiss.health import HealthMonitor
from pkiss.routing.attribution import PeerIndex
from pkiss.sip.message import Request
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import Addr, Send
from pkiss.transport.listeners import LocalAddress

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060], health: false}
  pbx:
    role: pbx
    hosts: [{address: "127.0.0.3:5070", priority: 1}, {address: "127.0.0.4:5070", priority: 2}]
    health: {interval: 1, timeout: 0.5, down_after: 2, up_after: 2}
    dids: ["+331*"]
"""
OPERATOR = Addr("udp", "127.0.0.2", 5060)
PRIMARY = Addr("udp", "127.0.0.3", 5070)
SECONDARY = Addr("udp", "127.0.0.4", 5070)


def core() -> tuple[TransactionUser, HealthMonitor, PeerIndex]:
    config = parse_config(textwrap.dedent(CONFIG))
    node = assemble(config, lambda dest: LocalAddress(dest.transport, "127.0.0.1", 5060), 0.0)
    assert node.start(0.0) == []  # the first probes are deadlines, not sends
    return node, node.prober.monitor, PeerIndex(config.peers)


def probes(sends: list[Send]) -> dict[Addr, Request]:
    out = {}
    for send in sends:
        assert isinstance(send.message, Request) and send.message.method == "OPTIONS"
        out[send.dest] = send.message
    return out


def answer(request: Request, status: int) -> bytes:
    return (
        f"SIP/2.0 {status} Whatever\r\n"
        + "".join(f"Via: {v}\r\n" for v in request.header_lines("via"))
        + f"From: {request.header('from')}\r\nTo: {request.header('to')};tag=x\r\n"
        f"Call-ID: {request.header('call-id')}\r\nCSeq: {request.header('cseq')}\r\n"
        "Server: some-pbx\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def respond(
    b2bua: TransactionUser, peers: PeerIndex, probe: Request, src: Addr, status: int, now: float
) -> list[Send]:
    return b2bua.receive(parse_datagram(answer(probe, status)), src, peers.match(src), now)


def test_probe_shape_and_deadlines() -> None:
    b2bua, monitor, _ = core()
    assert b2bua.next_deadline() == 1.0  # nothing else waits: the monitor's first probe
    assert b2bua.handle_timer(0.9) == []
    sent = probes(b2bua.handle_timer(1.0))
    assert set(sent) == {PRIMARY, SECONDARY}
    probe = sent[PRIMARY]
    text = bytes(probe).decode()
    assert text.startswith("OPTIONS sip:127.0.0.3:5070 SIP/2.0\r\n")
    assert probe.max_forwards == 70
    assert probe.header("to") == "<sip:127.0.0.3:5070>"
    assert (probe.header("from") or "").startswith("<sip:127.0.0.1:5060>;tag=")
    assert (probe.header("via") or "").startswith("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK")
    assert probe.header("cseq") == "1 OPTIONS"
    assert "User-Agent" not in text and "Server" not in text and "127.0.0.2" not in text
    assert probe.header("call-id") != sent[SECONDARY].header("call-id")
    deadline = b2bua.next_deadline()
    assert deadline is not None and deadline <= 1.5  # the probe timeout (or Timer E) first
    assert b2bua.calls.calls == set() and b2bua.calls.clients == {}
    assert monitor.hosts[PRIMARY].in_flight


def test_any_final_but_408_is_alive_and_never_reaches_calls() -> None:
    b2bua, monitor, peers = core()
    now = 1.0
    for status in (404, 408):
        sent = probes(b2bua.handle_timer(now))
        assert respond(b2bua, peers, sent[PRIMARY], PRIMARY, 100, now + 0.1) == []
        assert respond(b2bua, peers, sent[PRIMARY], PRIMARY, status, now + 0.1) == []
        assert respond(b2bua, peers, sent[SECONDARY], SECONDARY, 408, now + 0.1) == []
        now += 1.0
    assert monitor.is_up(PRIMARY)  # 404 then 408: one failure only
    assert not monitor.is_up(SECONDARY)
    assert b2bua.calls.calls == set() and b2bua.calls.stats["calls"] == 0
    assert b2bua.prober.probes == {}


def test_timeout_marks_down_late_response_ignored_and_calls_route_around() -> None:
    b2bua, monitor, peers = core()
    late = None
    for now in (1.0, 2.0):
        sent = probes(b2bua.handle_timer(now))
        respond(b2bua, peers, sent[SECONDARY], SECONDARY, 200, now + 0.01)
        late = sent[PRIMARY]
        assert monitor.is_up(PRIMARY)
        b2bua.handle_timer(now + 0.5)  # the probe timeout: a failure
    assert monitor.down == frozenset({PRIMARY})
    assert late is not None
    assert respond(b2bua, peers, late, PRIMARY, 200, 2.6) == []  # too late: ignored
    assert monitor.down == frozenset({PRIMARY})
    # the transaction's own Timer F later on is quiet too
    assert all(isinstance(s.message, Request) for s in b2bua.handle_timer(40.0))
    invite = (
        b"INVITE sip:+33123456789@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-a1\r\n"
        b"From: <sip:+33999@127.0.0.2>;tag=op\r\nTo: <sip:+33123456789@127.0.0.1>\r\n"
        b"Call-ID: hc@127.0.0.2\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:+33999@127.0.0.2:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    sends = b2bua.receive(parse_datagram(invite), OPERATOR, peers.match(OPERATOR), 41.0)
    invites = [s.dest for s in sends if isinstance(s.message, Request)]
    assert invites == [SECONDARY]
    (call,) = b2bua.calls.calls
    assert [t.addr for t in call.targets] == [PRIMARY]  # still there, last
