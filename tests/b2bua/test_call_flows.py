"""Call flows through the B2BUA core with explicit time: failover, callee decisions, CANCEL
races, answers from abandoned attempts, glare. No sockets, no sleeps."""

from __future__ import annotations

import pytest
from peers import (
    CONFIG,
    OPERATOR,
    PBX1,
    PBX2,
    Bench,
    answer,
    answer_with,
    cancel,
    in_dialog,
    invite,
    requests,
    responses,
)

from pkiss.sip.digest import parse_credentials, verify


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
    assert not bench.calls.calls


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
    assert not bench.calls.calls


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
    assert not bench.calls.calls
    bench.feed(answer(bye, 200), PBX1)
    assert bench.advance(100.0) == [] and len(bench.core.layer) == 0


AUTH_CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator:
    role: carrier
    hosts: [127.0.0.2:5060]
    auth: {username: "0123456789", password: "secret"}
    health: false
  pbx: {role: pbx, hosts: [127.0.0.3:5060], dids: ["+331*"], health: false}
routes: [{prefix: "", via: [operator]}]
"""


def _outbound_invite() -> bytes:
    return (
        invite(7, called="+442071234567")
        .replace(b"127.0.0.2:5060;branch", b"127.0.0.3:5060;branch")
        .replace(b"@127.0.0.2", b"@127.0.0.3")
    )


@pytest.mark.parametrize(("status", "challenge", "answer"), [
    (407, "Proxy-Authenticate", "proxy-authorization"),
    (401, "WWW-Authenticate", "authorization"),
])  # fmt: skip
def test_carrier_challenge_is_answered_with_the_peers_credentials(
    status: int, challenge: str, answer: str
) -> None:
    bench = Bench(AUTH_CONFIG)
    (first,) = requests(bench.feed(_outbound_invite(), PBX1), OPERATOR, "INVITE")
    challenged = answer_with(first, status, f'{challenge}: Digest realm="carrier", nonce="n1"')
    out = bench.feed(challenged, OPERATOR)
    assert requests(out, OPERATOR, "ACK"), "the challenge is acknowledged"
    (second,) = requests(out, OPERATOR, "INVITE")
    assert second.call_id == first.call_id
    assert second.cseq and first.cseq and second.cseq.seq == first.cseq.seq + 1
    assert second.top_via and first.top_via and second.top_via.branch != first.top_via.branch
    creds = parse_credentials(second.header(answer) or "")
    assert creds.username == "0123456789" and creds.uri == second.uri_text
    assert verify(creds, "secret", "INVITE")
    assert not responses(out, PBX1), "the PBX never sees the challenge"
    again = bench.feed(answer_with(second, status, f'{challenge}: Digest realm="c", nonce="n2"'),
                       OPERATOR)  # fmt: skip
    assert [r.status for r in responses(again, PBX1)] == [403], "a second challenge: refused"


def test_late_provisional_after_the_answer_changes_nothing() -> None:
    bench = Bench()
    (first,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    ok = responses(bench.feed(answer(first, 200, sdp=True), PBX1), OPERATOR)[0]
    late = answer(first, 180).replace(b"<sip:127.0.0.3:5060>", b"<sip:10.9.9.9:5099>")
    assert not responses(bench.feed(late, PBX1), OPERATOR), "nothing relayed after the 200"
    tag = ok.to.tag if ok.to else ""
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    (bye,) = requests(bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR), PBX1, "BYE")
    assert bye.uri_text == "sip:127.0.0.3:5060", "the 2xx's Contact stays the remote target"


def test_183_without_sdp_is_relayed_without_a_body_and_199_is_absorbed() -> None:
    bench = Bench()
    (b_invite,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    (progress,) = responses(bench.feed(answer(b_invite, 183, "forkA"), PBX1), OPERATOR)
    assert progress.status == 183 and progress.body == b""
    assert not responses(bench.feed(answer(b_invite, 199, "forkB"), PBX1), OPERATOR)
    (ok,) = responses(bench.feed(answer(b_invite, 200, "forkA", sdp=True), PBX1), OPERATOR)
    assert ok.status == 200
    # a second answer from fork B: ACK and BYE on its own dialog, nothing to the caller
    out = bench.feed(answer(b_invite, 200, "forkB", sdp=True), PBX1)
    assert not responses(out, OPERATOR)
    acks, byes = requests(out, PBX1, "ACK"), requests(out, PBX1, "BYE")
    assert [a.to.tag for a in acks if a.to] == ["forkB"]
    assert [b.to.tag for b in byes if b.to] == ["forkB"]
    assert len(bench.calls.calls) == 1


def test_refer_within_a_call_is_refused_and_the_call_goes_on() -> None:
    bench = Bench()
    (b_invite,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    (ok,) = responses(bench.feed(answer(b_invite, 200, sdp=True), PBX1), OPERATOR)
    tag = ok.to.tag if ok.to else ""
    bench.feed(in_dialog("ACK", 1, tag or "", 1), OPERATOR)
    out = bench.feed(in_dialog("REFER", 1, tag or "", 2), OPERATOR)
    assert [r.status for r in responses(out, OPERATOR)] == [403]
    assert not requests(out, PBX1, "REFER") and not requests(out, PBX1, "BYE")
    assert len(bench.calls.calls) == 1


def test_a_call_ringing_past_answer_timeout_is_cancelled_and_released() -> None:
    ended: list = []
    bench = Bench(CONFIG_ANSWER, on_end=ended.append)
    (b_invite,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    bench.feed(answer(b_invite, 180), PBX1)
    out = bench.advance(29.0)
    assert not requests(out, PBX1, "CANCEL")
    out = bench.advance(31.0)
    cancelled = requests(out, PBX1, "CANCEL")[0]
    assert cancelled.call_id == b_invite.call_id
    assert {r.status for r in responses(out, OPERATOR) if r.status >= 200} == {480}
    assert not bench.calls.calls and [c.end_reason for c in ended] == ["failed 480"]
    bench.feed(answer(cancelled, 200), PBX1)
    out = bench.feed(answer(b_invite, 487), PBX1)
    assert requests(out, PBX1, "ACK")
    assert bench.advance(100.0) is not None and len(bench.core.layer) == 0


CONFIG_ANSWER = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060], health: false}
  pbx: {role: pbx, hosts: [127.0.0.3:5060], dids: ["+331*"], health: false, answer_timeout: 30}
"""


def test_a_number_that_is_not_a_uri_user_is_escaped_in_what_the_node_sends() -> None:
    bench = Bench()
    out = bench.feed(invite(called="+331%23"), OPERATOR)  # +331#: # is escaped in a URI
    (b_invite,) = requests(out, PBX1, "INVITE")
    assert b_invite.uri_text.startswith("sip:+331%23@")
    assert "+331%23@" in (b_invite.header("to") or "")


def test_a_called_number_of_thousands_of_digits_gets_an_answer_not_an_exception() -> None:
    bench = Bench(CONFIG.replace('dids: ["+331*"]', 'dids: ["+331*", "+33200-+33299"]'))
    out = bench.feed(invite(called="+" + "9" * 5000), OPERATOR)
    assert [r.status for r in responses(out, OPERATOR) if r.status >= 200] == [404]
