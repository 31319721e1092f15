"""RFC 4028 session timers on each leg, with explicit time: what each peer is asked and
granted, 422 both ways, the node's refreshes, sessions that expire, refreshes answered here."""

from __future__ import annotations

from peers import OPERATOR, PBX1, Bench, answer, answer_with, in_dialog, invite, requests, responses

from pkiss.b2bua import Call
from pkiss.sip.message import Request, Response

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator:
    role: carrier
    hosts: [127.0.0.2:5060]
    health: false
    session_timer: {expires: 120, min_se: 100}
  pbx:
    role: pbx
    hosts: [127.0.0.3:5060]
    dids: ["+331*"]
    health: false
    session_timer: {expires: 300}
"""


def _with(message: bytes, *lines: str) -> bytes:
    extra = "".join(f"{line}\r\n" for line in lines).encode()
    return message.replace(b"Content-Length:", extra + b"Content-Length:", 1)


def _sent(out: list, dest: object, method: str) -> list[Request]:
    """The requests of ``method`` sent to ``dest``, once each (not their retransmissions)."""
    seen: dict[object, Request] = {}
    for request in requests(out, dest, method):  # type: ignore[arg-type]
        seen.setdefault(request.header("cseq"), request)
    return list(seen.values())


def _refresh_ok(bench: Bench, refresh: Request) -> list:
    """The operator's 200 to a refresh of the node's."""
    reply = answer(refresh, 200, tag="op1", sdp=refresh.method == "INVITE")
    return bench.feed(_with(reply, "Session-Expires: 120;refresher=uac"), OPERATOR)


def _until(bench: Bench, end: float) -> list:
    """Time passing until ``end``, the operator answering the node's refreshes at once."""
    out: list = []
    while bench.now < end:
        step = bench.advance(min(end, bench.now + 5.0))
        for refresh in [*_sent(step, OPERATOR, "INVITE"), *_sent(step, OPERATOR, "UPDATE")]:
            step += _refresh_ok(bench, refresh)
        out += step
    return out


def _answered(bench: Bench, caller_lines: tuple[str, ...] = (),
              callee_lines: tuple[str, ...] = ()) -> tuple[Request, Response, str]:  # fmt: skip
    """A call from the operator answered by the PBX: (B-leg INVITE, caller's 200, A tag)."""
    (b_invite,) = requests(bench.feed(_with(invite(), *caller_lines), OPERATOR), PBX1, "INVITE")
    reply = _with(answer(b_invite, 200, sdp=True), *callee_lines)
    (ok,) = [r for r in responses(bench.feed(reply, PBX1), OPERATOR) if r.status == 200]
    tag = ok.to.tag if ok.to and ok.to.tag else ""
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    return b_invite, ok, tag


def test_each_leg_is_asked_and_granted_its_own_interval() -> None:
    bench = Bench(CONFIG)
    b_invite, ok, _ = _answered(bench, ("Supported: timer", "Session-Expires: 1000"))
    # toward the PBX: its own settings, the node offering to refresh
    assert "timer" in b_invite.values("supported")
    assert b_invite.header("session-expires") == "300;refresher=uac"
    assert b_invite.header("min-se") == "90"
    # toward the operator: its 1000 s lowered to its expires, it refreshes (it supports it)
    assert ok.header("session-expires") == "120;refresher=uas"
    assert ok.values("require") == ["timer"]


def test_an_interval_below_min_se_gets_422_and_no_call() -> None:
    bench = Bench(CONFIG)
    out = bench.feed(_with(invite(), "Supported: timer", "Session-Expires: 95"), OPERATOR)
    (refusal,) = [r for r in responses(out, OPERATOR) if r.status != 100]
    assert refusal.status == 422 and refusal.header("min-se") == "100"
    assert not requests(out, PBX1, "INVITE") and not bench.calls.calls


def test_a_caller_without_timer_support_gets_its_interval_raised_not_refused() -> None:
    bench = Bench(CONFIG)
    _, ok, _ = _answered(bench, ("Session-Expires: 95",))
    assert ok.header("session-expires") == "100;refresher=uas"
    assert not ok.values("require"), "no Require: timer for a UA that does not support it"


def test_a_422_from_the_callee_is_answered_once_with_the_interval_it_wants() -> None:
    bench = Bench(CONFIG)
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    out = bench.feed(answer_with(first, 422, "Min-SE: 1800"), PBX1)
    (again,) = requests(out, PBX1, "INVITE")
    assert again.header("session-expires") == "1800;refresher=uac"
    assert again.header("min-se") == "1800"
    assert again.cseq and first.cseq and again.cseq.seq == first.cseq.seq + 1
    assert again.call_id == first.call_id
    assert not [r for r in responses(out, OPERATOR) if r.status >= 200]


