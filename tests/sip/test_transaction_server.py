"""Server transactions (RFC 3261 §17.2, §13.3.1.4, RFC 6026) driven through the layer with
explicit time."""

from __future__ import annotations

import gc

import pytest
from wire import wire

from pkiss.sip.message import Request, Response, make_response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import (
    AckTimedOut,
    Addr,
    RequestReceived,
    Send,
    TransactionLayer,
    TransactionOutput,
)
from pkiss.sip.transaction.server import InviteServerTransaction, ServerTransaction

# The carrier sends from 5070 although its Via says 5060: responses go to the source (RFC 3581).
CARRIER = Addr("udp", "198.51.100.7", 5070)
CARRIER_TCP = Addr("tcp", "198.51.100.7", 40312)


INVITE = wire(
    """INVITE sip:+33123456789@203.0.113.1 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-carrier-1
Max-Forwards: 69
From: "Caller" <sip:+33987654321@198.51.100.7>;tag=c-tag-1
To: <sip:+33123456789@203.0.113.1>
Call-ID: carrier-call-1
CSeq: 101 INVITE
Contact: <sip:+33987654321@198.51.100.7:5060>
Content-Length: 0

"""
)

# ACK for a non-2xx final: same branch as the INVITE (hop by hop, §17.1.1.3).
ACK_NON_2XX = wire(
    """ACK sip:+33123456789@203.0.113.1 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-carrier-1
Max-Forwards: 69
From: "Caller" <sip:+33987654321@198.51.100.7>;tag=c-tag-1
To: <sip:+33123456789@203.0.113.1>;tag=sbc-1
Call-ID: carrier-call-1
CSeq: 101 ACK
Content-Length: 0

"""
)

# ACK for a 2xx: a new transaction, new branch (§17.1.1.3, §13.2.2.4).
ACK_2XX = wire(
    """ACK sip:sbc@203.0.113.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-carrier-2
Max-Forwards: 70
From: "Caller" <sip:+33987654321@198.51.100.7>;tag=c-tag-1
To: <sip:+33123456789@203.0.113.1>;tag=sbc-1
Call-ID: carrier-call-1
CSeq: 101 ACK
Content-Length: 0

"""
)

CANCEL = wire(
    """CANCEL sip:+33123456789@203.0.113.1 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-carrier-1
Max-Forwards: 70
From: "Caller" <sip:+33987654321@198.51.100.7>;tag=c-tag-1
To: <sip:+33123456789@203.0.113.1>
Call-ID: carrier-call-1
CSeq: 101 CANCEL
Content-Length: 0

"""
)

OPTIONS = wire(
    """OPTIONS sip:203.0.113.1 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-probe-9
Max-Forwards: 70
From: <sip:probe@198.51.100.7>;tag=p-9
To: <sip:203.0.113.1>
Call-ID: probe-9
CSeq: 9 OPTIONS
Content-Length: 0

"""
)

# An RFC 2543 peer: no magic cookie in the branch.
INVITE_2543 = wire(
    """INVITE sip:+33123456789@203.0.113.1 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.9:5060
From: <sip:old@198.51.100.9>;tag=old-1
To: <sip:+33123456789@203.0.113.1>
Call-ID: old-call-1@198.51.100.9
CSeq: 1 INVITE
Content-Length: 0

"""
)


def parse(data: bytes) -> Request:
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def answer(req: Request, status: int, to_tag: str | None = "sbc-1") -> Response:
    return make_response(req, status, to_tag=to_tag)


def sends(out: list[TransactionOutput]) -> list[Send]:
    return [o for o in out if isinstance(o, Send)]


def status_of(send: Send) -> int:
    assert isinstance(send.message, Response)
    return send.message.status


def run_timers(layer: TransactionLayer) -> list[tuple[float, list[TransactionOutput]]]:
    fired = []
    while (at := layer.next_deadline()) is not None:
        fired.append((at, layer.handle_timer(at)))
    return fired


