"""Per-peer limits through the B2BUA core, explicit time: over the limit the caller gets 503
with Retry-After before any B-leg exists, and whichever way a call ends its counters are back
to zero afterwards."""

from __future__ import annotations

from peers import (
    OPERATOR,
    PBX1,
    PBX2,
    Bench,
    answer,
    cancel,
    in_dialog,
    invite,
    requests,
    responses,
)

from pkiss.config import parse_config
from pkiss.routing import Router
from pkiss.sip.message import Request, Response
from pkiss.sip.transaction import Addr, Send

CARRIER_B = Addr("udp", "127.0.0.5", 5060)

LIMITED = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060], health: false, limits: {calls: 2, cps: 5}}
  other: {role: carrier, hosts: [127.0.0.5:5060], health: false}
  pbx:
    role: pbx
    hosts: [{address: "127.0.0.3:5060", priority: 1}, {address: "127.0.0.4:5060", priority: 2}]
    dids: ["+331*"]
    setup_timeout: 3
    health: false
    limits: {calls: PBX_CALLS}
routes: [{prefix: "", via: [operator, other]}]
"""


def _bench(pbx_calls: int = 2) -> Bench:
    return Bench(LIMITED.replace("PBX_CALLS", str(pbx_calls)))


def _counts(bench: Bench) -> dict[str, int]:
    return {name: c.calls for name, c in bench.calls.limits.snapshot().items()}


def _statuses(sends: list[Send]) -> list[int]:
    return [r.status for r in responses(sends, OPERATOR)]


def _final(sends: list[Send], dest: Addr = OPERATOR) -> Response:
    (final,) = [r for r in responses(sends, dest) if r.status >= 200]
    return final


def _answered(bench: Bench, n: int = 1) -> tuple[Request, str]:
    """Call ``n`` from the operator answered by the first PBX host: (B-leg INVITE, A tag)."""
    (b_invite,) = requests(bench.feed(invite(n), OPERATOR), PBX1, "INVITE")
    ok = _final(bench.feed(answer(b_invite, 200, f"pbx{n}", sdp=True), PBX1))
    assert ok.status == 200
    return b_invite, ok.to.tag if ok.to and ok.to.tag else ""


def _bye_from_callee(b_invite: Request, tag: str) -> bytes:
    return (
        f"BYE sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK-pbxbye{tag}\r\n"
        f"From: {b_invite.header('to')};tag={tag}\r\nTo: {b_invite.header('from')}\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


# --------------------------------------------------------------------------- refusals
def test_over_the_source_peers_calls_limit_gets_503_with_retry_after_and_no_b_leg() -> None:
    bench = _bench(pbx_calls=10)
    _answered(bench, 1)
    _answered(bench, 2)
    assert _counts(bench) == {"operator": 2, "pbx": 2}
    out = bench.feed(invite(3), OPERATOR)
    final = _final(out)
    assert final.status == 503 and final.header("retry-after") == "5"
    assert not requests(out, PBX1, "INVITE") and not requests(out, PBX2, "INVITE")
    assert _counts(bench) == {"operator": 2, "pbx": 2}
    assert len(bench.calls.calls) == 2 and bench.calls.stats["limited"] == 1


def test_over_the_source_peers_cps_gets_503_retry_after_1_then_room_again() -> None:
    bench = Bench(LIMITED.replace("PBX_CALLS", "100").replace("calls: 2, cps: 5", "cps: 5"))
    for n in range(1, 6):
        assert requests(bench.feed(invite(n), OPERATOR), PBX1, "INVITE")
    out = bench.feed(invite(6), OPERATOR)
    assert _final(out).status == 503 and _final(out).header("retry-after") == "1"
    bench.advance(0.2)
    assert requests(bench.feed(invite(7), OPERATOR), PBX1, "INVITE"), "a token came back"


def test_a_full_target_peer_gives_503_with_retry_after() -> None:
    bench = _bench(pbx_calls=1)
    _, tag = _answered(bench, 1)
    out = bench.feed(invite(2), OPERATOR)
    final = _final(out)
    assert final.status == 503 and final.header("retry-after") == "5"
    assert not requests(out, PBX1, "INVITE") and not requests(out, PBX2, "INVITE")
    assert _counts(bench) == {"operator": 1, "pbx": 1}, "the refused call released its source"
    bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR)
    assert _counts(bench) == {"operator": 0, "pbx": 0}
    assert requests(bench.feed(invite(3), OPERATOR), PBX1, "INVITE"), "room again"


def test_a_full_carrier_is_skipped_for_the_next_one_and_counts_follow_the_call() -> None:
    bench = Bench(LIMITED.replace("PBX_CALLS", "5").replace("calls: 2, cps: 5", "calls: 0"))
    out = bench.feed(invite(1, called="+442079460000"), PBX1)
    (b_invite,) = requests(out, CARRIER_B, "INVITE")
    assert not requests(out, OPERATOR, "INVITE"), "operator (calls: 0) is full: skipped"
    assert _counts(bench) == {"operator": 0, "other": 1, "pbx": 1}
    out = bench.feed(answer(b_invite, 486), CARRIER_B)
    finals = [s.message.status for s in out if isinstance(s.message, Response)]
    assert 486 in finals, "the callee's answer goes back to the PBX"
    assert _counts(bench) == {"operator": 0, "other": 0, "pbx": 0}


def test_moving_to_another_carrier_moves_the_count() -> None:
    bench = Bench(LIMITED.replace("PBX_CALLS", "5"))
    (first,) = requests(bench.feed(invite(1, called="+442079460000"), PBX1), OPERATOR, "INVITE")
    assert _counts(bench) == {"operator": 1, "pbx": 1}
    (second,) = requests(bench.feed(answer(first, 503), OPERATOR), CARRIER_B, "INVITE")
    assert _counts(bench) == {"operator": 0, "other": 1, "pbx": 1}
    bench.feed(answer(second, 200, sdp=True), CARRIER_B)
    assert _counts(bench) == {"operator": 0, "other": 1, "pbx": 1}
    bench.core.hangup_all(bench.now)
    assert _counts(bench) == {"operator": 0, "other": 0, "pbx": 0}


def test_failover_between_hosts_of_one_peer_counts_the_call_once() -> None:
    bench = _bench(pbx_calls=1)
    (first,) = requests(bench.feed(invite(1), OPERATOR), PBX1, "INVITE")
    (second,) = requests(bench.feed(answer(first, 503), PBX1), PBX2, "INVITE")
    assert _counts(bench) == {"operator": 1, "pbx": 1}
    assert _final(bench.feed(answer(second, 200, sdp=True), PBX2)).status == 200


# ------------------------------------------------------------------ back to zero after
def _zero(bench: Bench) -> None:
    assert not bench.calls.calls
    assert all(c == 0 for c in _counts(bench).values()), bench.calls.limits.snapshot()


def test_released_after_bye_from_the_caller() -> None:
    bench = _bench()
    _, tag = _answered(bench)
    assert _counts(bench) == {"operator": 1, "pbx": 1}
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    assert _statuses(bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR)) == [200]
    _zero(bench)


def test_released_after_bye_from_the_callee() -> None:
    bench = _bench()
    b_invite, tag = _answered(bench)
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    out = bench.feed(_bye_from_callee(b_invite, "pbx1"), PBX1)
    assert requests(out, OPERATOR, "BYE")
    _zero(bench)


def test_released_after_cancel() -> None:
    bench = _bench()
    (b_invite,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    bench.feed(answer(b_invite, 180), PBX1)
    out = bench.feed(cancel(), OPERATOR)
    assert sorted(_statuses(out)) == [200, 487]
    _zero(bench)


def test_released_after_486() -> None:
    bench = _bench()
    (b_invite,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    assert _final(bench.feed(answer(b_invite, 486), PBX1)).status == 486
    _zero(bench)


def test_released_when_all_targets_fail() -> None:
    bench = _bench()
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    (second,) = requests(bench.feed(answer(first, 503), PBX1), PBX2, "INVITE")
    assert _final(bench.feed(answer(second, 503), PBX2)).status == 503
    _zero(bench)


def test_released_after_setup_timeout_with_no_answer() -> None:
    bench = _bench()
    bench.feed(invite(), OPERATOR)
    assert _counts(bench) == {"operator": 1, "pbx": 1}
    assert _final(bench.advance(3.0) + bench.advance(6.0)).status == 408
    _zero(bench)


def test_released_when_the_caller_never_acks_the_200() -> None:
    bench = _bench()
    _answered(bench)  # and no ACK from the operator
    out = bench.advance(40.0)  # 64*T1: AckTimedOut
    assert requests(out, PBX1, "BYE")
    _zero(bench)


def test_released_on_shutdown() -> None:
    bench = _bench()
    _answered(bench, 1)
    bench.feed(invite(2), OPERATOR)  # still being set up
    bench.core.hangup_all(bench.now)
    _zero(bench)


def test_a_reload_keeps_counting_calls_in_progress() -> None:
    bench = _bench(pbx_calls=5)
    _, tag = _answered(bench, 1)
    _answered(bench, 2)
    cfg = parse_config(LIMITED.replace("PBX_CALLS", "2"))
    bench.calls.reconfigure(Router(cfg.peers, cfg.routes), cfg.peers)
    assert _counts(bench) == {"operator": 2, "pbx": 2}
    cfg = parse_config(LIMITED.replace("PBX_CALLS", "2").replace("calls: 2, cps: 5", "cps: 5"))
    bench.calls.reconfigure(Router(cfg.peers, cfg.routes), cfg.peers)
    final = _final(bench.feed(invite(3), OPERATOR))
    assert final.status == 503, "the new pbx limit (2) sees the two calls up"
    bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR)
    assert _counts(bench) == {"operator": 1, "pbx": 1}
    assert requests(bench.feed(invite(4), OPERATOR), PBX1, "INVITE")


def test_a_peer_with_calls_0_refuses_every_call_and_holds_nothing() -> None:
    bench = _bench(pbx_calls=0)
    final = _final(bench.feed(invite(), OPERATOR))
    assert final.status == 503 and final.header("retry-after") == "5"
    _zero(bench)


NODE_LIMITED = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060], health: false}
  pbx: {role: pbx, hosts: [127.0.0.3:5060], dids: ["+331*"], health: false}
limits: {calls: CALLS, peer_calls: PEER, transactions: TXNS}
"""


