"""Outbound registration to a carrier (RFC 3261 §10), driven through the B2BUA with explicit
time: the REGISTER's shape, the digest answer to a 401, the refresh at half the granted
expiry, the back-off after failures."""

from __future__ import annotations

import logging

import pytest
from peers import OPERATOR, Bench, requests

from pkiss.sip.digest import challenge, parse_credentials, verify
from pkiss.sip.message import Request

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator:
    role: carrier
    hosts: [{address: "127.0.0.9:5070", priority: 2}, {address: "127.0.0.2:5060", priority: 1}]
    health: false
    register: {username: "0123456789", password: "secret", domain: carrier.example, expires: 600}
  pbx: {role: pbx, hosts: [127.0.0.3:5060], dids: ["+331*"], health: false}
"""


def bench() -> Bench:
    b = Bench(CONFIG)
    assert b.core.start(b.now) == []  # the first REGISTER is a deadline, due at once
    return b


def reply(req: Request, status: int, *extra: str) -> bytes:
    lines = [f"SIP/2.0 {status} Whatever"]
    lines += [f"Via: {req.header('via')}", f"From: {req.header('from')}"]
    lines += [f"To: {req.header('to')};tag=reg1", f"Call-ID: {req.call_id}"]
    lines += [f"CSeq: {req.header('cseq')}", *extra, "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def one_register(sends: list) -> Request:
    found = requests(sends, OPERATOR, "REGISTER")
    assert len(found) == 1, sends
    return found[0]


def registered(b: Bench, *extra: str) -> Request:
    """Start, answer the first REGISTER with a 401 and the second with a 200."""
    first = one_register(b.advance(0.0))
    second = one_register(b.feed(reply(first, 401, _challenge("n1")), OPERATOR))
    assert not requests(b.feed(reply(second, 200, *extra), OPERATOR), OPERATOR, "REGISTER")
    return second


def _challenge(nonce: str, stale: bool = False) -> str:
    return "WWW-Authenticate: " + challenge("carrier.example", nonce, stale=stale)


def test_register_shape_to_the_first_host_by_priority() -> None:
    b = bench()
    req = one_register(b.advance(0.0))
    assert str(req.uri) == "sip:carrier.example"
    assert req.from_ is not None and req.from_.tag
    assert str(req.from_.uri) == "sip:0123456789@carrier.example"
    assert req.to is not None and str(req.to.uri) == "sip:0123456789@carrier.example"
    assert req.to.tag is None
    assert req.header("contact") == "<sip:127.0.0.1:5060>"
    assert req.header("expires") == "600"
    assert req.header("cseq") == "1 REGISTER"
    assert req.header("authorization") is None
    assert b.core.registrations.bindings["operator"].state == "registering"


def test_challenge_is_answered_with_a_correct_digest_same_call_id_next_cseq(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pkiss.registration")
    b = bench()
    first = one_register(b.advance(0.0))
    second = one_register(b.feed(reply(first, 401, _challenge("n1")), OPERATOR))
    assert second.call_id == first.call_id
    assert second.header("cseq") == "2 REGISTER"
    assert second.from_ is not None and first.from_ is not None
    assert second.from_.tag == first.from_.tag
    creds = parse_credentials(second.header("authorization") or "")
    assert creds.username == "0123456789" and creds.nonce == "n1"
    assert creds.uri == "sip:carrier.example"
    assert verify(creds, "secret", "REGISTER")
    assert not verify(creds, "wrong", "REGISTER")
    b.feed(reply(second, 200, "Expires: 600"), OPERATOR)
    assert b.core.registrations.bindings["operator"].state == "registered"
    assert "registration of operator to sip:carrier.example: registered for 600 s" in caplog.text


def test_refresh_at_half_the_granted_expiry_from_the_contact_param() -> None:
    b = bench()
    second = registered(b, "Contact: <sip:127.0.0.1:5060>;expires=120", "Expires: 3600")
    assert not requests(b.advance(59.9), OPERATOR, "REGISTER")
    refresh = one_register(b.advance(60.0))
    assert refresh.call_id == second.call_id
    assert refresh.header("cseq") == "3 REGISTER"
    creds = parse_credentials(refresh.header("authorization") or "")  # the last nonce, nc+1
    assert creds.nonce == "n1" and creds.nc == "00000002"
    assert verify(creds, "secret", "REGISTER")


def test_refresh_from_the_expires_header_then_not_sooner_than_the_minimum() -> None:
    b = bench()
    registered(b, "Expires: 300")
    assert not requests(b.advance(149.0), OPERATOR, "REGISTER")
    refresh = one_register(b.advance(150.0))
    b.feed(reply(refresh, 200, "Expires: 1"), OPERATOR)
    assert not requests(b.advance(151.5), OPERATOR, "REGISTER")
    assert requests(b.advance(152.0), OPERATOR, "REGISTER")


def test_second_challenge_with_the_same_nonce_fails_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pkiss.registration")
    b = bench()
    first = one_register(b.advance(0.0))
    second = one_register(b.feed(reply(first, 401, _challenge("n1")), OPERATOR))
    assert not requests(b.feed(reply(second, 401, _challenge("n1")), OPERATOR), OPERATOR,
                        "REGISTER")  # fmt: skip
    assert b.core.registrations.bindings["operator"].state == "failed"
    assert "failed: 401" in caplog.text and "retry in 5 s" in caplog.text
    assert not requests(b.advance(4.9), OPERATOR, "REGISTER")
    retry = one_register(b.advance(5.0))
    assert retry.header("authorization") is None  # the refused challenge is forgotten
    # a stale nonce is answered again
    again = one_register(b.feed(reply(retry, 401, _challenge("n2")), OPERATOR))
    assert one_register(b.feed(reply(again, 401, _challenge("n2", stale=True)), OPERATOR))


def test_failures_back_off_doubling_up_to_the_maximum(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pkiss.registration")
    b = bench()
    req = one_register(b.advance(0.0))
    t = 0.0
    for delay in (5, 10, 20, 40, 80, 160, 300, 300):
        b.feed(reply(req, 403), OPERATOR)
        assert not requests(b.advance(t + delay - 0.1), OPERATOR, "REGISTER")
        t += delay
        req = one_register(b.advance(t))
    assert "failed: 403" in caplog.text and "retry in 20 s" in caplog.text
    # a success resets the back-off
    b.feed(reply(req, 200, "Expires: 600"), OPERATOR)
    req = one_register(b.advance(t + 300))
    b.feed(reply(req, 503), OPERATOR)
    assert one_register(b.advance(t + 305))


def test_no_response_is_a_failure_and_responses_never_reach_call_logic() -> None:
    b = bench()
    one_register(b.advance(0.0))
    sends = b.advance(40.0)  # retransmissions, timer F (64*T1 = 32 s), a retry 5 s later
    cseqs = [r.header("cseq") for r in requests(sends, OPERATOR, "REGISTER")]
    assert "2 REGISTER" in cseqs and "3 REGISTER" not in cseqs
    assert b.core.registrations.bindings["operator"].state == "registering"
    assert not b.calls.calls and not b.calls.clients


def test_rebuild_keeps_an_unchanged_binding() -> None:
    b = bench()
    regs = b.core.registrations
    registered(b, "Expires: 600")
    binding = regs.bindings["operator"]
    regs.rebuild(b.config.peers, b.now)
    b.core.reschedule(b.now)
    assert regs.bindings["operator"] is binding and binding.state == "registered"
    assert not requests(b.advance(299.0), OPERATOR, "REGISTER")
    assert requests(b.advance(300.0), OPERATOR, "REGISTER")


def test_stopping_removes_the_binding_answering_a_new_challenge() -> None:
    b = bench()
    registered(b)
    regs = b.core.registrations
    gone = one_register(b.core.unregister_all(b.now))
    assert gone.header("expires") == "0"
    assert gone.header("authorization") is not None  # the last challenge is answered again
    assert regs.withdrawing()
    again = one_register(b.feed(reply(gone, 401, _challenge("n2")), OPERATOR))
    assert again.header("expires") == "0"
    creds = parse_credentials(again.header("authorization") or "")
    assert creds.nonce == "n2" and verify(creds, "secret", "REGISTER")
    assert not requests(b.feed(reply(again, 200), OPERATOR), OPERATOR, "REGISTER")
    assert not regs.withdrawing()
    assert regs.bindings["operator"].state == "unregistered"
    assert not requests(b.advance(5000.0), OPERATOR, "REGISTER")  # no refresh after that


def test_stopping_sends_nothing_for_a_binding_not_in_force() -> None:
    b = bench()
    b.advance(0.0)  # the first REGISTER is in flight, unanswered
    assert b.core.unregister_all(b.now) == []
    regs = b.core.registrations
    assert regs is not None and not regs.withdrawing()
