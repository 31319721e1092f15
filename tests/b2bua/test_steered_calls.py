"""Drains and hangups in the B2BUA core with explicit time: a drained host gets no new call
but its call in progress goes on; a call hung up by the operator gets a BYE on both legs
(CANCEL and 487 while it rings) and its record says why."""

from __future__ import annotations

from peers import OPERATOR, PBX1, PBX2, Bench, answer, in_dialog, invite, requests, responses

from pkiss.b2bua.call import Call
from pkiss.sip.transaction import Send

REASON = "hung up by admin"


def _answered(bench: Bench, n: int = 1) -> str:
    """Call n up through the host its INVITE went to; the caller's To tag."""
    out = bench.feed(invite(n), OPERATOR)
    dest = PBX1 if requests(out, PBX1, "INVITE") else PBX2
    (sent,) = requests(out, dest, "INVITE")
    replies = responses(bench.feed(answer(sent, 200, sdp=True), dest), OPERATOR)
    ok = next(r for r in replies if r.status == 200)
    tag = ok.to.tag if ok.to else ""
    bench.feed(in_dialog("ACK", n, tag, 1), OPERATOR)
    return tag


def test_a_drained_host_gets_no_new_call_but_keeps_its_call_in_progress() -> None:
    bench = Bench()
    tag = _answered(bench, 1)
    drains = bench.calls.drains
    assert drains.change("host", ["127.0.0.3:5060"], True)
    out = bench.feed(invite(2), OPERATOR)
    assert requests(out, PBX2, "INVITE") and not requests(out, PBX1, "INVITE")
    # the first call's BYE still reaches the drained host
    out = bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR)
    assert len(requests(out, PBX1, "BYE")) == 1
    # undrained: the next call goes to the primary again
    drains.change("host", ["127.0.0.3:5060"], False)
    assert requests(bench.feed(invite(3), OPERATOR), PBX1, "INVITE")


def test_hangup_of_an_answered_call_sends_bye_on_both_legs() -> None:
    ended: list[Call] = []
    bench = Bench(on_end=ended.append)
    _answered(bench, 1)
    (call,) = bench.calls.calls
    assert bench.core.hangup("no-such-call", REASON, bench.now) is None
    sends = bench.core.hangup(call.a.call_id, REASON, bench.now)
    assert sends is not None
    out = [Send(s.message, s.dest) for s in sends]
    byes = [s.dest for s in out if getattr(s.message, "method", None) == "BYE"]
    assert sorted(map(str, byes)) == sorted(map(str, [OPERATOR, PBX1]))
    assert not bench.calls.calls
    assert [c.end_reason for c in ended] == [REASON]


def test_hangup_of_a_ringing_call_cancels_it_and_answers_487() -> None:
    ended: list[Call] = []
    bench = Bench(on_end=ended.append)
    out = bench.feed(invite(1), OPERATOR)
    (sent,) = requests(out, PBX1, "INVITE")
    bench.feed(answer(sent, 180), PBX1)
    (call,) = bench.calls.calls
    sends = bench.core.hangup(call.a.call_id, REASON, bench.now)
    assert sends is not None
    statuses = [
        s.message.status for s in sends if s.dest == OPERATOR and hasattr(s.message, "status")
    ]
    assert statuses == [487]
    assert [s.message.method for s in sends if s.dest == PBX1] == ["CANCEL"]  # type: ignore[union-attr]
    assert [c.end_reason for c in ended] == [REASON]
