"""The parser's shortcuts for the common shapes (Via, parameter lists, the header index built
while reading) give what the general code gives, values and errors alike."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pkiss.sip import headers, uri
from pkiss.sip.errors import ParseError
from pkiss.sip.message import Message, Request, Response, make_response
from pkiss.sip.parser import StreamParser, parse_datagram, parse_head

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uas"

VIAS = [
    "SIP/2.0/UDP 10.0.0.2:5061;branch=z9hG4bK-4242-1-inv",
    "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1;rport",
    "SIP/2.0/TCP pc33.example.com:05060;branch=z9hG4bKa;received=192.0.2.1;rport=5060",
    "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx;maddr=[2001:db8::2]",
    "SIP/2.0/udp host-1.example.org;branch=z9hG4bK.x~y;ttl=16",
    "SIP/2.0/UDP 10.0.0.2:5060",
    "SIP/2.0/UDP 10.0.0.2:5060;branch",
    "SIP/2.0/UDP 10.0.0.2:5060;branch=",
    "SIP/2.0/UDP 10.0.0.2:99999;branch=z9hG4bK1",
    "SIP/2.0/UDP 10.0.0.256;branch=z9hG4bK1",
    "SIP/2.0/UDP -bad-;branch=z9hG4bK1",
    'SIP/2.0/UDP 10.0.0.2;branch="z9hG4bK1"',
    "SIP/3.0/UDP 10.0.0.2;branch=z9hG4bK1",
    "sip/2.0/udp 10.0.0.2 ; branch = z9hG4bK1",
    "SIP/2.0/UDP [::1];branch=z9hG4bK1;x",
    "SIP/2.0/UDP [::1:5060;branch=z9hG4bK1",
    "SIP/2.0/UDP [2001:db8:::192.0.2.1];branch=z9hG4bK1",
]
HEADER_PARAMS = [
    ";tag=4242SIPpTag001",
    ";tag=a;lr;x=[::1];y=a:b",
    ";a=",
    ";=b",
    ";a=b=c",
    ";a;;b",
    " ;a=b",
    ';a="q;uoted"',
    ";a=b ",
    ";a=%41",
    ";a=é",
]
URI_PARAMS = ["transport=udp", "lr", "a=b;c", "a=%41;b=[::1]", "a=", "=b", "a;;b", "a=b=c", "a=%4"]
ALPHABET = " \t;=:,\"<>[]%@/.-_!~*'()&+$?\\aZ09é"


def outcome(parse: Callable[[str], object], text: str) -> object:
    try:
        return parse(text)
    except ParseError as exc:
        return ("error", exc.reason)


def mutations(seeds: list[str], count: int, alphabet: str = ALPHABET) -> list[str]:
    rng = random.Random(20240510)
    out = list(seeds)
    for _ in range(count):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(text) + 1)
            action = rng.randrange(3)
            if action == 0 and pos < len(text):
                del text[pos]
            elif action == 1 and pos < len(text):
                text[pos] = rng.choice(alphabet)
            else:
                text.insert(pos, rng.choice(alphabet))
        out.append("".join(text))
    return out


def disagreements(
    fast: Callable[[str], object], general: Callable[[str], object], texts: list[str]
) -> list[tuple[str, object, object]]:
    out = []
    for text in texts:
        a, b = outcome(fast, text), outcome(general, text)
        if a != b:
            out.append((text, a, b))
    return out


def test_via_shortcut_agrees_with_the_general_parser() -> None:
    texts = mutations(VIAS, 5000)
    assert not disagreements(headers._parse_via, headers._parse_via_general, texts)


def test_header_parameter_shortcut_agrees() -> None:
    texts = mutations(HEADER_PARAMS, 5000)
    assert not disagreements(headers.parse_params, headers._parse_params_general, texts)


def test_uri_parameter_shortcut_agrees() -> None:
    def fast(t: str) -> object:
        return uri._parse_params(t, "URI")

    def general(t: str) -> object:
        return uri._parse_params_general(t, "URI")

    assert not disagreements(fast, general, mutations(URI_PARAMS, 5000))


def test_host_cache_gives_the_same_answers_and_stays_bounded() -> None:
    assert uri.parse_host("10.0.0.2:5060") == uri.parse_host("10.0.0.2:5060") == ("10.0.0.2", 5060)
    for _ in range(2):
        with pytest.raises(ParseError):
            uri.parse_host("10.0.0.256")
    for i in range(uri._HOSTS_SIZE + 10):
        uri.parse_host(f"h{i}.example.com")
    assert len(uri._HOSTS) <= uri._HOSTS_SIZE
    uri.parse_host("x" * 200 + ".example.com")
    assert all(len(text) <= 80 for text in uri._HOSTS)


def every_fixture() -> list[bytes]:
    return [path.read_bytes() for path in sorted(FIXTURES.glob("*.sip"))]


@pytest.mark.parametrize("data", every_fixture())
def test_the_parsers_index_is_the_one_a_message_builds(data: bytes) -> None:
    parsed = parse_datagram(data)
    rebuilt = Message(parsed.headers)
    assert parsed._index == rebuilt._make_index()
    assert parsed._more == rebuilt._more
    if parsed.has("content-length"):  # a stream needs it
        (streamed,) = StreamParser().feed(data)
        assert isinstance(streamed, Message) and streamed._index == parsed._index
        assert streamed._more == parsed._more


def test_header_access_is_case_insensitive_on_built_messages() -> None:
    msg = Request(
        "OPTIONS",
        "sip:a@b",
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("x-Custom", "1"), ("X-CUSTOM", "2")],
    )
    assert msg._index is None  # built on first use
    assert msg.header("x-custom") == msg.header("X-Custom") == "1"
    assert msg.header_lines("X-CUSTOM") == ["1", "2"]
    assert msg.count("x-CUSTOM") == 2 and msg.has("VIA") and not msg.has("route")
    assert msg.values("Via") == ["SIP/2.0/UDP h;branch=z9hG4bK1"]
    assert msg.header("missing") is None and msg.header_lines("Missing") == []
    lines = msg.header_lines("x-custom")
    lines.append("3")  # a copy: the message is not changed
    assert msg.count("x-custom") == 2


def test_serialisation_replaces_any_content_length() -> None:
    msg = Response(
        200,
        None,
        [("Via", "v"), ("content-LENGTH", "99"), ("L", "7"), ("Content-Type", "a/b")],
        b"body",
    )
    assert bytes(msg) == (
        b"SIP/2.0 200 OK\r\nVia: v\r\nContent-Type: a/b\r\nContent-Length: 4\r\n\r\nbody"
    )
    assert bytes(Response(100, None, [])) == b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n"
    only = Response(200, "OK", [("Content-Length", "3")], b"abc")
    assert bytes(only) == b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    words = Request("MESSAGE", "sip:h", [("Subject", "l: content-length: 9"), ("Xl", "l: 1")])
    assert bytes(words) == (
        b"MESSAGE sip:h SIP/2.0\r\nSubject: l: content-length: 9\r\nXl: l: 1\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_make_response_copies_what_it_must() -> None:
    request = parse_datagram(
        b"INVITE sip:b@h SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\n"
        b"Via: SIP/2.0/UDP b;branch=z9hG4bK2\r\nf: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\n"
        b"i: c1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
    )
    response = make_response(request, 180, to_tag="t2", headers=[("Contact", "<sip:h>")])
    assert response.headers == (
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
        ("Via", "SIP/2.0/UDP b;branch=z9hG4bK2"),
        ("From", "<sip:a@h>;tag=1"),
        ("To", "<sip:b@h>;tag=t2"),
        ("Call-ID", "c1"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:h>"),
    )
    trying = make_response(request, 100, to_tag="t2")
    assert trying.header("to") == "<sip:b@h>"


def test_value_caches_stay_bounded_and_clear() -> None:
    for i in range(3000):
        parse_datagram(
            f"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h{i}.example.com;branch=z9hG4bK{i}\r\n"
            f"From: <sip:a@h>;tag={i}\r\nTo: <sip:b@h>\r\nCall-ID: {i}\r\nCSeq: {i} OPTIONS\r\n"
            f"X-{'y' * 200}: {i}\r\n\r\n".encode()
        )
    for cache in (headers._VIAS, headers._SENT_BY, headers._NAME_ADDRS, headers._CSEQS):
        assert 0 < len(cache.values) <= cache.limit
        cache.cache_clear()
        assert not cache.values


def test_a_star_contact_is_one_only_where_allowed() -> None:
    assert headers.parse_name_addr("*", allow_star=True).star
    with pytest.raises(ParseError):
        headers.parse_name_addr("*")
    assert headers.parse_name_addr(" * ", allow_star=True).star


_FOLD = re.compile(r"\r\n[ \t]+")


def reference_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """How a head was read before the shortcuts: counted, unfolded, then split."""
    text = head.decode("latin-1")
    crlf = text.count("\r\n")
    if text.count("\n") != crlf or text.count("\r") != crlf:
        raise ParseError("bare CR or LF in header section")
    if "\r\n " in text or "\r\n\t" in text:
        text = _FOLD.sub(" ", text)
    lines = text.split("\r\n")
    out = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ParseError("header line without a colon")
        out.append((headers.canonical_name(name.rstrip(" \t")), value.strip(" \t")))
    return lines[0], out


HEADS = [
    b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: a\r\n b\r\nTo: <a>",
    b"INVITE sip:a@b SIP/2.0\r\nSubject\r\n : folded colon\r\nv: x\r\nCall-ID : c",
    b"SIP/2.0 200 OK\r\nVia: x\r\n\tcontinued\r\nf: <sip:a@b>;tag=1\r\nX-Odd_Name: 1",
    b"OPTIONS sip:a@b SIP/2.0\r\n From: x\r\nTo:\t<sip:a@b> \t\r\nMax-Forwards: 70",
]


def test_head_reading_agrees_with_the_reference() -> None:
    def ours(text: str) -> object:
        start, found = parse_head(text.encode("latin-1"))
        return start, found

    def reference(text: str) -> object:
        return reference_head(text.encode("latin-1"))

    heads = [h.decode("latin-1") for h in HEADS]
    heads += [d[: d.find(b"\r\n\r\n")].decode("latin-1") for d in every_fixture()]
    texts = mutations(heads, 6000, ALPHABET + "\r\n\r\n\r\n  \t:::")
    assert not disagreements(ours, reference, texts)
