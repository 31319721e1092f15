"""Client transactions (RFC 3261 §17.1, RFC 6026) driven through the layer with explicit time."""

from __future__ import annotations

import gc

import pytest
from wire import wire

from pkiss.sip.message import Request, Response, make_response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import (
    Addr,
    ResponseReceived,
    Send,
    Timers,
    TransactionLayer,
    TransactionOutput,
    TransactionTimedOut,
)
from pkiss.sip.transaction.client import ClientTransaction, InviteClientTransaction

PBX = Addr("udp", "192.0.2.20", 5060)
PBX_TCP = Addr("tcp", "192.0.2.20", 5060)


# The B-leg INVITE as the SBC sends it (its own Via, a Route to the PBX).
INVITE = wire(
    """INVITE sip:bob@192.0.2.20 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsbc0001;rport
Max-Forwards: 70
Route: <sip:192.0.2.20;lr>
From: <sip:alice@sbc.example.com>;tag=sbc-tag-1
To: <sip:bob@example.com>
Call-ID: b-leg-call-1@192.0.2.1
CSeq: 1 INVITE
Contact: <sip:192.0.2.1:5060>
Content-Length: 0

"""
)

OPTIONS = wire(
    """OPTIONS sip:192.0.2.20 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsbc0002
Max-Forwards: 70
From: <sip:sbc@192.0.2.1>;tag=probe-1
To: <sip:192.0.2.20>
Call-ID: probe-1@192.0.2.1
CSeq: 7 OPTIONS
Content-Length: 0

"""
)

ACK_2XX = wire(
    """ACK sip:bob@192.0.2.21:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsbc0003
Max-Forwards: 70
Route: <sip:192.0.2.20;lr>
From: <sip:alice@sbc.example.com>;tag=sbc-tag-1
To: <sip:bob@example.com>;tag=callee-1
Call-ID: b-leg-call-1@192.0.2.1
CSeq: 1 ACK
Content-Length: 0

"""
)


def request(data: bytes = INVITE) -> Request:
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, to_tag: str | None = "callee-1") -> Response:
    """A response as the peer sends it, through bytes and the parser."""
    resp = parse_datagram(bytes(make_response(req, status, to_tag=to_tag)))
    assert isinstance(resp, Response)
    return resp


def sends(out: list[TransactionOutput]) -> list[Send]:
    return [o for o in out if isinstance(o, Send)]


def methods(out: list[Send]) -> list[str]:
    return [s.message.method if isinstance(s.message, Request) else "" for s in out]


def to_tu(out: list[TransactionOutput]) -> list[TransactionOutput]:
    return [o for o in out if not isinstance(o, Send)]


def run_timers(layer: TransactionLayer) -> list[tuple[float, list[TransactionOutput]]]:
    """Jump from deadline to deadline until none is left."""
    fired = []
    while (at := layer.next_deadline()) is not None:
        fired.append((at, layer.handle_timer(at)))
    return fired


# ------------------------------------------------------------------------ INVITE client


def test_invite_first_send_and_key() -> None:
    layer = TransactionLayer()
    inv = request()
    key, out = layer.request(inv, PBX, 0.0)
    assert key == "z9hG4bKsbc0001|INVITE"
    assert out == [Send(inv, PBX)]
    assert len(layer) == 1
    assert layer.next_deadline() == 0.5


def test_timer_a_doubles_then_timer_b_times_out_at_32s() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    fired = run_timers(layer)
    assert [at for at, _ in fired] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0]
    for _, out in fired[:-1]:
        assert out == [Send(inv, PBX)]  # the same message object, re-sent
    assert fired[-1][1] == [TransactionTimedOut(key)]
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_reliable_transport_no_retransmission_timer_b_only() -> None:
    layer = TransactionLayer()
    key, _ = layer.request(request(), PBX_TCP, 0.0)
    assert run_timers(layer) == [(32.0, [TransactionTimedOut(key)])]
    assert len(layer) == 0


def test_custom_t1_scales_timers() -> None:
    layer = TransactionLayer(Timers(t1=0.25))
    layer.request(request(), PBX, 0.0)
    assert [at for at, _ in run_timers(layer)] == [0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 16.0]


