"""Reliable provisionals on the A-leg are retransmitted until PRACKed (RFC 3262 §3), with
explicit time: no sockets, no sleeps."""

from __future__ import annotations

from pkiss.config import parse_config
from pkiss.core import TransactionUser, assemble
from pkiss.routing.attribution import PeerIndex
from pkiss.sip.message import Request, Response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import Addr, Send
from pkiss.transport.listeners import LocalAddress

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060]}
  pbx: {role: pbx, hosts: [127.0.0.3:5060], dids: ["+331*"]}
"""
OPERATOR = Addr("udp", "127.0.0.2", 5060)
PBX = Addr("udp", "127.0.0.3", 5060)


def _core() -> tuple[TransactionUser, PeerIndex]:
    config = parse_config(CONFIG)
    core = assemble(config, lambda dest: LocalAddress(dest.transport, "127.0.0.1", 5060), 0.0)
    return core, PeerIndex(config.peers)


INVITE = (
    b"INVITE sip:+33123456789@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-a1\r\n"
    b"From: <sip:+33999@127.0.0.2>;tag=op\r\nTo: <sip:+33123456789@127.0.0.1>\r\n"
    b"Call-ID: rel1xx@127.0.0.2\r\nCSeq: 1 INVITE\r\nSupported: 100rel\r\n"
    b"Contact: <sip:+33999@127.0.0.2:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _reliable_180(invite: Request) -> bytes:
    return (
        "SIP/2.0 180 Ringing\r\n"
        + "".join(f"Via: {v}\r\n" for v in invite.header_lines("via"))
        + f"From: {invite.header('from')}\r\nTo: {invite.header('to')};tag=pbx\r\n"
        f"Call-ID: {invite.header('call-id')}\r\nCSeq: {invite.header('cseq')}\r\n"
        "Contact: <sip:127.0.0.3:5060>\r\nRequire: 100rel\r\nRSeq: 77\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _to_operator(sends: list[Send]) -> list[Response]:
    return [s.message for s in sends if s.dest == OPERATOR and isinstance(s.message, Response)]


def _setup() -> tuple[TransactionUser, PeerIndex, Response]:
    core, peers = _core()
    sends = core.receive(parse_datagram(INVITE), OPERATOR, peers.match(OPERATOR), 0.0)
    b_invite = next(s.message for s in sends if s.dest == PBX)
    assert isinstance(b_invite, Request)
    sends = core.receive(parse_datagram(_reliable_180(b_invite)), PBX, peers.match(PBX), 0.1)
    (ringing,) = _to_operator(sends)
    return core, peers, ringing


def test_reliable_180_is_renumbered_and_retransmitted_until_prack() -> None:
    core, peers, ringing = _setup()
    assert ringing.status == 180
    assert ringing.header("require") == "100rel"
    a_rseq = ringing.header("rseq")
    assert a_rseq is not None
    times = []
    now = 0.1
    for _ in range(3):
        deadline = core.next_deadline()
        assert deadline is not None
        now = deadline
        again = _to_operator(core.handle_timer(now))
        if again:
            assert again[0].header("rseq") == a_rseq
            times.append(round(now - 0.1, 3))
    assert times == [0.5, 1.5, 3.5]  # T1, then doubling

    to_tag = ringing.to.tag if ringing.to else ""
    prack = (
        f"PRACK sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-p1\r\n"
        f"From: <sip:+33999@127.0.0.2>;tag=op\r\nTo: <sip:+33123456789@127.0.0.1>;tag={to_tag}\r\n"
        f"Call-ID: rel1xx@127.0.0.2\r\nCSeq: 2 PRACK\r\nRAck: {a_rseq} 1 INVITE\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    sends = core.receive(parse_datagram(prack), OPERATOR, peers.match(OPERATOR), now)
    relayed = [s.message for s in sends if s.dest == PBX]
    assert relayed and isinstance(relayed[0], Request)
    assert relayed[0].header("rack") == "77 1 INVITE"  # the B-leg's own RSeq
    for step in range(1, 30):
        assert not _to_operator(core.handle_timer(now + step))


def test_retransmission_gives_up_after_64_t1() -> None:
    core, _, _ = _setup()
    count = 0
    now = 0.1
    while now < 40:
        now += 0.25
        count += len(_to_operator(core.handle_timer(now)))
    assert count == 6  # at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; none after 32 s