def new_invite(
    layer: TransactionLayer, source: Addr = CARRIER, now: float = 0.0
) -> tuple[Request, str]:
    inv = parse(INVITE)
    out = layer.receive(inv, source, now)
    received = out[-1]
    assert isinstance(received, RequestReceived)
    assert received.key is not None
    return inv, received.key


# ------------------------------------------------------------------------ INVITE server


def test_new_invite_sends_100_trying_and_goes_to_tu() -> None:
    layer = TransactionLayer()
    inv = parse(INVITE)
    out = layer.receive(inv, CARRIER, 0.0)
    assert len(out) == 2
    trying, received = out
    assert isinstance(trying, Send)
    assert trying.dest == CARRIER  # symmetric response, not the Via's port 5060
    resp = trying.message
    assert isinstance(resp, Response)
    assert resp.status == 100
    assert resp.to is not None and resp.to.tag is None  # §8.2.6.1: no To tag on a 100
    assert resp.header_lines("via") == inv.header_lines("via")
    assert resp.header("cseq") == "101 INVITE"
    assert received == RequestReceived(inv, CARRIER, "z9hG4bK-carrier-1|198.51.100.7:5060|INVITE")
    assert len(layer) == 1
    assert layer.next_deadline() is None  # Proceeding waits for the TU


def test_no_100_trying_when_disabled() -> None:
    layer = TransactionLayer(send_trying=False)
    inv = parse(INVITE)
    out = layer.receive(inv, CARRIER, 0.0)
    assert [type(o) for o in out] == [RequestReceived]
    # A retransmission in Proceeding with nothing sent yet: absorbed in silence.
    assert layer.receive(parse(INVITE), CARRIER, 0.5) == []


def test_invite_retransmission_in_proceeding_resends_last_provisional() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    [trying] = sends(layer.receive(parse(INVITE), CARRIER, 0.5))
    assert status_of(trying) == 100
    ringing = answer(inv, 180)
    assert layer.respond(key, ringing, 1.0) == [Send(ringing, CARRIER)]
    assert layer.receive(parse(INVITE), CARRIER, 1.5) == [Send(ringing, CARRIER)]


def test_non_2xx_final_timer_g_doubles_to_t2_then_timer_h() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    busy = answer(inv, 486)
    assert layer.respond(key, busy, 0.0) == [Send(busy, CARRIER)]
    fired = run_timers(layer)
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert [at for at, _ in fired] == expected
    for _, out in fired[:-1]:
        assert out == [Send(busy, CARRIER)]
    assert fired[-1][1] == []  # timer H: no ACK; the transaction ends (nothing for the TU)
    assert len(layer) == 0


def test_invite_retransmission_in_completed_resends_final() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    busy = answer(inv, 486)
    layer.respond(key, busy, 0.0)
    assert layer.receive(parse(INVITE), CARRIER, 0.2) == [Send(busy, CARRIER)]
    assert layer.respond(key, answer(inv, 200), 0.3) == []  # no second final


def test_ack_confirms_stops_g_and_timer_i() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    busy = answer(inv, 486)
    layer.respond(key, busy, 0.0)
    assert layer.handle_timer(0.5) == [Send(busy, CARRIER)]
    # The ACK is absorbed by the transaction (Completed -> Confirmed); timer I = T4.
    assert layer.receive(parse(ACK_NON_2XX), CARRIER, 1.0) == []
    assert layer.next_deadline() == 6.0
    # Confirmed absorbs ACK and INVITE retransmissions.
    assert layer.receive(parse(ACK_NON_2XX), CARRIER, 2.0) == []
    assert layer.receive(parse(INVITE), CARRIER, 2.0) == []
    assert run_timers(layer) == [(6.0, [])]
    assert len(layer) == 0


def test_non_2xx_over_tcp_no_g_and_immediate_i() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer, CARRIER_TCP)
    busy = answer(inv, 486)
    assert layer.respond(key, busy, 1.0) == [Send(busy, CARRIER_TCP)]
    assert layer.next_deadline() == 33.0  # timer H only
    assert layer.receive(parse(ACK_NON_2XX), CARRIER_TCP, 2.0) == []
    assert len(layer) == 0  # timer I = 0
    assert layer.next_deadline() is None


