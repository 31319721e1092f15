"""Media anchoring in the B2BUA, with explicit time: which SDP goes where, what is refused,
and that every way a call ends frees its relay ports. The relay binds real loopback ports
but is not watched by any loop here (no RTP flows: tests/e2e/test_media.py sends some)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from peers import (
    CONFIG,
    OPERATOR,
    PBX1,
    Bench,
    answer,
    cancel,
    in_dialog,
    invite,
    requests,
    responses,
)

from pkiss.media import BuiltinRelay
from pkiss.sdp import parse_sdp

A_SDP = (
    b"v=0\r\no=op 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8\r\n"
)
B_SDP = (
    b"v=0\r\no=pbx 2 2 IN IP4 127.0.0.3\r\ns=PBX 9.1\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 8\r\n"
)


def with_body(message: bytes, body: bytes) -> bytes:
    head = message.split(b"\r\n\r\n", 1)[0]
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-")]
    lines += [b"Content-Type: application/sdp", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.fixture
def bench() -> Iterator[Bench]:
    relay = BuiltinRelay("127.0.0.1", (44000, 44999))
    b = Bench(CONFIG, media=relay)
    yield b
    relay.close()


def relay_of(b: Bench) -> BuiltinRelay:
    engine = b.calls.anchoring.engine
    assert isinstance(engine, BuiltinRelay)
    return engine


def assert_relayed(body: bytes, hidden: str) -> int:
    session = parse_sdp(body)
    assert hidden not in body.decode()
    assert session.connection_for(session.media[0]) == ("IP4", "127.0.0.1")
    port = session.media[0].port
    assert 44000 <= port <= 44999
    return port


def test_offer_and_answer_name_the_relay_and_bye_frees_it(bench: Bench) -> None:
    (b_invite,) = requests(bench.feed(with_body(invite(1), A_SDP), OPERATOR), PBX1, "INVITE")
    to_pbx = assert_relayed(b_invite.body, "127.0.0.2")
    sends = bench.feed(with_body(answer(b_invite, 200), B_SDP), PBX1)
    (ok,) = [r for r in responses(sends, OPERATOR) if r.status == 200]
    to_operator = assert_relayed(ok.body, "127.0.0.3")
    assert "PBX 9.1" not in ok.body.decode()  # the session name could tell the PBX's software
    assert to_pbx != to_operator
    assert len(relay_of(bench).calls) == 1
    tag = ok.to.tag if ok.to is not None else ""
    bench.feed(in_dialog("BYE", 1, tag or "", 2), OPERATOR)
    assert relay_of(bench).calls == {}


def test_an_offer_that_is_not_sdp_gets_488_and_holds_nothing(bench: Bench) -> None:
    sends = bench.feed(with_body(invite(1), b"this is not sdp"), OPERATOR)
    assert [r.status for r in responses(sends, OPERATOR) if r.status >= 200] == [488]
    assert not requests(sends, PBX1, "INVITE")
    assert relay_of(bench).calls == {}
    assert bench.calls.calls == set()


def test_cancel_frees_the_relay(bench: Bench) -> None:
    bench.feed(with_body(invite(1), A_SDP), OPERATOR)
    assert len(relay_of(bench).calls) == 1
    bench.feed(cancel(1), OPERATOR)
    assert relay_of(bench).calls == {}


def test_peers_that_all_say_bypass_keep_their_sdp(bench: Bench) -> None:
    bypass = CONFIG.replace("role: carrier,", "role: carrier, media: bypass,").replace(
        "    health: false\n", "    health: false\n    media: bypass\n"
    )
    b = Bench(bypass, media=relay_of(bench))
    (b_invite,) = requests(b.feed(with_body(invite(1), A_SDP), OPERATOR), PBX1, "INVITE")
    assert b_invite.body == A_SDP
    assert relay_of(bench).calls == {}


def test_a_late_offer_is_anchored_when_the_answer_comes_in_the_ack(bench: Bench) -> None:
    (b_invite,) = requests(bench.feed(invite(1, sdp=False), OPERATOR), PBX1, "INVITE")
    assert not b_invite.body
    sends = bench.feed(with_body(answer(b_invite, 200), B_SDP), PBX1)
    (ok,) = [r for r in responses(sends, OPERATOR) if r.status == 200]
    assert_relayed(ok.body, "127.0.0.3")  # the PBX's offer, toward the operator
    tag = ok.to.tag if ok.to is not None else ""
    ack = with_body(in_dialog("ACK", 1, tag or "", 1), A_SDP)
    (b_ack,) = requests(bench.feed(ack, OPERATOR), PBX1, "ACK")
    assert_relayed(b_ack.body, "127.0.0.2")  # the operator's answer, toward the PBX


def test_sip_i_keeps_its_isup_and_gets_its_sdp_anchored(bench: Bench) -> None:
    isup = bytes(range(0, 32))
    boundary = "unique-boundary-1"
    body = (
        f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n".encode() + A_SDP
        + f"\r\n--{boundary}\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n".encode()
        + isup + f"\r\n--{boundary}--\r\n".encode()
    )  # fmt: skip
    message = with_body(invite(1), body).replace(
        b"Content-Type: application/sdp",
        f"Content-Type: multipart/mixed;boundary={boundary}".encode(),
        1,  # the message's own Content-Type, not the part's
    )
    (b_invite,) = requests(bench.feed(message, OPERATOR), PBX1, "INVITE")
    assert b"127.0.0.2" not in b_invite.body
    sdp_part, isup_part = b_invite.body.split(f"--{boundary}".encode())[1:3]
    assert isup_part.endswith(isup + b"\r\n")
    assert_relayed(sdp_part.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") + b"\r\n", "127.0.0.2")


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=300), multipart=st.booleans())
def test_any_body_gets_a_call_or_488_never_an_exception(body: bytes, multipart: bool) -> None:
    relay = BuiltinRelay("127.0.0.1", (44000, 44999))
    bench = Bench(CONFIG, media=relay)
    kind = b"multipart/mixed;boundary=b" if multipart else b"application/sdp"
    message = with_body(invite(1), b"v=0\r\n" + body).replace(b"application/sdp", kind, 1)
    try:
        sends = bench.feed(message, OPERATOR)
        finals = [r.status for r in responses(sends, OPERATOR) if r.status >= 200]
        forwarded = requests(sends, PBX1, "INVITE")
        assert finals in ([], [488]) and (bool(forwarded) != bool(finals))
        if forwarded and not multipart:
            assert b"127.0.0.2" not in forwarded[0].body
        bench.feed(cancel(1), OPERATOR)
        assert relay.calls == {}
    finally:
        relay.close()


def test_a_refused_reoffer_leaves_the_relay_as_it_was(bench: Bench) -> None:
    (b_invite,) = requests(bench.feed(with_body(invite(), A_SDP), OPERATOR), PBX1, "INVITE")
    reply = with_body(answer(b_invite, 200), B_SDP)
    (ok,) = [r for r in responses(bench.feed(reply, PBX1), OPERATOR) if r.status == 200]
    tag = ok.to.tag if ok.to and ok.to.tag else ""
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    (state,) = relay_of(bench).calls.values()
    before = list(state.streams[0]["a"].dest)
    fax = A_SDP.replace(b"m=audio 4000 RTP/AVP 8", b"m=image 4010 udptl t38")
    (relayed,) = requests(bench.feed(with_body(in_dialog("INVITE", 1, tag, 2), fax), OPERATOR),
                          PBX1, "INVITE")  # fmt: skip
    assert state.streams[0]["a"].dest != before, "the offer moved the caller's side"
    out = bench.feed(answer(relayed, 488), PBX1)
    assert [r.status for r in responses(out, OPERATOR) if r.status >= 200] == [488]
    assert state.streams[0]["a"].dest == before, "refused: media goes where it went before"