def test_provisional_stops_retransmission_and_goes_to_tu_each_time() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    layer.handle_timer(0.5)
    r100 = reply(inv, 100, None)
    assert layer.receive(r100, PBX, 0.7) == [ResponseReceived(r100, PBX, key)]
    r180 = reply(inv, 180)
    assert layer.receive(r180, PBX, 1.0) == [ResponseReceived(r180, PBX, key)]
    assert layer.receive(r180, PBX, 1.1) == [ResponseReceived(r180, PBX, key)]
    # Proceeding has no timer (§17.1.1.2): it waits for the final response.
    assert layer.next_deadline() is None
    assert layer.handle_timer(100.0) == []
    assert len(layer) == 1


def test_non_2xx_final_builds_ack_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    r486 = reply(inv, 486)
    out = layer.receive(r486, PBX, 0.2)
    assert to_tu(out) == [ResponseReceived(r486, PBX, key)]
    [send] = sends(out)
    assert send.dest == PBX
    ack = send.message
    assert isinstance(ack, Request)
    # §17.1.1.3: same Request-URI, top Via, Call-ID, From, CSeq number, Route; To of the
    # response.
    assert ack.method == "ACK"
    assert ack.uri_text == inv.uri_text
    assert ack.header_lines("via") == ["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsbc0001;rport"]
    assert ack.header("call-id") == inv.header("call-id")
    assert ack.header("from") == inv.header("from")
    assert ack.header("to") == "<sip:bob@example.com>;tag=callee-1"
    assert ack.header("cseq") == "1 ACK"
    assert ack.header_lines("route") == ["<sip:192.0.2.20;lr>"]
    assert ack.header("max-forwards") == "70"
    assert parse_datagram(bytes(ack)).header("cseq") == "1 ACK"  # serialises and parses
    # A retransmitted final: the same ACK again, the TU hears nothing.
    assert layer.receive(r486, PBX, 1.0) == [Send(ack, PBX)]
    # No more INVITE retransmissions; timer D (32 s on UDP) from the first final.
    assert layer.next_deadline() == pytest.approx(32.2)
    assert layer.handle_timer(32.1) == []
    assert len(layer) == 1
    assert layer.handle_timer(32.2) == []
    assert len(layer) == 0
    # After D a late retransmission is a stray response: dropped.
    assert layer.receive(r486, PBX, 40.0) == []


def test_timer_d_is_zero_on_tcp() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX_TCP, 0.0)
    r503 = reply(inv, 503)
    out = layer.receive(r503, PBX_TCP, 1.0)
    assert to_tu(out) == [ResponseReceived(r503, PBX_TCP, key)]
    assert len(sends(out)) == 1
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_custom_timer_d() -> None:
    layer = TransactionLayer(Timers(timer_d=40.0))
    inv = request()
    layer.request(inv, PBX, 0.0)
    layer.receive(reply(inv, 404), PBX, 1.0)
    assert layer.next_deadline() == 41.0


def test_2xx_enters_accepted_and_retransmissions_go_to_tu_until_acked() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    r200 = reply(inv, 200)
    assert layer.receive(r200, PBX, 0.1) == [ResponseReceived(r200, PBX, key)]
    # RFC 6026 Accepted: timer M = 64*T1; no ACK from the transaction (the TU's job).
    assert layer.next_deadline() == pytest.approx(32.1)
    # A retransmission before the TU's ACK is passed on (the TU acks it).
    assert layer.receive(r200, PBX, 0.6) == [ResponseReceived(r200, PBX, key)]
    # 1xx and non-2xx finals are dropped in Accepted.
    assert layer.receive(reply(inv, 180), PBX, 0.7) == []
    assert layer.receive(reply(inv, 500), PBX, 0.7) == []
    ack = request(ACK_2XX)
    ack_dest = Addr("udp", "192.0.2.21", 5060)
    assert layer.ack(ack, ack_dest, 1.0) == [Send(ack, ack_dest)]
    # Now the layer answers the retransmission with the TU's ACK; the TU hears nothing.
    assert layer.receive(r200, PBX, 1.5) == [Send(ack, ack_dest)]
    # Timer M ends the transaction...
    assert layer.handle_timer(32.1) == []
    assert len(layer) == 0
    # ... but the ACK is kept 64*T1 from when it was sent: a late 2xx still gets it.
    assert layer.receive(r200, PBX, 32.5) == [Send(ack, ack_dest)]
    assert layer.next_deadline() == 33.0
    assert layer.handle_timer(33.0) == []
    assert layer.next_deadline() is None
    # Then a 2xx with no transaction goes to the TU (key None).
    assert layer.receive(r200, PBX, 34.0) == [ResponseReceived(r200, PBX, None)]


