"""peers.*.codecs: the INVITE's offer sent to a peer keeps only its codecs; none left: 488."""

from __future__ import annotations

from peers import CONFIG, OPERATOR, PBX1, Bench, answer, in_dialog, invite, requests, responses

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)


def _invite() -> bytes:
    head = invite().split(b"\r\n\r\n", 1)[0]
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"content-")]
    lines += [b"Content-Type: application/sdp", b"Content-Length: %d" % len(SDP)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + SDP


def _with_codecs(codecs: str) -> str:
    return CONFIG.replace("    setup_timeout: 3\n", f"    setup_timeout: 3\n    codecs: {codecs}\n")


def test_the_pbx_gets_only_its_codecs() -> None:
    bench = Bench(_with_codecs("[PCMA, telephone-event]"))
    (b_invite,) = requests(bench.feed(_invite(), OPERATOR), PBX1, "INVITE")
    body = b_invite.body.decode()
    assert "m=audio 4000 RTP/AVP 8 101\r\n" in body and "PCMU" not in body


def test_no_codec_left_is_488_and_nothing_is_sent() -> None:
    bench = Bench(_with_codecs("[G729]"))
    sends = bench.feed(_invite(), OPERATOR)
    assert not requests(sends, PBX1, "INVITE")
    assert [r.status for r in responses(sends, OPERATOR) if r.status >= 200] == [488]
    assert not bench.calls.calls


def _reoffer(tag: str, sdp: bytes) -> bytes:
    head = in_dialog("INVITE", 1, tag, 2).split(b"\r\n\r\n", 1)[0]
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"content-")]
    lines += [b"Content-Type: application/sdp", b"Content-Length: %d" % len(sdp)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + sdp


def _answered(bench: Bench) -> str:
    (b_invite,) = requests(bench.feed(_invite(), OPERATOR), PBX1, "INVITE")
    (ok,) = [r for r in responses(bench.feed(answer(b_invite, 200, sdp=True), PBX1), OPERATOR)
             if r.status == 200]  # fmt: skip
    tag = ok.to.tag if ok.to and ok.to.tag else ""
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    return tag


def test_a_reoffer_to_the_pbx_keeps_only_its_codecs() -> None:
    bench = Bench(_with_codecs("[PCMA, telephone-event]"))
    tag = _answered(bench)
    (relayed,) = requests(bench.feed(_reoffer(tag, SDP), OPERATOR), PBX1, "INVITE")
    body = relayed.body.decode()
    assert "m=audio 4000 RTP/AVP 8 101\r\n" in body and "PCMU" not in body


def test_a_reoffer_with_no_codec_of_the_pbx_is_488_and_the_call_goes_on() -> None:
    bench = Bench(_with_codecs("[PCMA]"))
    tag = _answered(bench)
    pcmu = SDP.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 0").replace(b"a=rtpmap:8 PCMA/8000\r\n", b"")
    sends = bench.feed(_reoffer(tag, pcmu), OPERATOR)
    assert not requests(sends, PBX1, "INVITE")
    assert [r.status for r in responses(sends, OPERATOR) if r.status >= 200] == [488]
    assert len(bench.calls.calls) == 1
    # the leg takes a new re-INVITE afterwards (no 491 left over)
    again = _reoffer(tag, SDP).replace(b"CSeq: 2", b"CSeq: 3").replace(b"INVITE1x", b"INVITE1z")
    assert requests(bench.feed(again, OPERATOR), PBX1, "INVITE")