def _node(calls: int = 100, peer: int = 100, txns: int = 1000) -> Bench:
    config = NODE_LIMITED.replace("CALLS", str(calls)).replace("PEER", str(peer))
    return Bench(config.replace("TXNS", str(txns)))


def _finals(sends: list[Send]) -> list[int]:
    return [r.status for r in responses(sends, OPERATOR) if r.status >= 200]


def test_the_nodes_calls_limit_turns_new_calls_away_and_keeps_those_in_progress() -> None:
    bench = _node(calls=2)
    for n in (1, 2):
        assert requests(bench.feed(invite(n), OPERATOR), PBX1, "INVITE")
    out = bench.feed(invite(3), OPERATOR)
    assert _finals(out) == [503] and not requests(out, PBX1, "INVITE")
    (refusal,) = [r for r in responses(out, OPERATOR) if r.status == 503]
    assert refusal.header("retry-after") == "5"
    assert len(bench.calls.calls) == 2


def test_a_peer_without_a_calls_limit_gets_the_nodes_peer_calls() -> None:
    bench = _node(peer=1)
    assert requests(bench.feed(invite(1), OPERATOR), PBX1, "INVITE")
    assert _finals(bench.feed(invite(2), OPERATOR)) == [503]
    snapshot = bench.calls.limits.snapshot()
    assert snapshot["operator"].refused == 1


def test_the_nodes_transactions_limit_turns_new_requests_away() -> None:
    bench = _node(txns=3)
    for n in (1, 2):  # each call: its INVITE server and client transactions
        assert requests(bench.feed(invite(n), OPERATOR), PBX1, "INVITE")
    out = bench.feed(invite(3), OPERATOR)
    assert _finals(out) == [503] and not requests(out, PBX1, "INVITE")
    assert len(bench.calls.calls) == 2