def test_2xx_from_another_fork_still_reaches_the_tu() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    layer.receive(reply(inv, 200, "callee-1"), PBX, 0.1)
    layer.ack(request(ACK_2XX), PBX, 0.2)
    other = reply(inv, 200, "callee-2")
    assert layer.receive(other, PBX, 0.3) == [ResponseReceived(other, PBX, key)]


def test_2xx_over_tcp_then_timer_m() -> None:
    layer = TransactionLayer()
    inv = request()
    layer.request(inv, PBX_TCP, 0.0)
    layer.receive(reply(inv, 200), PBX_TCP, 2.0)
    assert run_timers(layer) == [(34.0, [])]
    assert len(layer) == 0


def test_final_in_calling_stops_timer_b_and_a() -> None:
    layer = TransactionLayer()
    inv = request()
    layer.request(inv, PBX, 0.0)
    layer.receive(reply(inv, 603), PBX, 0.1)
    fired = run_timers(layer)
    assert [at for at, _ in fired] == [pytest.approx(32.1)]
    assert fired[0][1] == []


def test_late_wake_up_sends_one_retransmission() -> None:
    layer = TransactionLayer()
    inv = request()
    layer.request(inv, PBX, 0.0)
    # The driver wakes 2 s late: one retransmission, the next one measured from now.
    assert layer.handle_timer(2.5) == [Send(inv, PBX)]
    assert layer.next_deadline() == 3.5
    # A duplicate wake-up is harmless.
    assert layer.handle_timer(2.5) == []


def test_overdue_timer_fires_before_the_message_it_arrives_with() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    for at in (0.5, 1.5, 3.5, 7.5, 15.5, 31.5):
        layer.handle_timer(at)
    # Timer B (32 s) is due but the driver has not woken yet when a 180 arrives.
    out = layer.receive(reply(inv, 180), PBX, 33.0)
    assert out == [TransactionTimedOut(key)]
    assert len(layer) == 0


# ---------------------------------------------------------------------- non-INVITE client


def test_timer_e_doubles_up_to_t2_then_timer_f() -> None:
    layer = TransactionLayer()
    opt = request(OPTIONS)
    key, out = layer.request(opt, PBX, 0.0)
    assert key == "z9hG4bKsbc0002|OPTIONS"
    assert out == [Send(opt, PBX)]
    fired = run_timers(layer)
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert [at for at, _ in fired] == expected
    for _, out in fired[:-1]:
        assert out == [Send(opt, PBX)]
    assert fired[-1][1] == [TransactionTimedOut(key)]
    assert len(layer) == 0


def test_timer_e_is_t2_in_proceeding() -> None:
    layer = TransactionLayer()
    opt = request(OPTIONS)
    key, _ = layer.request(opt, PBX, 0.0)
    r100 = reply(opt, 100, None)
    assert layer.receive(r100, PBX, 0.2) == [ResponseReceived(r100, PBX, key)]
    fired = run_timers(layer)
    expected = [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.0]
    assert [at for at, _ in fired] == expected
    assert fired[-1][1] == [TransactionTimedOut(key)]


def test_non_invite_final_then_timer_k() -> None:
    layer = TransactionLayer()
    opt = request(OPTIONS)
    key, _ = layer.request(opt, PBX, 0.0)
    r200 = reply(opt, 200)
    assert layer.receive(r200, PBX, 0.4) == [ResponseReceived(r200, PBX, key)]
    # Completed: retransmissions of the final (and late 1xx) absorbed; timer K = T4.
    assert layer.receive(r200, PBX, 1.0) == []
    assert layer.receive(reply(opt, 100, None), PBX, 1.0) == []
    [(at, out)] = run_timers(layer)
    assert at == pytest.approx(5.4)
    assert out == []
    assert len(layer) == 0
    assert layer.receive(r200, PBX, 6.0) == []  # stray: a 2xx to OPTIONS never reaches the TU


def test_non_invite_over_tcp_timer_f_only_and_k_zero() -> None:
    layer = TransactionLayer()
    opt = request(OPTIONS)
    key, _ = layer.request(opt, PBX_TCP, 0.0)
    assert layer.next_deadline() == 32.0
    r404 = reply(opt, 404)
    assert layer.receive(r404, PBX_TCP, 1.0) == [ResponseReceived(r404, PBX_TCP, key)]
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_provisionals_in_proceeding_go_to_tu() -> None:
    layer = TransactionLayer()
    opt = request(OPTIONS)
    key, _ = layer.request(opt, PBX, 0.0)
    r100 = reply(opt, 100, None)
    layer.receive(r100, PBX, 0.1)
    assert layer.receive(r100, PBX, 0.2) == [ResponseReceived(r100, PBX, key)]