def test_timer_h_over_tcp() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer, CARRIER_TCP)
    layer.respond(key, answer(inv, 404), 1.0)
    assert run_timers(layer) == [(33.0, [])]
    assert len(layer) == 0


def test_2xx_retransmitted_until_ack() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    ok = answer(inv, 200)
    assert layer.respond(key, ok, 0.0) == [Send(ok, CARRIER)]
    # §13.3.1.4: T1, doubling up to T2.
    for at in (0.5, 1.5, 3.5, 7.5, 11.5):
        assert layer.next_deadline() == at
        assert layer.handle_timer(at) == [Send(ok, CARRIER)]
    # The ACK (a new branch) matches no transaction: it goes to the TU with key None, and it
    # stops the retransmission (same Call-ID and CSeq number).
    ack = parse(ACK_2XX)
    assert layer.receive(ack, CARRIER, 12.0) == [RequestReceived(ack, CARRIER, None)]
    # Accepted until timer L (64*T1 from the 2xx); no AckTimedOut.
    assert run_timers(layer) == [(32.0, [])]
    assert len(layer) == 0


def test_2xx_without_ack_reports_ack_timed_out() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    ok = answer(inv, 200)
    layer.respond(key, ok, 0.0)
    fired = run_timers(layer)
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert [at for at, _ in fired] == expected
    assert fired[-1][1] == [AckTimedOut(key, "carrier-call-1")]
    assert len(layer) == 0


def test_2xx_over_tcp_not_retransmitted_ack_timed_out_still_reported() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer, CARRIER_TCP)
    layer.respond(key, answer(inv, 200), 2.0)
    assert run_timers(layer) == [(34.0, [AckTimedOut(key, "carrier-call-1")])]


def test_accepted_absorbs_invite_retransmissions_and_passes_acks() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    ok = answer(inv, 200)
    layer.respond(key, ok, 0.0)
    assert layer.receive(parse(INVITE), CARRIER, 0.1) == []  # RFC 6026 §8.7
    ack = parse(ACK_2XX)
    assert layer.receive(ack, CARRIER, 0.2) == [RequestReceived(ack, CARRIER, None)]
    # A second ACK (the UAC answering a crossed 2xx) reaches the TU as well.
    assert layer.receive(ack, CARRIER, 0.3) == [RequestReceived(ack, CARRIER, None)]
    assert layer.next_deadline() == 32.0  # the 2xx is no longer retransmitted
    assert layer.respond(key, answer(inv, 486), 0.4) == []  # no non-2xx after a 2xx
    # Another 2xx from the TU is sent (RFC 6026: Accepted, 2xx from TU).
    ok2 = answer(inv, 200, "sbc-2")
    assert layer.respond(key, ok2, 0.5) == [Send(ok2, CARRIER)]


def test_ack_reusing_the_invite_branch_in_accepted_goes_to_tu() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    layer.respond(key, answer(inv, 200), 0.0)
    ack = parse(ACK_NON_2XX)  # a broken UA: the INVITE's branch on the 2xx ACK
    assert layer.receive(ack, CARRIER, 0.2) == [RequestReceived(ack, CARRIER, None)]
    assert layer.next_deadline() == 32.0


def test_unmatched_ack_goes_to_tu() -> None:
    layer = TransactionLayer()
    ack = parse(ACK_2XX)
    assert layer.receive(ack, CARRIER, 0.0) == [RequestReceived(ack, CARRIER, None)]
    assert len(layer) == 0


def test_provisional_then_2xx() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    layer.respond(key, answer(inv, 183), 0.1)
    ok = answer(inv, 200)
    assert layer.respond(key, ok, 0.2) == [Send(ok, CARRIER)]
    assert layer.next_deadline() == pytest.approx(0.7)


# ---------------------------------------------------------------------- non-INVITE server


