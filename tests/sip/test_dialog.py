"""Dialog state (RFC 3261 §12) from wire messages."""

from __future__ import annotations

from pkiss.sip.dialog import Dialog
from pkiss.sip.headers import Via
from pkiss.sip.message import Response
from pkiss.sip.parser import parse_datagram

VIA = Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bKx"),))


def _dialog() -> Dialog:
    return Dialog("cid-1", "ours", "<sip:alice@192.0.2.1>", "<sip:bob@192.0.2.9>",
                  "sip:bob@192.0.2.9")  # fmt: skip


def test_uac_learns_tag_target_and_reversed_route_set_from_2xx() -> None:
    dialog = _dialog()
    ok = parse_datagram(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n"
        b"Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example;lr>\r\n"
        b"From: <sip:alice@192.0.2.1>;tag=ours\r\nTo: <sip:bob@192.0.2.9>;tag=theirs\r\n"
        b"Call-ID: cid-1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@198.51.100.4:5070>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, Response)
    dialog.learn_from_response(ok)
    assert dialog.remote_tag == "theirs"
    assert dialog.remote_target == "sip:bob@198.51.100.4:5070"
    assert dialog.route_set == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    bye = dialog.build("BYE", VIA)
    assert bye.uri_text == "sip:bob@198.51.100.4:5070"
    assert [str(r.uri) for r in bye.route] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    assert bye.to is not None and bye.to.tag == "theirs"
    assert bye.from_ is not None and bye.from_.tag == "ours"
    assert bye.cseq is not None and (bye.cseq.seq, bye.cseq.method) == (2, "BYE")
    assert bye.top_via is VIA
    assert "Contact" not in dict(bye.headers)


def test_cseq_grows_except_for_ack_and_contact_only_on_target_refresh() -> None:
    dialog = _dialog()
    reinvite = dialog.build("INVITE", VIA, contact="<sip:sbc:5060>")
    ack = dialog.build("ACK", VIA, cseq=reinvite.cseq.seq if reinvite.cseq else 0)
    info = dialog.build("INFO", VIA, contact="<sip:sbc:5060>")
    assert [m.header("cseq") for m in (reinvite, ack, info)] == ["2 INVITE", "2 ACK", "3 INFO"]
    assert reinvite.header("contact") == "<sip:sbc:5060>"
    assert info.header("contact") is None


def test_remote_cseq_must_not_go_backwards() -> None:
    dialog = _dialog()
    assert dialog.accept_remote_cseq(5)
    assert dialog.accept_remote_cseq(5)  # the same (CANCEL/ACK reuse it)
    assert dialog.accept_remote_cseq(9)
    assert not dialog.accept_remote_cseq(8)
    assert dialog.remote_cseq == 9


def test_a_strict_router_first_becomes_the_request_uri_and_the_target_the_last_route() -> None:
    dialog = _dialog()
    dialog.route_set = ["<sip:strict.example;method=INVITE>", "<sip:p2.example;lr>"]
    bye = dialog.build("BYE", VIA)
    assert bye.uri_text == "sip:strict.example"  # no method parameter in a Request-URI
    assert [str(r.uri) for r in bye.route] == ["sip:p2.example;lr", "sip:bob@192.0.2.9"]
    assert dialog.next_hop() == "sip:strict.example"


def test_loose_routing_whatever_the_lr_value_and_next_hop() -> None:
    dialog = _dialog()
    assert dialog.next_hop() == "sip:bob@192.0.2.9"  # no route set: the remote target
    dialog.route_set = ["<sip:192.0.2.7:5080;lr=on>"]  # older proxies write lr=on
    bye = dialog.build("BYE", VIA)
    assert bye.uri_text == "sip:bob@192.0.2.9"
    assert [str(r.uri) for r in bye.route] == ["sip:192.0.2.7:5080;lr=on"]
    assert dialog.next_hop() == "sip:192.0.2.7:5080;lr=on"


def test_a_target_refresh_changes_the_target_not_the_route_set() -> None:
    dialog = _dialog()
    dialog.route_set = ["<sip:p1.example;lr>"]
    ok = parse_datagram(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKy\r\n"
        b"Record-Route: <sip:elsewhere.example;lr>\r\n"
        b"From: <sip:alice@192.0.2.1>;tag=ours\r\nTo: <sip:bob@192.0.2.9>;tag=theirs\r\n"
        b"Call-ID: cid-1\r\nCSeq: 3 INVITE\r\nContact: <sip:bob@198.51.100.5>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, Response)
    dialog.refresh_target(ok)
    assert dialog.remote_target == "sip:bob@198.51.100.5"
    assert dialog.route_set == ["<sip:p1.example;lr>"]