# ------------------------------------------------------------------------------- CANCEL


def test_make_cancel_after_provisional() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    layer.receive(reply(inv, 180), PBX, 1.0)
    cancel = layer.make_cancel(key)
    assert cancel is not None
    # §9.1: same Request-URI, top Via, Call-ID, From, To, Route, CSeq number.
    assert cancel.method == "CANCEL"
    assert cancel.uri_text == inv.uri_text
    assert cancel.header_lines("via") == inv.header_lines("via")
    for name in ("from", "to", "call-id"):
        assert cancel.header(name) == inv.header(name)
    assert cancel.header("cseq") == "1 CANCEL"
    assert cancel.header_lines("route") == inv.header_lines("route")
    ckey, out = layer.request(cancel, PBX, 2.0)
    assert ckey == "z9hG4bKsbc0001|CANCEL"
    assert out == [Send(cancel, PBX)]
    assert layer.make_cancel(key) is None  # one CANCEL is enough
    r200 = reply(cancel, 200)
    assert layer.receive(r200, PBX, 2.1) == [ResponseReceived(r200, PBX, ckey)]
    r487 = reply(inv, 487)
    out = layer.receive(r487, PBX, 2.2)
    assert to_tu(out) == [ResponseReceived(r487, PBX, key)]
    assert methods(sends(out)) == ["ACK"]
    assert layer.make_cancel(key) is None  # final received
    run_timers(layer)
    assert len(layer) == 0


def test_make_cancel_before_provisional_is_deferred() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    assert layer.make_cancel(key) is None  # §9.1: not before a provisional
    assert layer.make_cancel(key) is None
    layer.handle_timer(0.5)  # still retransmitting the INVITE
    r180 = reply(inv, 180)
    out = layer.receive(r180, PBX, 0.8)
    assert out[0] == ResponseReceived(r180, PBX, key)
    [send] = out[1:]
    assert isinstance(send, Send)
    cancel = send.message
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL"
    assert send.dest == PBX
    assert cancel.header("cseq") == "1 CANCEL"
    assert layer.make_cancel(key) is None  # already sent
    # The CANCEL's own transaction is the layer's: its responses do not reach the TU.
    assert layer.receive(reply(cancel, 200), PBX, 0.9) == []
    assert len(layer) == 2  # INVITE + CANCEL (in Completed, timer K)
    r487 = reply(inv, 487)
    assert to_tu(layer.receive(r487, PBX, 1.0)) == [ResponseReceived(r487, PBX, key)]


def test_deferred_cancel_retransmits_silently_and_times_out_silently() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    layer.make_cancel(key)
    assert layer.handle_timer(0.5) == [Send(inv, PBX)]
    out = layer.receive(reply(inv, 183), PBX, 1.0)
    [send] = sends(out)
    cancel = send.message
    fired = run_timers(layer)
    # CANCEL retransmitted by timer E from 1.0; the CANCEL's timer F and the INVITE's timer B
    # (re-armed when the CANCEL went out, §9.1) both at 33.0; only B reaches the TU.
    assert [at for at, _ in fired][:3] == [1.5, 2.5, 4.5]
    assert all(o == Send(cancel, PBX) for _, outs in fired[:-1] for o in outs)
    tu = [o for _, outs in fired for o in to_tu(outs)]
    assert tu == [TransactionTimedOut(key)]
    assert fired[-1][0] == 33.0
    assert len(layer) == 0


def test_cancel_rearms_timer_b_in_proceeding() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX_TCP, 0.0)
    layer.receive(reply(inv, 180), PBX_TCP, 1.0)
    assert layer.next_deadline() is None
    cancel = layer.make_cancel(key)
    assert cancel is not None
    layer.request(cancel, PBX_TCP, 10.0)
    layer.receive(reply(cancel, 200), PBX_TCP, 10.1)  # CANCEL done (K = 0 on TCP)
    assert len(layer) == 1
    assert layer.next_deadline() == 42.0
    assert layer.handle_timer(42.0) == [TransactionTimedOut(key)]
    assert len(layer) == 0


