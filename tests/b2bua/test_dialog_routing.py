"""Where a leg's in-dialog requests go (RFC 3261 §12.2.1.1), and Record-Route echoed to the
caller (§12.1.1), through the node's core with wire messages and explicit time."""

from __future__ import annotations

from peers import OPERATOR, PBX1, Bench, answer, in_dialog, invite, requests, responses

from pkiss.b2bua.leg import Leg
from pkiss.sip.transaction import Addr
from pkiss.transport.listeners import LocalAddress

PROXY = "<sip:127.0.0.9:5080;lr>"


def _via_proxy(n: int = 1) -> bytes:
    """The operator's INVITE as its record-routing edge proxy forwards it."""
    return invite(n).replace(b"Max-Forwards:", f"Record-Route: {PROXY}\r\nMax-Forwards:".encode())


def test_record_route_is_echoed_in_18x_and_2xx_and_the_bye_goes_through_the_proxy() -> None:
    bench = Bench()
    (b_invite,) = requests(bench.feed(_via_proxy(), OPERATOR), PBX1, "INVITE")
    assert b_invite.header("record-route") is None  # nothing of the caller's path crosses
    (ringing,) = responses(bench.feed(answer(b_invite, 180), PBX1), OPERATOR)
    assert ringing.values("record-route") == [PROXY]
    (ok,) = responses(bench.feed(answer(b_invite, 200, sdp=True), PBX1), OPERATOR)
    assert ok.values("record-route") == [PROXY]
    bye = [s for s in bench.feed(answer(b_invite, 200, sdp=True).replace(b"200 Whatever",
           b"200 OK"), PBX1) if s.dest != PBX1]  # fmt: skip
    assert not bye  # a 2xx retransmission changes nothing
    # the PBX hangs up: the BYE toward the operator follows its proxy
    pbx_bye = (
        f"BYE sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK-pb\r\n"
        f"From: {b_invite.header('to')};tag=pbx\r\nTo: {b_invite.header('from')}\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    sends = bench.feed(pbx_bye, PBX1)
    (to_operator,) = [s for s in sends if getattr(s.message, "method", "") == "BYE"]
    assert to_operator.dest == Addr("udp", "127.0.0.9", 5080)  # the proxy, not the source
    assert to_operator.message.values("route") == [PROXY]  # type: ignore[union-attr]
    assert str(to_operator.message.uri) == "sip:+33999@127.0.0.2:5060"  # type: ignore[union-attr]


def test_without_record_route_the_bye_goes_to_the_contact() -> None:
    bench = Bench()
    (b_invite,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    (ok,) = responses(bench.feed(answer(b_invite, 200, sdp=True), PBX1), OPERATOR)
    tag = ok.to.tag if ok.to else ""
    assert ok.header("record-route") is None
    bench.feed(in_dialog("ACK", 1, tag or "", 1), OPERATOR)
    (bye,) = requests(bench.feed(in_dialog("BYE", 1, tag or "", 2), OPERATOR), PBX1, "BYE")
    assert not bye.values("route")


def _leg(dest: Addr, target: str, routes: list[str] | None = None) -> Leg:
    leg = Leg("A", "peer", "cid", "tag", "<sip:a@x>", "<sip:b@y>", target, dest,
              LocalAddress(dest.transport, "203.0.113.1", 5060))  # fmt: skip
    leg.route_set = routes or []
    return leg


def test_next_address_follows_the_target_and_latches_only_as_a_fallback() -> None:
    public = Addr("udp", "9.9.9.7", 40000)
    # the Contact names another public address: it is where the peer says it is
    assert _leg(public, "sip:b@9.9.9.8:5070").next_address() == Addr(
        "udp", "9.9.9.8", 5070)  # fmt: skip
    # a private address seen from a public source: behind NAT, latch to the source
    assert _leg(public, "sip:b@192.168.1.10:5060").next_address() == public
    # a name: no DNS on the call path, latch
    assert _leg(public, "sip:b@pbx.example.com").next_address() == public
    # a Route first: its address, with its transport
    leg = _leg(public, "sip:b@192.168.1.10", ["<sip:9.9.9.9;transport=tcp;lr>"])
    assert leg.next_address() == Addr("tcp", "9.9.9.9", 5060)
    # over TCP, the host the connection already goes to: the connection is reused
    tcp = Addr("tcp", "9.9.9.7", 40001)
    assert _leg(tcp, "sip:b@9.9.9.7:5060;transport=tcp").next_address() == tcp
    # sips: TLS, default port 5061
    assert _leg(public, "sips:b@9.9.9.8").next_address() == Addr("tls", "9.9.9.8", 5061)
