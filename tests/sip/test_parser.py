"""Unit tests of the SIP parser for what the torture corpora do not cover.

Compact header names, list splitting, folding, IPv6, tel: URIs, the size guards, stream
framing, building responses and derived messages, the bugs fuzzing found (each named), and
the values real user agents send that RFC 3261's grammar allows (tests/sip/test_real_uas.py
has their captured messages).
"""

from __future__ import annotations

import pytest

from pkiss.sip.errors import ParseError
from pkiss.sip.headers import (
    COMPACT_FORMS,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_commas,
)
from pkiss.sip.message import Message, Request, Response, make_response
from pkiss.sip.parser import StreamParser, parse_datagram
from pkiss.sip.sanity import check_request
from pkiss.sip.uri import AbsoluteURI, SipURI, TelURI, parse_uri, unescape

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.example.net:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b'From: "Alice A." <sip:alice@example.net>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.example.net\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def request(*header_lines: str, start: str = "OPTIONS sip:bob@example.com SIP/2.0") -> bytes:
    """A minimal valid request with extra header lines."""
    lines = [
        start,
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc",
        "To: <sip:bob@example.com>",
        "From: <sip:alice@example.net>;tag=1",
        "Call-ID: c1",
        f"CSeq: 1 {start.split(' ', 1)[0]}",
        *header_lines,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse(data: bytes) -> Message:
    msg = parse_datagram(data)
    msg.validate()
    return msg


# ------------------------------------------------------------------------------- header names


def test_every_compact_form() -> None:
    data = (
        b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n"
        b"t: <sip:bob@example.com>\r\n"
        b"f: <sip:alice@example.net>;tag=1\r\n"
        b"i: c1@example.net\r\n"
        b"CSeq: 1 MESSAGE\r\n"
        b"m: <sip:alice@192.0.2.1>\r\n"
        b"e: gzip\r\n"
        b"c: text/plain\r\n"
        b"s: hello\r\n"
        b"k: timer, 100rel\r\n"
        b"o: refer\r\n"
        b"r: <sip:carol@example.com>\r\n"
        b"b: <sip:alice@example.net>\r\n"
        b"u: presence\r\n"
        b"x: 1800;refresher=uac\r\n"
        b"l: 2\r\n"
        b"\r\nhi"
    )
    msg = parse(data)
    assert [name for name, _ in msg.headers] == [
        "Via", "To", "From", "Call-ID", "CSeq", "Contact", "Content-Encoding", "Content-Type",
        "Subject", "Supported", "Event", "Refer-To", "Referred-By", "Allow-Events",
        "Session-Expires", "Content-Length",
    ]  # fmt: skip
    for letter in "imelcfsktvorbux":
        assert canonical_name(letter) == COMPACT_FORMS[letter]
        assert canonical_name(letter.upper()) == COMPACT_FORMS[letter]
    assert msg.call_id == "c1@example.net"
    assert msg.header("supported") == "timer, 100rel"
    assert msg.values("Supported") == ["timer", "100rel"]
    assert msg.body == b"hi"
    assert bytes(msg) == data  # names stay as written on the wire


def test_header_names_are_case_insensitive_and_canonical() -> None:
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("WWW-AUTHENTICATE") == "WWW-Authenticate"
    assert canonical_name("X-Custom-Thing") == "X-Custom-Thing"
    with pytest.raises(ParseError):
        canonical_name("Bad Name")
    with pytest.raises(ParseError):
        canonical_name("")


def test_unknown_headers_are_kept_verbatim_and_in_order() -> None:
    msg = parse(
        request(
            "X-B: second ; odd,, value",
            "X-A:  first\t",
            "x-b: third",
            'P-Weird: "quoted, with comma" <sip:x@y>',
        )
    )
    assert [(n, v) for n, v in msg.headers if n.lower().startswith(("x-", "p-"))] == [
        ("X-B", "second ; odd,, value"),
        ("X-A", "first"),
        ("x-b", "third"),
        ("P-Weird", '"quoted, with comma" <sip:x@y>'),
    ]
    assert msg.header_lines("X-B") == ["second ; odd,, value", "third"]
    assert msg.count("x-b") == 2


# --------------------------------------------------------------------------- list splitting


def test_split_commas_respects_quotes_and_angle_brackets() -> None:
    assert split_commas("a, b ,c") == ["a", "b", "c"]
    assert split_commas('"Doe, John" <sip:j@x>, <sip:k@y>') == [
        '"Doe, John" <sip:j@x>',
        "<sip:k@y>",
    ]
    assert split_commas('"a \\" , b" <sip:a@x>, c') == ['"a \\" , b" <sip:a@x>', "c"]
    assert split_commas('"\\\\", d') == ['"\\\\"', "d"]  # an escaped backslash ends nothing
    assert split_commas("<sip:a@x;p=1,2>, <sip:b@y>") == ["<sip:a@x;p=1,2>", "<sip:b@y>"]
    assert split_commas('<sip:a@x>;q="0,5", <sip:b@y>') == ['<sip:a@x>;q="0,5"', "<sip:b@y>"]
    assert split_commas("\tx ,\ty\t") == ["x", "y"]


@pytest.mark.parametrize("value", ["a,,b", "a,", ",a", " , ", '"open, quote', 'a, "b'])
def test_split_commas_rejects_empty_elements_and_open_quotes(value: str) -> None:
    with pytest.raises(ParseError):
        split_commas(value)


def test_contact_list_with_quoted_commas() -> None:
    msg = parse(request('Contact: "Doe, J." <sip:j@192.0.2.2>;q=0.5, sip:k@192.0.2.3;expires=60'))
    assert [c.display for c in msg.contact] == ['"Doe, J."', None]
    assert [c.param("q") for c in msg.contact] == ["0.5", None]
    assert msg.contact[1].param("expires") == "60"


# -------------------------------------------------------------------------------- folding


def test_line_folding_with_tabs_and_spaces() -> None:
    data = request(
        "Subject: first\r\n\tsecond\r\n   third",
        "Route: <sip:p1@example.com;lr>,\r\n\t<sip:p2@example.com;lr>",
    )
    msg = parse(data)
    assert msg.header("Subject") == "first second third"
    assert [str(r.uri) for r in msg.route] == ["sip:p1@example.com;lr", "sip:p2@example.com;lr"]
    assert bytes(msg) == data


def test_bare_lf_and_cr_in_the_head_are_rejected() -> None:
    with pytest.raises(ParseError):
        parse_datagram(request("Subject: a\nb"))
    with pytest.raises(ParseError):
        parse_datagram(request("Subject: a\rb"))


def test_leading_crlfs_before_the_start_line_are_ignored() -> None:
    data = request()
    msg = parse(b"\r\n\r\n" + data)
    assert bytes(msg) == data


# ------------------------------------------------------------------------------------ IPv6


def test_ipv6_everywhere() -> None:
    msg = parse(
        request(
            "Via: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx;received=[2001:db8::9]",
            "Via: SIP/2.0/UDP [2001:db8::2];received=2001:db8::10;rport=5062",
            "Contact: <sip:alice@[2001:db8::1]:5061;transport=tcp>",
            start="OPTIONS sip:bob@[2001:db8::aa]:5070;transport=udp SIP/2.0",
        )
    )
    assert isinstance(msg, Request)
    uri = msg.uri
    assert isinstance(uri, SipURI)
    assert (uri.host, uri.host_address, uri.port, uri.transport) == (
        "[2001:db8::aa]",
        "2001:db8::aa",
        5070,
        "udp",
    )
    assert [(v.host, v.port, v.received) for v in msg.via[1:]] == [
        ("[2001:db8::1]", 5061, "[2001:db8::9]"),
        ("[2001:db8::2]", None, "2001:db8::10"),
    ]
    assert msg.via[2].rport == "5062"
    assert msg.contact[0].sip_uri.host_address == "2001:db8::1"


@pytest.mark.parametrize(
    "text",
    [
        "sip:[2001:db8::1",  # unclosed
        "sip:[2001:db8:::1]",  # RFC 5118 §4.10
        "sip:[fe80::1%25eth0]",  # zone ids are not in SIP URIs
        "sip:[fe80::1%eth0]",
        "sip:[2001:db8::1]x",
        "sip:[192.0.2.1]",
    ],
)
def test_bad_ipv6_references(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


# -------------------------------------------------------------------------------- hosts


@pytest.mark.parametrize(
    "host", ["example.com", "example.com.", "a-b.c", "x", "10.0.0.1", "0.10.10.0", "h_1.example"]
)
def test_good_hosts(host: str) -> None:
    uri = parse_uri(f"sip:u@{host}:5060")
    assert isinstance(uri, SipURI) and uri.host == host and uri.port == 5060


@pytest.mark.parametrize(
    "host",
    [
        "10.10.10.256",  # PROTOS c07-sip case 332: not an IPv4 address, and no hostname either
        "10.10.10.-1",
        "10.10.10.4095",
        "127.0.0.25060",
        "-a.example.com",
        "a-.example.com",
        "example.3com",
        "a..b",
        ".a",
        "",
    ],
)
def test_bad_hosts(host: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(f"sip:u@{host}")
    with pytest.raises(ParseError):
        parse_via(f"SIP/2.0/UDP {host};branch=z9hG4bKx")


@pytest.mark.parametrize("port", ["65536", "99999", "123456", "0" * 5000 + "1" * 6])
def test_via_port_out_of_range(port: str) -> None:
    # PROTOS c07-sip case 473 (port 65536) used to be accepted
    with pytest.raises(ParseError):
        parse_via(f"SIP/2.0/UDP 192.0.2.1:{port};branch=z9hG4bKx")


def test_via_port_with_leading_zeros() -> None:
    assert parse_via("SIP/2.0/UDP 192.0.2.1:05060").port == 5060


def test_via_extension_may_be_quoted_but_not_branch() -> None:
    via = parse_via('SIP/2.0/UDP h.example.com;branch=z9hG4bKx;x-ext="a b"')
    assert via.params[1] == ("x-ext", '"a b"')
    with pytest.raises(ParseError):
        parse_via('SIP/2.0/UDP h.example.com;branch="z9hG4bKx"')
    with pytest.raises(ParseError):
        parse_via("SIP/2.0/UDP h.example.com;branch=")


def test_non_ascii_white_space_is_not_lws() -> None:
    # Latin-1 NEL and NBSP are white space to Python's \s and str.strip(), not to RFC 3261.
    for ws in ("\x85", "\xa0", "\x1c"):
        with pytest.raises(ParseError):
            parse_via(f"SIP/2.0/UDP{ws}h.example.com")
        with pytest.raises(ParseError):
            parse_name_addr(f"<sip:a@b>{ws}")
        with pytest.raises(ParseError):
            parse_cseq(f"1{ws}INVITE")


# -------------------------------------------------------------------------------- URIs


def test_tel_uris_with_parameters() -> None:
    uri = parse_uri("tel:+1-201-555-0123;ext=42;phone-context=example.com")
    assert isinstance(uri, TelURI)
    assert uri.number == "+1-201-555-0123"
    assert uri.param("EXT") == "42" and uri.param("phone-context") == "example.com"
    assert str(uri) == "tel:+1-201-555-0123;ext=42;phone-context=example.com"
    local = parse_uri("tel:7042;phone-context=+1-201")
    assert isinstance(local, TelURI) and local.user == "7042"
    msg = parse(
        request("Contact: <tel:+442071234567;isub=1234>", start="INVITE tel:+15551234 SIP/2.0")
    )
    assert isinstance(msg, Request) and isinstance(msg.uri, TelURI)
    assert msg.contact[0].uri == TelURI("+442071234567", (("isub", "1234"),))
    for bad in ("tel:", "tel:+1 555", "tel:+1x", "tel:+1;=x", "tel:+1;a=", "tel:+1;;a"):
        with pytest.raises(ParseError):
            parse_uri(bad)


def test_sip_uri_parts() -> None:
    uri = parse_uri("SIPS:alice:secret@Example.COM:5061;transport=TLS;lr?subject=hi&x=y")
    assert isinstance(uri, SipURI)
    assert uri.scheme == "sips" and uri.user == "alice" and uri.password == "secret"
    assert uri.host == "Example.COM" and uri.port == 5061
    assert uri.params == (("transport", "TLS"), ("lr", None))
    assert uri.transport == "tls" and uri.param("LR") == ""
    assert uri.headers == "subject=hi&x=y"
    assert str(uri) == "sips:alice:secret@Example.COM:5061;transport=TLS;lr?subject=hi&x=y"


def test_absolute_uris_are_printable_ascii() -> None:
    assert parse_uri("urn:service:sos") == AbsoluteURI("urn", "service:sos")
    for bad in ("urn:a b", "urn:a\x00", "urn:\xe9", "urn:a<b", 'urn:"', "urn:"):
        with pytest.raises(ParseError):
            parse_uri(bad)


def test_unescape_decodes_valid_escapes_once() -> None:
    assert unescape("v%61lue%25%34%31") == "value%41"
    assert unescape("%Z%45") == "%ZE"
    assert unescape("100%") == "100%"
    assert unescape("%+1%-1% 1%_1") == "%+1%-1% 1%_1"  # int("+1", 16) is not an escape


def test_long_uris_are_not_cached() -> None:
    from pkiss.sip import uri as uri_module

    before = uri_module._parse_uri_cached.cache_info().currsize
    for i in range(50):
        parse_uri(f"sip:{'a' * 300}{i}@example.com")
    assert uri_module._parse_uri_cached.cache_info().currsize == before


# ---------------------------------------------------------------------------- name-addr


def test_quoted_display_name_may_hold_angle_brackets() -> None:
    na = parse_name_addr('"Bob <boss>, Inc." <sip:bob@example.com>;tag=7')
    assert na.display == '"Bob <boss>, Inc."'
    assert na.sip_uri.user == "bob" and na.tag == "7"
    msg = parse(request('Contact: "<a>" <sip:a@192.0.2.9>, "b>" <sip:b@192.0.2.9>'))
    assert [c.display for c in msg.contact] == ['"<a>"', '"b>"']
    for bad in ('"unterminated <sip:a@b>', '"x" sip:a@b', '"x" y <sip:a@b>'):
        with pytest.raises(ParseError):
            parse_name_addr(bad)


def test_name_addr_forms() -> None:
    assert parse_name_addr("sip:a@b;tag=1").tag == "1"
    assert parse_name_addr("sip:a@b;tag=1").sip_uri.params == ()
    assert parse_name_addr("Alice Smith <sip:a@b>").display == "Alice Smith"
    assert parse_name_addr("*", allow_star=True).star
    with pytest.raises(ParseError):
        parse_name_addr("*")
    with pytest.raises(ParseError):
        parse_name_addr("< sip:a@b >")
    with pytest.raises(ParseError):
        parse_name_addr("<sip:a@b")
    na = parse_name_addr("<sip:a@b>").with_tag("x")
    assert str(na) == "<sip:a@b>;tag=x"


# ----------------------------------------------------------------------- scalars and limits


@pytest.mark.parametrize(
    "line",
    [
        "Max-Forwards: " + "1" * 5000,  # int() of > 4300 digits raised ValueError
        "Max-Forwards: 256",
        "Max-Forwards: -1",
        "Content-Length: " + "1" * 5000,
        "Content-Length: " + "9" * 11,
        "Content-Length: -0",
    ],
)
def test_overlarge_scalars_raise_parse_error(line: str) -> None:
    with pytest.raises(ParseError):
        parse(request(line))


def test_scalars_with_leading_zeros() -> None:
    msg = parse(request("Max-Forwards: " + "0" * 5000 + "70", "Content-Length: 000"))
    assert msg.max_forwards == 70 and msg.body == b""
    assert parse_cseq("0" * 5000 + "9 INVITE").seq == 9
    assert parse_cseq("4294967295 ACK").seq == 2**32 - 1
    for bad in ("4294967296 ACK", "1" * 5000 + " ACK", "1", "x INVITE", "-1 INVITE"):
        with pytest.raises(ParseError):
            parse_cseq(bad)


def test_datagram_over_max_size_is_513() -> None:
    data = request("X-Pad: " + "a" * 2000)
    assert isinstance(parse_datagram(data, max_size=len(data)), Request)
    with pytest.raises(ParseError) as info:
        parse_datagram(data, max_size=len(data) - 1)
    assert info.value.status_hint == 513


def test_request_line_and_status_line() -> None:
    for bad in (
        b"INVITE  sip:a@b SIP/2.0",
        b"INVITE sip:a@b SIP/2.0 ",
        b"INVITE sip:a@b",
        b"INV@TE sip:a@b SIP/2.0",
        b"INVITE <sip:a@b> SIP/2.0",
        b"SIP/2.0 1000 Big",
        b"SIP/2.0 099 Small",
        b"SIP/2.0 abc X",
    ):
        with pytest.raises(ParseError) as info:
            parse_datagram(bad + b"\r\nContent-Length: 0\r\n\r\n")
        assert info.value.status_hint == 400
    with pytest.raises(ParseError) as info:
        parse_datagram(b"OPTIONS sip:a@b SIP/3.0\r\n\r\n")
    assert info.value.status_hint == 505
    resp = parse(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(resp, Response) and (resp.status, resp.reason) == (486, "Busy Here")


# ----------------------------------------------------------------------------------- stream


def test_stream_frames_several_messages_in_one_chunk() -> None:
    second = request("Content-Length: 0")
    third = bytes(parse_datagram(INVITE).replace(body=b"v=1\r\n"))
    items = StreamParser().feed(INVITE + b"\r\n\r\n" + second + third)
    assert [type(m) for m in items] == [Request, Request, Request]
    assert [bytes(m) for m in items] == [INVITE, second, third]  # type: ignore[call-overload]


def test_stream_frames_one_message_over_many_chunks() -> None:
    parser = StreamParser()
    out: list[object] = []
    for i in range(0, len(INVITE), 7):
        out += parser.feed(INVITE[i : i + 7])
        if i + 7 < len(INVITE):
            assert out == []
    assert len(out) == 1 and bytes(out[0]) == INVITE  # type: ignore[call-overload]


def test_stream_skips_keep_alive_crlfs() -> None:
    parser = StreamParser()
    assert parser.feed(b"\r\n\r\n") == []
    assert parser.feed(b"\r\n") == []
    first = parser.feed(INVITE + b"\r\n\r\n\r\n")
    second = parser.feed(b"\r\n" + INVITE)
    assert len(first) == 1 and len(second) == 1 and bytes(second[0]) == INVITE  # type: ignore[call-overload]


def test_stream_requires_content_length() -> None:
    with pytest.raises(ParseError):
        StreamParser().feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n")


def test_stream_returns_a_message_that_frames_but_does_not_parse_as_its_error() -> None:
    bad = request("Max-Forwards: 300", "Content-Length: 0")
    parser = StreamParser()
    items = parser.feed(bad + INVITE)
    assert isinstance(items[0], ParseError) and items[0].status_hint == 400
    assert isinstance(items[1], Request)  # the stream stays usable


def test_stream_framing_error_after_a_message_is_raised_on_the_next_call() -> None:
    parser = StreamParser()
    items = parser.feed(INVITE + b"NOT SIP\r\n\r\n")
    assert len(items) == 1 and bytes(items[0]) == INVITE  # type: ignore[call-overload]
    with pytest.raises(ParseError):
        parser.feed(b"")
    with pytest.raises(ParseError):
        parser.feed(INVITE)  # the stream is dead


def test_stream_never_ending_head_is_bounded() -> None:
    parser = StreamParser(max_size=4096)
    parser.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    fed = 0
    with pytest.raises(ParseError) as info:
        while fed < 100_000:
            parser.feed(b"X-Slow: " + b"a" * 90 + b"\r\n")
            fed += 100
    assert info.value.status_hint == 513
    assert fed <= 4096
    assert len(parser._buf) <= 4096 + 100


def test_stream_message_over_max_size_is_refused_before_its_body_arrives() -> None:
    parser = StreamParser(max_size=1000)
    with pytest.raises(ParseError) as info:
        parser.feed(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    assert info.value.status_hint == 513


def test_stream_byte_by_byte_is_linear() -> None:
    # Rescanning the whole buffer on every byte would make this quadratic (a slow-loris CPU cost).
    parser = StreamParser(max_size=200_000)
    head = b"OPTIONS sip:a@b SIP/2.0\r\nX-Pad: " + b"a" * 100_000
    for i in range(len(head)):
        assert parser.feed(head[i : i + 1]) == []
    assert parser.feed(b"\r\nContent-Length: 0\r\n\r") == []
    (msg,) = parser.feed(b"\n")
    assert isinstance(msg, Request) and msg.header("X-Pad") == "a" * 100_000


# --------------------------------------------------------------------- building messages


def test_make_response_copies_the_dialog_headers() -> None:
    req = parse_datagram(INVITE)
    assert isinstance(req, Request)
    two = parse(request("Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp"))
    assert isinstance(two, Request)
    resp = make_response(two, 180, to_tag="abc", headers=[("Contact", "<sip:b@192.0.2.5>")])
    assert resp.status == 180 and resp.reason == "Ringing"
    assert resp.header_lines("Via") == two.header_lines("Via")
    assert [v.host for v in resp.via] == ["192.0.2.1", "proxy.example.com"]
    assert resp.header("From") == two.header("From")
    assert resp.header("Call-ID") == "c1" and resp.header("CSeq") == "1 OPTIONS"
    assert resp.to is not None and resp.to.tag == "abc"
    assert resp.header("Contact") == "<sip:b@192.0.2.5>"
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to is not None and trying.to.tag is None  # never on 100 (§8.2.6.1)
    in_dialog = two.replace(set_headers={"To": "<sip:bob@example.com>;tag=old"})
    kept = make_response(in_dialog, 200, to_tag="new")
    assert kept.to is not None and kept.to.tag == "old"
    again = parse_datagram(bytes(resp))
    assert isinstance(again, Response) and again.status == 180
    assert again.header("Content-Length") == "0"


def test_replace_set_headers() -> None:
    req = parse(request("X-A: 1", "Route: <sip:r1@example.com;lr>", "X-A: 2", "Route: <sip:r2@x>"))
    assert isinstance(req, Request)
    out = req.replace(
        set_headers={"x-a": "new", "Route": None, "X-New": "added", "Max-Forwards": "69"}
    )
    names = [n for n, _ in out.headers]
    assert "Route" not in names
    assert out.header_lines("X-A") == ["new"]
    assert names.index("x-a") == names.index("CSeq") + 1  # in place of the first occurrence
    assert out.header("X-New") == "added" and names[-2:] == ["X-New", "Max-Forwards"]
    assert out.raw is None and b"Route" not in bytes(out)
    assert req.header_lines("X-A") == ["1", "2"]  # the original is unchanged
    assert parse_datagram(bytes(out)).header("x-a") == "new"
    same = req.replace()
    assert same.headers == req.headers and bytes(same).startswith(b"OPTIONS sip:bob@example.com")


def test_built_request_serialisation_sets_content_length() -> None:
    req = Request(
        "MESSAGE",
        "sip:bob@example.com",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb"),
            ("Content-Length", "999"),
            ("l", "7"),
            ("content-length", "3"),
            ("CSeq", "1 MESSAGE"),
        ],
        body=b"hello",
    )
    data = bytes(req)
    assert data.count(b"Content-Length") == 1 and b"\r\nl:" not in data
    assert data.endswith(b"Content-Length: 5\r\n\r\nhello")
    again = parse(data)
    assert isinstance(again, Request) and again.body == b"hello"
    empty = Request("OPTIONS", parse_uri("sip:a@b"), [])
    assert bytes(empty) == b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    resp = Response(404, None, [("CSeq", "1 OPTIONS")])
    assert bytes(resp).startswith(b"SIP/2.0 404 Not Found\r\n")


def test_stamp_received_adds_received_and_rport_when_asked() -> None:
    from pkiss.sip.message import Request, stamp_received

    raw = (
        b"OPTIONS sip:sbc SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport,"
        b" SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK0\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    request = parse_datagram(raw)
    assert isinstance(request, Request)
    stamped = stamp_received(request, "192.0.2.7", 40000)
    top = stamped.via[0]
    assert (top.received, top.rport, top.branch) == ("192.0.2.7", "40000", "z9hG4bK1")
    assert [v.host for v in stamped.via] == ["10.0.0.1", "10.9.9.9"]
    assert stamp_received(request, "10.0.0.1", 5060).via[0].rport == "5060"
    plain = parse_datagram(raw.replace(b";rport,", b","))
    assert isinstance(plain, Request)
    assert stamp_received(plain, "10.0.0.1", 5060) is plain  # nothing to say


# ----------------------------------------------------------------- what real user agents send


@pytest.mark.parametrize(
    "name",
    ["Supported", "k", "Allow", "Accept", "Accept-Encoding", "Accept-Language", "Require",
     "Proxy-Require", "Unsupported"],
)  # fmt: skip
def test_empty_option_and_capability_lists_are_no_values(name: str) -> None:
    # baresip 1.0.0 without its uuid module sends "Supported:" (RFC 3261 §20.37: the list is
    # optional); it was refused as "empty value in a list" and the call dropped.
    msg = parse(request(f"{name}:", start="INVITE sip:bob@example.com SIP/2.0"))
    assert isinstance(msg, Request)
    assert msg.values(canonical_name(name)) == []
    assert check_request(msg) is None  # an empty Require requires nothing: no 420
    assert bytes(msg).count(f"\r\n{name}:\r\n".encode()) == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('Require: ,c]@{"?\t{*b=[!>', "Bad Require"),  # found by tests/fuzz: it escaped
        ('Supported: ~("\t\x00,c%;^&+', "Bad Supported"),  # an INVITE transaction leaked
        ("Supported: timer,,100rel", "Bad Supported"),
        ('Allow: INVITE, "ACK', "Bad Allow"),
        ('P-Asserted-Identity: "a, <sip:a@b>', "Bad P-Asserted-Identity"),
        ("Proxy-Require: ,", "Bad Proxy-Require"),
    ],
)
def test_list_headers_the_node_reads_must_split(line: str, reason: str) -> None:
    # Refused on admission (400) rather than raising ParseError once the INVITE's server
    # transaction exists: the node's fuzzing found one escaping and one leaving a transaction
    # that nothing ever answered.
    msg = parse(request(line, start="INVITE sip:bob@example.com SIP/2.0"))
    assert isinstance(msg, Request)
    assert check_request(msg) == (400, reason, [])


def test_empty_lines_among_list_lines_add_nothing() -> None:
    msg = parse(request("Accept: application/sdp", "Accept:", "Accept: text/plain;q=0.5"))
    assert msg.values("accept") == ["application/sdp", "text/plain;q=0.5"]
    msg = parse(request("Supported:", "Supported: timer, 100rel", "Supported: \t"))
    assert msg.values("supported") == ["timer", "100rel"]
    msg = parse(request("Require:", "Require: path", start="INVITE sip:b@example.com SIP/2.0"))
    assert isinstance(msg, Request)
    assert check_request(msg) == (420, "Bad Extension", [("Unsupported", "path")])


@pytest.mark.parametrize("line", ["Supported: timer,,100rel", "Allow: ,INVITE", "Require: 100rel,"])
def test_empty_elements_inside_a_list_are_still_malformed(line: str) -> None:
    msg = parse(request(line))
    with pytest.raises(ParseError, match="empty value"):
        msg.values(line.split(":", 1)[0])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK2"),
        ("Contact", "<sip:a@192.0.2.1>"),
        ("Route", "<sip:p1.example.com;lr>"),
        ("Record-Route", "<sip:p1.example.com;lr>"),
    ],
)
def test_lists_that_must_hold_a_value_refuse_an_empty_one(name: str, value: str) -> None:
    assert parse(request(f"{name}: {value}")).values(name)[-1] == value
    with pytest.raises(ParseError, match="empty value"):
        parse(request(f"{name}:"))
    with pytest.raises(ParseError, match="empty value"):
        parse(request(f"{name}: {value}", f"{name}: "))


def test_flag_parameters_and_their_case() -> None:
    msg = parse(
        request(
            "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;LR=on;ftag=a1>,"
            "<sip:[2001:db8::7]:5080;Transport=TCP;lr=on>",
            "Record-Route: <sips:p4.example.com;lr;transport=tls>",
            "Contact: <sip:alice@192.0.2.1;ob>;reg-id=1",
            start="INVITE sip:bob@example.com SIP/2.0",
        ).replace(b"z9hG4bKabc", b"z9hG4bKabc;RPORT")
    )
    rr = [na.sip_uri for na in msg.record_route]
    assert [u.host for u in rr] == ["p1.example.com", "p2.example.com", "[2001:db8::7]",
                                    "p4.example.com"]  # fmt: skip
    # ";lr" and ";lr=on" (RFC 2543-era proxies, Kamailio's enable_full_lr) both mean loose
    # routing: the parameter is there, whatever its case or value.
    assert [u.param("lr") for u in rr] == ["", "on", "on", ""]
    assert [u.transport for u in rr] == [None, None, "tcp", "tls"]
    assert rr[2].port == 5080 and rr[2].host_address == "2001:db8::7"
    assert msg.contact[0].sip_uri.param("OB") == "" and msg.contact[0].param("Reg-Id") == "1"
    assert msg.via[0].rport == "" and msg.via[0].branch == "z9hG4bKabc"
    assert parse_name_addr("<sip:a@b;TRANSPORT=Udp>").sip_uri.transport == "udp"
    assert parse_via("SIP/2.0/tcp h;branch=z9hG4bK1;Received=192.0.2.2;Rport=1").transport == "TCP"


def test_outbound_contact_parameters() -> None:
    instance = '"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"'
    na = parse_name_addr(f"<sip:a@192.0.2.1;ob>;expires=3600;+sip.instance={instance};reg-id=1")
    assert na.param("+SIP.instance") == instance and na.param("expires") == "3600"
    # Without <>, the "<" quoted in +sip.instance is no name-addr (RFC 3261 §20.10: the
    # parameters are the header's)
    na = parse_name_addr(f"sip:a@192.0.2.1;+sip.instance={instance};reg-id=2")
    assert na.display is None and str(na.uri) == "sip:a@192.0.2.1"
    assert na.param("+sip.instance") == instance and na.param("reg-id") == "2"
    msg = parse(request(f"Contact: sip:a@192.0.2.1;+sip.instance={instance}, <sip:b@192.0.2.2>"))
    assert [c.param("+sip.instance") for c in msg.contact] == [instance, None]
    for bad in ("sip:a b <sip:a@b>", "sip:a@b;x=<y>"):
        with pytest.raises(ParseError):
            parse_name_addr(bad)


@pytest.mark.parametrize(
    ("value", "display"),
    [
        ("Anonymous <sip:anonymous@anonymous.invalid>", "Anonymous"),
        ("+33123 <sip:+33123@192.0.2.4>", "+33123"),  # SIPp via Kamailio
        ("Joe.O'Neil-2 ~x` <sip:joe@example.com>", "Joe.O'Neil-2 ~x`"),
        ("100%_*! <sip:x@example.com>", "100%_*!"),
        ('"Alice O\'Neil" <sip:a@example.com>', '"Alice O\'Neil"'),
        ('"" <sip:a@example.com>', '""'),
        ('"Dupont, J. \\"Jo\\"" <sip:j@example.com>', '"Dupont, J. \\"Jo\\""'),
        ('"J\xc3\xb6rg"<sip:j@example.com>', '"J\xc3\xb6rg"'),  # UTF-8 as Latin-1, quoted
        ("<sip:a@example.com>", None),
    ],
)
def test_display_names(value: str, display: str | None) -> None:
    assert parse_name_addr(value).display == display


@pytest.mark.parametrize(
    "value", ["J\xc3\xb6rg <sip:j@example.com>", "a@b <sip:a@b>", "a,b <sip:a@b>"]
)
def test_unquoted_display_names_are_tokens(value: str) -> None:
    with pytest.raises(ParseError):  # display-name = *(token LWS) / quoted-string
        parse_name_addr(value)


def test_an_unescaped_hash_in_a_user_part_is_refused() -> None:
    with pytest.raises(ParseError):  # RFC 3261 §25.1: "#" is not a user character
        parse_uri("sip:*21#@example.com")
    escaped = parse_uri("sip:*21%23@example.com")
    assert isinstance(escaped, SipURI) and escaped.user == "*21%23"


def test_carrier_identity_and_timer_headers() -> None:
    msg = parse(
        request(
            'P-Asserted-Identity: "Alice" <sip:+33123456789@carrier.example;user=phone>, '
            "<tel:+33123456789>",
            "Privacy: id",
            "Session-Expires: 1800;refresher=uac",
            "Min-SE: 90",
            "Diversion: <sip:+33198765432@carrier.example;user=phone>;reason=unconditional;"
            "counter=1;privacy=off",
            "History-Info: <sip:bob@example.com>;index=1,"
            " <sip:bob@192.0.2.5?Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%22>;index=1.1;rc=1",
            "Supported: timer",
            start="INVITE sips:+33198765432@example.com;user=phone SIP/2.0",
        )
    )
    assert isinstance(msg, Request) and check_request(msg) is None
    assert isinstance(msg.uri, SipURI) and msg.uri.scheme == "sips"
    pai = [parse_name_addr(v) for v in msg.values("p-asserted-identity")]
    assert [type(p.uri) for p in pai] == [SipURI, TelURI]
    assert isinstance(pai[1].uri, TelURI) and pai[1].uri.number == "+33123456789"
    assert msg.header("privacy") == "id" and msg.header("min-se") == "90"
    assert msg.header("session-expires") == "1800;refresher=uac"
    diversion = parse_name_addr(msg.values("diversion")[0])
    assert (diversion.param("reason"), diversion.param("counter")) == ("unconditional", "1")
    history = [parse_name_addr(v) for v in msg.values("history-info")]
    assert [h.param("index") for h in history] == ["1", "1.1"]
    second = history[1].sip_uri
    assert second.headers == "Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%22"
    assert unescape(second.headers.partition("=")[2]) == 'SIP;cause=302;text="Moved"'


def test_contact_star_unregisters_everything() -> None:
    msg = parse(request("Contact: *", "Expires: 0", start="REGISTER sip:example.com SIP/2.0"))
    assert isinstance(msg, Request)
    assert [c.star for c in msg.contact] == [True] and check_request(msg) is None
    for bad in ("Contact: *;expires=0", "Contact: *, <sip:a@b>", "Contact: <sip:a@b>, *"):
        with pytest.raises(ParseError):
            parse(request(bad, start="REGISTER sip:example.com SIP/2.0"))