def test_non_invite_server_lifecycle_and_timer_j() -> None:
    layer = TransactionLayer()
    opt = parse(OPTIONS)
    out = layer.receive(opt, CARRIER, 0.0)
    key = "z9hG4bK-probe-9|198.51.100.7:5060|OPTIONS"
    assert out == [RequestReceived(opt, CARRIER, key)]  # no 100 for a non-INVITE
    assert layer.receive(parse(OPTIONS), CARRIER, 0.5) == []  # Trying: absorbed
    trying = answer(opt, 100, None)
    assert layer.respond(key, trying, 1.0) == [Send(trying, CARRIER)]
    assert layer.receive(parse(OPTIONS), CARRIER, 1.5) == [Send(trying, CARRIER)]
    ok = answer(opt, 200)
    assert layer.respond(key, ok, 2.0) == [Send(ok, CARRIER)]
    assert layer.receive(parse(OPTIONS), CARRIER, 2.5) == [Send(ok, CARRIER)]
    assert layer.respond(key, answer(opt, 500), 2.6) == []
    assert run_timers(layer) == [(34.0, [])]  # timer J = 64*T1 on UDP
    assert len(layer) == 0
    assert layer.respond(key, ok, 35.0) == []  # finished key


def test_non_invite_over_tcp_timer_j_zero() -> None:
    layer = TransactionLayer()
    opt = parse(OPTIONS)
    out = layer.receive(opt, CARRIER_TCP, 0.0)
    assert isinstance(out[0], RequestReceived) and out[0].key is not None
    layer.respond(out[0].key, answer(opt, 200), 0.1)
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_respond_unknown_key() -> None:
    layer = TransactionLayer()
    assert layer.respond("nope", answer(parse(OPTIONS), 200), 0.0) == []


# ------------------------------------------------------------------------------- CANCEL


def test_cancel_is_its_own_transaction_and_finds_its_invite() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    layer.respond(key, answer(inv, 180), 0.5)
    cancel = parse(CANCEL)
    out = layer.receive(cancel, CARRIER, 1.0)
    ckey = "z9hG4bK-carrier-1|198.51.100.7:5060|CANCEL"
    assert out == [RequestReceived(cancel, CARRIER, ckey)]
    assert layer.find_invite(cancel) == key
    assert layer.receive(parse(CANCEL), CARRIER, 1.2) == []  # retransmission absorbed
    ok = answer(cancel, 200)
    assert layer.respond(ckey, ok, 1.1) == [Send(ok, CARRIER)]
    assert layer.receive(parse(CANCEL), CARRIER, 1.3) == [Send(ok, CARRIER)]
    terminated = answer(inv, 487)
    assert layer.respond(key, terminated, 1.1) == [Send(terminated, CARRIER)]
    assert layer.find_invite(cancel) is None  # final sent: nothing left to cancel
    layer.receive(parse(ACK_NON_2XX), CARRIER, 1.4)
    run_timers(layer)
    assert len(layer) == 0


def test_find_invite_none_for_unknown_or_answered_invite() -> None:
    layer = TransactionLayer()
    assert layer.find_invite(parse(CANCEL)) is None
    inv, key = new_invite(layer)
    layer.respond(key, answer(inv, 200), 0.1)
    assert layer.find_invite(parse(CANCEL)) is None


# ----------------------------------------------------------------------------- matching


def test_same_branch_other_sent_by_is_another_transaction() -> None:
    layer = TransactionLayer()
    new_invite(layer)
    other = parse(INVITE.replace(b"198.51.100.7:5060;branch", b"198.51.100.8:5060;branch"))
    out = layer.receive(other, Addr("udp", "198.51.100.8", 5060), 0.1)
    assert isinstance(out[-1], RequestReceived)
    assert len(layer) == 2


