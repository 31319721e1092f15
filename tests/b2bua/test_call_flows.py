"""Call flows through the B2BUA core with explicit time: failover, callee decisions, CANCEL
races, answers from abandoned attempts, glare. No sockets, no sleeps."""

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


def _statuses(sends: list, dest: object = OPERATOR) -> list[int]:
    return [r.status for r in responses(sends, dest)]  # type: ignore[arg-type]


def test_503_from_the_first_host_moves_the_call_to_the_second() -> None:
    bench = Bench()
    out = bench.feed(invite(), OPERATOR)
    assert _statuses(out) == [100]
    (first,) = requests(out, PBX1, "INVITE")
    out = bench.feed(answer(first, 503), PBX1)
    assert requests(out, PBX1, "ACK"), "the 503 is acknowledged on its own leg"
    (second,) = requests(out, PBX2, "INVITE")
    assert second.call_id != first.call_id
    assert not _statuses(out), "the caller hears nothing of the failed attempt"
    out = bench.feed(answer(second, 200, sdp=True), PBX2)
    assert _statuses(out) == [200]
    assert requests(out, PBX2, "ACK")


def test_486_is_the_callees_answer_and_is_not_retried() -> None:
    bench = Bench()
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    out = bench.feed(answer(first, 486), PBX1)
    assert _statuses(out) == [486]
    assert not requests(out, PBX2, "INVITE")
    assert not bench.core.calls


def test_no_answer_within_setup_timeout_tries_the_next_host_at_that_time() -> None:
    bench = Bench()
    requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    out = bench.advance(2.9)
    assert not requests(out, PBX2, "INVITE")
    out = bench.advance(3.0)
    assert requests(out, PBX2, "INVITE"), "setup_timeout: 3 s"


def test_late_answer_from_an_abandoned_attempt_is_acked_and_hung_up() -> None:
    bench = Bench()
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    (second,) = requests(bench.advance(3.0), PBX2, "INVITE")
    out = bench.feed(answer(first, 200, "late", sdp=True), PBX1)
    assert requests(out, PBX1, "ACK") and requests(out, PBX1, "BYE")
    assert not _statuses(out), "the caller never sees the abandoned attempt"
    out = bench.feed(answer(second, 200, sdp=True), PBX2)
    assert _statuses(out) == [200]


def test_both_hosts_silent_gives_the_caller_408() -> None:
    bench = Bench()
    bench.feed(invite(), OPERATOR)
    out = bench.advance(3.0) + bench.advance(6.0)
    assert _statuses(out) == [408]
    assert not bench.core.calls


def test_cancel_before_any_provisional_from_the_callee() -> None:
    bench = Bench()
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    out = bench.feed(cancel(), OPERATOR)
    assert sorted(_statuses(out)) == [200, 487]
    assert not requests(out, PBX1, "CANCEL"), "§9.1: no CANCEL before a provisional"
    out = bench.feed(answer(first, 180), PBX1)
    assert requests(out, PBX1, "CANCEL"), "sent as soon as the callee rings"
    assert not _statuses(out), "the caller's call is already over"


def test_glare_second_reinvite_on_the_same_leg_gets_491() -> None:
    bench = Bench()
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    out = bench.feed(answer(first, 200, sdp=True), PBX1)
    ok = responses(out, OPERATOR)[0]
    tag = ok.to.tag if ok.to else ""
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    out = bench.feed(in_dialog("INVITE", 1, tag, 2), OPERATOR)
    assert requests(out, PBX1, "INVITE"), "the re-INVITE is relayed"
    out = bench.feed(in_dialog("INVITE", 1, tag, 3, branch="y"), OPERATOR)
    assert _statuses(out) == [100, 491]


def test_bye_from_the_caller_ends_both_legs() -> None:
    bench = Bench()
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    ok = responses(bench.feed(answer(first, 200, sdp=True), PBX1), OPERATOR)[0]
    tag = ok.to.tag if ok.to else ""
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    out = bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR)
    assert _statuses(out) == [200]
    (bye,) = requests(out, PBX1, "BYE")
    assert bye.call_id == first.call_id
    assert not bench.core.calls
    bench.feed(answer(bye, 200), PBX1)
    assert bench.advance(100.0) == [] and len(bench.core.layer) == 0
