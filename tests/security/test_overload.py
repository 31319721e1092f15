"""Overload control, pure: the lag verdict with hysteresis, and the 503 built from a new
INVITE's raw bytes (parsed back by the node's own parser to check it is a valid response)."""

from __future__ import annotations

import pytest

from pkiss.security.overload import Overload, is_refusal_ack, turn_away
from pkiss.sip.message import Response
from pkiss.sip.parser import parse_datagram

INVITE = (
    b"INVITE sip:+33123456789@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-1;rport\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-0\r\n"
    b"From: <sip:+33999@127.0.0.2>;tag=a1\r\n"
    b"To: <sip:+33123456789@127.0.0.1>\r\n"
    b"Call-ID: c1@127.0.0.2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
)


def test_late_ticks_in_a_row_make_overload_and_calm_ones_end_it() -> None:
    overload = Overload(high=0.05, low=0.01, ticks=3)
    assert not any(overload.tick(0.08) for _ in range(2))
    assert overload.tick(0.08) and overload.episodes == 1 and overload.share == 0.95
    overload.tick(0.08)
    assert overload.share < 0.95, "still over: fewer new calls"
    share = overload.share
    assert overload.tick(0.03) and overload.share > share, "under high: more again"
    ticks = 0
    while overload.tick(0.005):
        ticks += 1
    assert 5 < ticks < 20 and overload.share == 1.0, "calm ticks bring it back step by step"


def test_one_stall_is_not_overload() -> None:
    overload = Overload(high=0.05, low=0.01, ticks=3)
    for _ in range(10):  # a 300 ms stall (a reload) among ticks on time
        assert not overload.tick(0.3)
        assert not overload.tick(0.0)


def test_the_share_admitted_is_spread_evenly() -> None:
    overload = Overload(ticks=1)
    overload.tick(1.0)
    overload.share = 0.25
    admitted = [overload.admit() for _ in range(100)]
    assert sum(admitted) == 25 and overload.turned_away == 75
    assert all(sum(admitted[i : i + 4]) == 1 for i in range(0, 100, 4))


def test_a_new_invite_gets_a_503_that_parses_and_its_ack_is_recognised() -> None:
    data = turn_away(INVITE, 2)
    assert data is not None
    response = parse_datagram(data)
    assert isinstance(response, Response) and response.status == 503
    assert response.header("retry-after") == "2"
    assert len(response.values("via")) == 2
    assert response.call_id == "c1@127.0.0.2" and response.cseq and response.cseq.seq == 1
    assert response.to and response.to.tag and response.to.tag.startswith("ovl")
    ack = (
        b"ACK sip:+33123456789@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;"
        b"branch=z9hG4bK-1\r\nFrom: <sip:+33999@127.0.0.2>;tag=a1\r\nTo: "
        + (response.header("to") or "").encode()
        + b"\r\nCall-ID: c1@127.0.0.2\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )
    assert is_refusal_ack(ack)
    assert not is_refusal_ack(ack.replace(b"tag=ovl", b"tag=xyz"))


@pytest.mark.parametrize(
    "data",
    [
        INVITE.replace(b"To: <sip:+33123456789@127.0.0.1>", b"To: <sip:x@y>;tag=b2"),  # re-INVITE
        INVITE.replace(b"INVITE sip", b"OPTIONS sip", 1),
        INVITE.replace(b"Call-ID: c1@127.0.0.2\r\n", b""),
        b"INVITE garbage",
        b"",
    ],
)
def test_anything_but_a_whole_new_invite_is_left_alone(data: bytes) -> None:
    assert turn_away(data, 2) is None


def test_only_an_overloaded_node_refuses() -> None:
    overload = Overload(ticks=1)
    assert overload.refuse(INVITE) is None
    overload.tick(1.0)
    overload.share = 0.05
    assert overload.refuse(INVITE) is not None and overload.turned_away == 1


def test_a_receive_queue_filling_up_is_overload_even_on_time() -> None:
    overload = Overload(ticks=2, backlog_high=0.2, backlog_low=0.02)
    assert not overload.tick(0.0, 0.5)
    assert overload.tick(0.0, 0.5), "datagrams pile up while the loop keeps its ticks"
    assert overload.tick(0.0, 0.01), "one calm tick is not enough"


@pytest.mark.parametrize("sent_by", ["127.0.0.2:5060", "127.0.0.2", "[::1]:5062", "Host.Example"])
def test_an_invite_the_node_already_has_is_never_turned_away(sent_by: str) -> None:
    """A retransmission of an INVITE already admitted (its server transaction exists) passes
    even while the node turns new calls away: the raw key is the layer's own."""
    from pkiss.sip.transaction import Addr, TransactionLayer

    data = INVITE.replace(
        b"127.0.0.2:5060;branch=z9hG4bK-1", sent_by.encode() + b";branch=z9hG4bK-1"
    )
    layer = TransactionLayer()
    overload = Overload(ticks=1)
    overload.tick(1.0)
    overload.share = 0.05
    assert overload.refuse(data, layer.has_server) is not None, "new: turned away"
    layer.receive(parse_datagram(data), Addr("udp", "127.0.0.2", 5060), 0.0)
    assert overload.refuse(data, layer.has_server) is None, "a retransmission: let through"
