"""An ended call gives its memory back: neither its deadlines still in the heap (a session
refresh due in 15 minutes, an answer timeout in 2) nor anything else keeps it once its
transactions are over, and the deadline heap lets an ended call's deadlines go once they come
within its horizon, long before they are due."""

from __future__ import annotations

import gc

from peers import OPERATOR, PBX1, Bench, answer, in_dialog, invite, requests, responses

from pkiss.b2bua import Call
from pkiss.b2bua.call import CallTimer
from pkiss.core import HORIZON

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator:
    role: carrier
    hosts: [127.0.0.2:5060]
    health: false
    session_timer: {expires: 1800}
  pbx:
    role: pbx
    hosts: [127.0.0.3:5060]
    dids: ["+331*"]
    health: false
    session_timer: {expires: 1800}
"""
CALLS = 12_000


def _call(bench: Bench, n: int) -> None:
    """Call ``n``: answered by the PBX, then the operator hangs up."""
    (b_invite,) = requests(bench.feed(invite(n), OPERATOR), PBX1, "INVITE")
    (ok,) = [r for r in responses(bench.feed(answer(b_invite, 200, sdp=True), PBX1), OPERATOR)
             if r.status == 200]  # fmt: skip
    tag = ok.to.tag if ok.to and ok.to.tag else ""
    bench.feed(in_dialog("ACK", n, tag, 1), OPERATOR)
    (b_bye,) = requests(bench.feed(in_dialog("BYE", n, tag, 2), OPERATOR), PBX1, "BYE")
    bench.feed(answer(b_bye, 200), PBX1)


def _calls_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Call))


def test_ended_calls_are_freed_and_the_deadline_heap_stays_bounded() -> None:
    bench = Bench(CONFIG)
    before = _calls_alive()
    for n in range(CALLS):
        _call(bench, n)
        bench.advance(bench.now + 0.002)
    assert not bench.calls.calls
    # every call set a setup deadline, an answer timeout and a session refresh per leg, due
    # later than now: none of them holds its call any more
    deadlines = bench.core._deadlines
    held = [d for d in deadlines if isinstance(d.ref, CallTimer) and d.ref.call is not None]
    assert held == []
    # once the INVITE transactions are over (64*T1), nothing keeps an ended call
    bench.advance(bench.now + 40.0)
    assert _calls_alive() - before == 0
    # and the heap lets their deadlines go once they come within its horizon, long before
    # they are due (a session refresh in 15 minutes: 4 deadlines a call ended, without that)
    bench.advance(bench.now + HORIZON)
    timers = [d for d in bench.core._deadlines if isinstance(d.ref, CallTimer)]
    assert timers == [], len(timers)