def test_rfc2543_fallback_matching() -> None:
    layer = TransactionLayer()
    old = Addr("udp", "198.51.100.9", 5060)
    inv = parse(INVITE_2543)
    out = layer.receive(inv, old, 0.0)
    received = out[-1]
    assert isinstance(received, RequestReceived) and received.key is not None
    key = received.key
    assert key.startswith("2543|")
    # The retransmission is matched by Request-URI, tags, Call-ID, CSeq and top Via.
    [trying] = sends(layer.receive(parse(INVITE_2543), old, 0.5))
    assert status_of(trying) == 100
    cancel = parse(
        INVITE_2543.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
    )
    assert layer.find_invite(cancel) == key
    busy = answer(inv, 486, "sbc-9")
    layer.respond(key, busy, 1.0)
    # An ACK with another To tag is not for this transaction: it goes to the TU.
    wrong = parse(
        INVITE_2543.replace(b"INVITE sip", b"ACK sip")
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"203.0.113.1>\r\n", b"203.0.113.1>;tag=other\r\n")
    )
    assert layer.receive(wrong, old, 1.1) == [RequestReceived(wrong, old, None)]
    # The ACK with the To tag of our 486 is absorbed (Completed -> Confirmed).
    ack = parse(
        INVITE_2543.replace(b"INVITE sip", b"ACK sip")
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"203.0.113.1>\r\n", b"203.0.113.1>;tag=sbc-9\r\n")
    )
    assert layer.receive(ack, old, 1.2) == []
    assert layer.next_deadline() == pytest.approx(6.2)  # timer I