def test_make_cancel_unknown_or_non_invite_key() -> None:
    layer = TransactionLayer()
    assert layer.make_cancel("nope") is None
    key, _ = layer.request(request(OPTIONS), PBX, 0.0)
    assert layer.make_cancel(key) is None


def test_deferred_cancel_dropped_when_final_comes_first() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    layer.make_cancel(key)
    out = layer.receive(reply(inv, 486), PBX, 0.3)
    assert methods(sends(out)) == ["ACK"]


# ------------------------------------------------------------- what a transaction keeps


def client(layer: TransactionLayer, key: str) -> ClientTransaction:
    return layer._clients[key]


def test_non_2xx_final_drops_the_invite_and_keeps_the_ack() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    txn = client(layer, key)
    assert isinstance(txn, InviteClientTransaction)
    layer.receive(reply(inv, 180), PBX, 0.1)
    assert txn.request is inv  # a CANCEL may still be built from it
    r486 = reply(inv, 486)
    [send] = sends(layer.receive(r486, PBX, 0.2))
    assert txn.request is None and txn.ack is send.message
    assert inv not in gc.get_referents(txn)
    # Retransmissions of the final get the same ACK, built before the INVITE was dropped.
    assert layer.receive(r486, PBX, 10.0) == [Send(send.message, PBX)]
    assert layer.make_cancel(key) is None
    assert run_timers(layer) == [(pytest.approx(32.2), [])]
    assert txn.ack is None  # an ended transaction keeps nothing


def test_2xx_drops_the_invite_and_the_tu_ack_is_not_kept_twice() -> None:
    layer = TransactionLayer()
    inv = request()
    key, _ = layer.request(inv, PBX, 0.0)
    txn = client(layer, key)
    assert isinstance(txn, InviteClientTransaction)
    r200 = reply(inv, 200)
    layer.receive(r200, PBX, 0.1)
    assert txn.request is None and txn.ack is None
    ack = request(ACK_2XX)
    layer.ack(ack, PBX, 0.2)
    assert layer.receive(r200, PBX, 0.6) == [Send(ack, PBX)]
    assert txn.tu_ack is None  # only the layer's table of sent ACKs holds it
    assert layer.make_cancel(key) is None
    assert run_timers(layer) == [(pytest.approx(32.1), []), (pytest.approx(32.2), [])]
    assert not layer._acks


def test_non_invite_final_drops_the_request() -> None:
    layer = TransactionLayer()
    opt = request(OPTIONS)
    key, _ = layer.request(opt, PBX, 0.0)
    txn = client(layer, key)
    layer.receive(reply(opt, 100), PBX, 0.1)
    assert txn.request is opt  # Proceeding: timer E still re-sends it
    assert layer.handle_timer(4.1) == [Send(opt, PBX)]
    layer.receive(reply(opt, 200), PBX, 4.2)
    assert txn.request is None
    assert layer.next_deadline() == pytest.approx(9.2)  # timer K


# --------------------------------------------------------------------------- edge cases


def test_stray_responses_are_dropped() -> None:
    layer = TransactionLayer()
    inv = request()
    layer.request(inv, PBX, 0.0)
    other = request(INVITE.replace(b"z9hG4bKsbc0001", b"z9hG4bKunknown"))
    assert layer.receive(reply(other, 180), PBX, 0.1) == []
    assert layer.receive(reply(other, 486), PBX, 0.1) == []
    assert layer.receive(reply(request(OPTIONS), 200), PBX, 0.1) == []
    # Right branch, wrong CSeq method: not this transaction (§17.1.3).
    bye = request(INVITE.replace(b"1 INVITE", b"1 BYE").replace(b"INVITE sip", b"BYE sip"))
    assert layer.receive(reply(bye, 200), PBX, 0.1) == []


def test_request_refuses_ack_missing_branch_and_reused_branch() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="ack"):
        layer.request(request(ACK_2XX), PBX, 0.0)
    no_branch = request(INVITE.replace(b";branch=z9hG4bKsbc0001", b""))
    with pytest.raises(ValueError, match="branch"):
        layer.request(no_branch, PBX, 0.0)
    layer.request(request(), PBX, 0.0)
    with pytest.raises(ValueError, match="fresh branch"):
        layer.request(request(), PBX, 0.0)


def test_bad_timer_values_are_refused() -> None:
    with pytest.raises(ValueError):
        TransactionLayer(Timers(t1=0.0))
    with pytest.raises(ValueError):
        TransactionLayer(Timers(t1=5.0, t2=4.0))