def test_the_node_refreshes_its_legs_at_half_the_interval() -> None:
    bench = Bench(CONFIG)
    _, ok, _ = _answered(bench, callee_lines=("Session-Expires: 300;refresher=uac",))
    assert ok.header("session-expires") == "120;refresher=uas"
    out = bench.advance(59.0)
    assert not requests(out, OPERATOR, "INVITE")
    out = bench.advance(61.0)
    (refresh,) = _sent(out, OPERATOR, "INVITE")  # the operator did not allow UPDATE
    assert refresh.body == ok.body, "the same session description, unchanged"
    assert refresh.header("session-expires") == "120;refresher=uac"
    assert refresh.to and refresh.to.tag == "op1" and refresh.call_id == "call1@127.0.0.2"
    out = _refresh_ok(bench, refresh)
    (ack,) = requests(out, OPERATOR, "ACK")
    assert ack.cseq and refresh.cseq and ack.cseq.seq == refresh.cseq.seq
    assert not requests(out, PBX1, "INVITE"), "a refresh of the node's stays on its leg"
    # the PBX leg (300 s) is refreshed at 150 s; the operator's again at 121 s
    out = bench.advance(151.0)
    assert len(_sent(out, OPERATOR, "INVITE")) == 1
    assert len(_sent(out, PBX1, "INVITE")) == 1
    assert len(bench.calls.calls) == 1


def test_refreshes_are_updates_without_a_body_when_the_peer_allows_update() -> None:
    bench = Bench(CONFIG)
    _answered(bench, ("Allow: INVITE, ACK, BYE, CANCEL, UPDATE",))
    (update,) = _sent(bench.advance(61.0), OPERATOR, "UPDATE")
    assert not update.body and update.header("session-expires") == "120;refresher=uac"


def test_a_session_the_peer_does_not_refresh_expires_and_ends_both_legs() -> None:
    ended: list[Call] = []
    bench = Bench(CONFIG, on_end=ended.append)
    _answered(bench, callee_lines=("Session-Expires: 300;refresher=uas",))
    out = _until(bench, 265.0)
    assert len(_sent(out, OPERATOR, "INVITE")) == 4, "the operator's leg, every 60 s"
    assert not requests(out, PBX1, "BYE")
    out = _until(bench, 269.0)  # 300 - min(32, 300/3)
    assert requests(out, PBX1, "BYE") and requests(out, OPERATOR, "BYE")
    assert [call.end_reason for call in ended] == ["session expired"]


def test_a_bodiless_update_from_a_peer_is_a_refresh_answered_on_its_leg() -> None:
    bench = Bench(CONFIG)
    b_invite, _, _ = _answered(bench, callee_lines=("Session-Expires: 300;refresher=uas",))
    assert b_invite.from_ and b_invite.call_id
    update = (
        "UPDATE sip:127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK-u1\r\n"
        f"From: <sip:+33123456789@127.0.0.3>;tag=pbx\r\nTo: {b_invite.header('from')}\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: 2 UPDATE\r\nSession-Expires: 300;refresher=uac\r\n"
        "Supported: timer\r\nContact: <sip:127.0.0.3>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    _until(bench, 200.0)
    out = bench.feed(update, PBX1)
    (ok,) = responses(out, PBX1)
    assert ok.status == 200 and ok.header("session-expires") == "300;refresher=uac"
    assert not requests(out, OPERATOR, "UPDATE"), "nothing in it for the other side"
    out = _until(bench, 465.0)
    assert not requests(out, PBX1, "BYE"), "refreshed at 200 s: expires at 468 s"
    assert requests(_until(bench, 470.0), PBX1, "BYE")


def test_a_relayed_reinvite_carries_each_legs_own_timer() -> None:
    bench = Bench(CONFIG)
    _, _, tag = _answered(bench, ("Supported: timer", "Session-Expires: 120"),
                          ("Session-Expires: 300;refresher=uac",))  # fmt: skip
    reinvite = _with(in_dialog("INVITE", 1, tag, 2), "Session-Expires: 110;refresher=uac",
                     "Supported: timer")  # fmt: skip
    (relayed,) = requests(bench.feed(reinvite, OPERATOR), PBX1, "INVITE")
    assert relayed.header("session-expires") == "300;refresher=uac"
    (ok,) = [r for r in responses(bench.feed(answer(relayed, 200), PBX1), OPERATOR)
             if r.status == 200]  # fmt: skip
    assert ok.header("session-expires") == "110;refresher=uac"


def test_no_timer_when_the_peer_has_them_off() -> None:
    bench = Bench(CONFIG.replace("session_timer: {expires: 300}", "session_timer: false"))
    b_invite, ok, _ = _answered(bench, ("Supported: timer", "Session-Expires: 120"))
    assert b_invite.header("session-expires") is None
    assert "timer" not in b_invite.values("supported")
    assert ok.header("session-expires") == "120;refresher=uas", "the operator's leg has its own"


def test_a_refresh_that_times_out_ends_the_call() -> None:
    ended: list[Call] = []
    bench = Bench(CONFIG, on_end=ended.append)
    _answered(bench)
    out = bench.advance(95.0)  # the re-INVITE at 60 s never answered: Timer B at 92 s
    assert requests(out, PBX1, "BYE")
    assert [call.end_reason for call in ended] == ["session refresh timed out"]