def test_rfc2543_different_cseq_is_a_new_transaction() -> None:
    layer = TransactionLayer()
    old = Addr("udp", "198.51.100.9", 5060)
    layer.receive(parse(INVITE_2543), old, 0.0)
    again = parse(INVITE_2543.replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"))
    assert isinstance(layer.receive(again, old, 0.1)[-1], RequestReceived)
    assert len(layer) == 2


def test_request_without_via_or_cseq_is_dropped() -> None:
    layer = TransactionLayer()
    no_via = parse(
        OPTIONS.replace(b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-probe-9\r\n", b"")
    )
    assert layer.receive(no_via, CARRIER, 0.0) == []
    no_cseq = parse(OPTIONS.replace(b"CSeq: 9 OPTIONS\r\n", b""))
    assert layer.receive(no_cseq, CARRIER, 0.0) == []
    assert len(layer) == 0


# ------------------------------------------------------------- what a transaction keeps


def server(layer: TransactionLayer, key: str) -> ServerTransaction:
    return layer._servers[key]


def test_lingering_non_invite_server_keeps_only_its_final_response() -> None:
    """After the final response the request is dropped; a retransmitted request still gets
    the final response again (the same object) for 64*T1."""
    layer = TransactionLayer()
    opt = parse(OPTIONS)
    [received] = layer.receive(opt, CARRIER, 0.0)
    assert isinstance(received, RequestReceived) and received.key is not None
    key = received.key
    txn = server(layer, key)
    assert txn.request is opt  # until the answer
    ok = answer(opt, 200)
    layer.respond(key, ok, 0.1)
    assert txn.request is None and txn.last is ok
    assert opt not in gc.get_referents(txn)
    del opt, received
    for at in (1.0, 20.0, 32.0):
        assert layer.receive(parse(OPTIONS), CARRIER, at) == [Send(ok, CARRIER)]
    assert run_timers(layer) == [(pytest.approx(32.1), [])]
    assert len(layer) == 0
    assert txn.last is None and txn.request is None  # an ended transaction keeps nothing


def test_invite_server_keeps_its_2xx_only_until_the_ack() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    txn = server(layer, key)
    assert isinstance(txn, InviteServerTransaction)
    ok = answer(inv, 200)
    layer.respond(key, ok, 0.0)
    assert txn.request is None and txn.last is ok
    assert txn.ack_key == ("carrier-call-1", 101)
    assert layer._awaiting_ack == {("carrier-call-1", 101): txn}
    assert layer.handle_timer(0.5) == [Send(ok, CARRIER)]  # the 2xx, request gone
    assert layer.receive(parse(INVITE), CARRIER, 0.6) == []  # absorbed (RFC 6026 §8.7)
    ack = parse(ACK_2XX)
    assert layer.receive(ack, CARRIER, 0.7) == [RequestReceived(ack, CARRIER, None)]
    assert txn.last is None  # nothing re-sends the 2xx after its ACK
    assert layer.receive(ack, CARRIER, 0.8) == [RequestReceived(ack, CARRIER, None)]
    assert run_timers(layer) == [(32.0, [])]
    assert not layer._awaiting_ack and not layer._heap


def test_ack_timed_out_names_the_call_once_the_request_is_gone() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    txn = server(layer, key)
    ok = answer(inv, 200)
    layer.respond(key, ok, 0.0)
    assert txn.request is None and txn.last is ok  # kept for the retransmissions
    fired = run_timers(layer)
    assert all(out == [Send(ok, CARRIER)] for _, out in fired[:-1])
    assert fired[-1][1] == [AckTimedOut(key, "carrier-call-1")]
    assert not layer._awaiting_ack


def test_invite_server_keeps_a_non_2xx_until_the_ack() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    txn = server(layer, key)
    busy = answer(inv, 486)
    layer.respond(key, busy, 0.0)
    assert txn.request is None and txn.last is busy
    assert layer.handle_timer(0.5) == [Send(busy, CARRIER)]  # timer G
    assert layer.receive(parse(INVITE), CARRIER, 0.6) == [Send(busy, CARRIER)]
    assert layer.receive(parse(ACK_NON_2XX), CARRIER, 0.7) == []  # Confirmed
    assert txn.last is None  # Confirmed re-sends nothing
    assert layer.receive(parse(INVITE), CARRIER, 0.8) == []
    assert run_timers(layer) == [(pytest.approx(5.7), [])]  # timer I


def test_2xx_over_tcp_is_not_kept() -> None:
    """On a reliable transport nothing re-sends the 2xx: it is not kept at all."""
    layer = TransactionLayer()
    inv, key = new_invite(layer, CARRIER_TCP)
    txn = server(layer, key)
    layer.respond(key, answer(inv, 200), 0.0)
    assert txn.request is None and txn.last is None
    assert layer.receive(parse(INVITE), CARRIER_TCP, 0.1) == []
    assert run_timers(layer) == [(32.0, [AckTimedOut(key, "carrier-call-1")])]


def test_provisional_is_kept_while_proceeding() -> None:
    layer = TransactionLayer()
    inv, key = new_invite(layer)
    txn = server(layer, key)
    ringing = answer(inv, 180)
    layer.respond(key, ringing, 0.0)
    assert txn.request is inv and txn.last is ringing
    assert layer.receive(parse(INVITE), CARRIER, 0.1) == [Send(ringing, CARRIER)]


def test_rfc2543_transaction_keeps_what_matching_needs() -> None:
    """Matching without a magic cookie compares To tags: the request's (retransmissions) and
    the response's (ACK); such a transaction keeps both until it ends."""
    layer = TransactionLayer()
    old = Addr("udp", "198.51.100.9", 5060)
    inv = parse(INVITE_2543)
    received = layer.receive(inv, old, 0.0)[-1]
    assert isinstance(received, RequestReceived) and received.key is not None
    key = received.key
    txn = server(layer, key)
    assert txn.legacy
    busy = answer(inv, 486, "sbc-9")
    layer.respond(key, busy, 1.0)
    ack = parse(
        INVITE_2543.replace(b"INVITE sip", b"ACK sip")
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"203.0.113.1>\r\n", b"203.0.113.1>;tag=sbc-9\r\n")
    )
    assert layer.receive(ack, old, 1.2) == []  # Confirmed
    assert txn.request is inv and txn.last is busy
    assert layer.receive(ack, old, 1.3) == []  # still matched: absorbed, not for the TU
    assert layer.receive(parse(INVITE_2543), old, 1.4) == []
    run_timers(layer)
    assert txn.request is None and txn.last is None
