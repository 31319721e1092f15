"""What real user agents send, read byte-exact from ``tests/fixtures/uas/``.

Every ``*.sip`` file there is one message as it crossed the wire: captured on loopback from
baresip, linphonec and Kamailio (forwarding SIPp), or rebuilt from a published trace whose byte
count it matches (SOURCES.md says where each comes from). A new capture dropped in the folder
is tested by every test below but the last ones, which compare the values a B2BUA reads with
what the file says, one entry per file in ``EXPECTED``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pkiss.sip.digest import parse_credentials, verify
from pkiss.sip.errors import ParseError
from pkiss.sip.headers import parse_name_addr, parse_via
from pkiss.sip.message import Message, Request
from pkiss.sip.parser import StreamParser, parse_datagram
from pkiss.sip.sanity import check_request

FIXTURES = Path(__file__).parent.parent / "fixtures" / "uas"
FILES = sorted(FIXTURES.glob("*.sip"))
JUNK = b"\x00\xffnot SIP at all\r\n\r\n"


def load(path: Path) -> bytes:
    return path.read_bytes()


def request(data: bytes) -> Request:
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def has_content_length(data: bytes) -> bool:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    return b"\r\ncontent-length:" in head or b"\r\nl:" in head


def test_the_folder_holds_captures() -> None:
    names = {p.name for p in FILES}
    assert len(names) >= 8
    for software in ("baresip-", "linphonec-", "kamailio-", "asterisk-"):
        assert any(n.startswith(software) for n in names), software


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_capture_has_its_source_written_down(path: Path) -> None:
    assert f"`{path.name}`" in (FIXTURES / "SOURCES.md").read_text()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_parses_whole_and_passes_the_sanity_check(path: Path) -> None:
    data = load(path)
    msg = request(data)
    msg.validate()
    assert check_request(msg) is None
    assert msg.method == path.stem.split("-")[2]
    assert bytes(msg) == data  # an unmodified message is sent on as it came, byte for byte
    length = msg.header("content-length")
    assert length is None or int(length) == len(msg.body)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_trailing_octets_after_the_body_are_not_the_message(path: Path) -> None:
    data = load(path)
    if not has_content_length(data):  # the body is the rest of the datagram (RFC 3261 §18.3)
        assert request(data + JUNK).body.endswith(JUNK)
        return
    msg = request(data + JUNK)
    assert bytes(msg) == data and msg.body == request(data).body


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_stream_whole_byte_by_byte_and_followed_by_junk(path: Path) -> None:
    data = load(path)
    if not has_content_length(data):
        # linphonec sends its REGISTER without Content-Length: fine over UDP, a framing error
        # on a stream (RFC 3261 §18.3: Content-Length MUST be used with stream transports)
        with pytest.raises(ParseError, match="no Content-Length"):
            StreamParser().feed(data)
        return
    whole = StreamParser().feed(data)
    assert len(whole) == 1 and isinstance(whole[0], Message) and bytes(whole[0]) == data

    parser = StreamParser()
    got: list[Message | ParseError] = []
    for i in range(len(data)):
        got.extend(parser.feed(data[i : i + 1]))
        assert len(got) == (1 if i == len(data) - 1 else 0)
    assert isinstance(got[0], Message) and bytes(got[0]) == data
    assert parser.feed(b"") == []

    parser = StreamParser()
    first = parser.feed(data + JUNK)
    assert len(first) == 1 and isinstance(first[0], Message) and bytes(first[0]) == data
    with pytest.raises(ParseError):  # the junk is a framing error, reported after the message
        parser.feed(b"")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_parsed_values_write_back_to_themselves(path: Path) -> None:
    msg = request(load(path))
    for via_text, via in zip(msg.values("via"), msg.via, strict=True):
        assert parse_via(str(via)) == via
        assert str(via) == via_text  # Via is copied into responses as parsed
    for name in ("from", "to", "contact", "route", "record-route"):
        for text in msg.values(name):
            value = parse_name_addr(text, allow_star=name == "contact")
            assert parse_name_addr(str(value), allow_star=name == "contact") == value


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_rebuilt_from_its_parts_it_reads_the_same(path: Path) -> None:
    msg = request(load(path))
    rebuilt = request(bytes(Request(msg.method, msg.uri_text, msg.headers, msg.body)))
    assert rebuilt.body == msg.body

    def without_length(m: Message) -> list[tuple[str, str]]:
        return [h for h in m.headers if h[0] != "Content-Length"]

    assert without_length(rebuilt) == without_length(msg)
    assert rebuilt.values("supported") == msg.values("supported")


# ---------------------------------------------------------------- what a B2BUA reads from each


@dataclass(frozen=True)
class Expected:
    call_id: str
    from_tag: str
    cseq: tuple[int, str]
    via: list[tuple[str, int | None, str, str | None]]  # host, port, branch, rport
    contact: list[str]
    supported: list[str] | None  # None: no Supported header at all
    record_route: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    from_display: str | None = None
    to_display: str | None = None
    contact_params: dict[str, str] = field(default_factory=dict)


EXPECTED = {
    # baresip without its uuid module: "Supported:" with nothing after it (was dropped)
    "baresip-1.0.0-INVITE.sip": Expected(
        call_id="907ac0425a7ca1d9",
        from_tag="dd45711efcecdcff",
        cseq=(33083, "INVITE"),
        via=[("127.0.5.1", 5060, "z9hG4bK239bcf6e40413f5d", "")],
        contact=["sip:alice-0x55db42866580@127.0.5.1:5060"],
        supported=[],
        route=["sip:127.0.5.2;lr;lr"],
    ),
    "baresip-1.0.0-REGISTER.sip": Expected(
        call_id="4b5b24b2f0ad7b9f",
        from_tag="cc4ab3a47be525c8",
        cseq=(50521, "REGISTER"),
        via=[("127.0.5.1", 5060, "z9hG4bK28438779e25d7bf1", "")],
        contact=["sip:alice-0x55db42866580@127.0.5.1:5060"],
        supported=None,
        route=["sip:127.0.5.2;lr;lr"],
        contact_params={"expires": "3600"},
    ),
    "baresip-1.0.0-REGISTER-outbound.sip": Expected(
        call_id="2f08d35a84d3e3ec",
        from_tag="05b21965f639dc6c",
        cseq=(40033, "REGISTER"),
        via=[("127.0.5.3", 5060, "z9hG4bK20e1594044f427d4", "")],
        contact=["sip:alice-0x55f5ea84fbf0@127.0.5.3:5060"],
        supported=["gruu", "outbound", "path"],
        route=["sip:127.0.5.2;lr;lr"],
        from_display='"Alice O\'Neil"',
        contact_params={
            "expires": "3600",
            "+sip.instance": '"<urn:uuid:79ca1c0d-c8b0-39c6-0d39-29c99f6904f2>"',
            "reg-id": "1",
        },
    ),
    "linphonec-5.1.65-INVITE.sip": Expected(
        call_id="IFe9a17kr3",
        from_tag="44lGJs8Cr",
        cseq=(20, "INVITE"),
        via=[("127.0.0.1", 5062, "z9hG4bK.pztV8Jbaz", "")],
        contact=["sip:bob@127.0.0.1:5062;transport=udp"],
        supported=["replaces", "outbound", "gruu"],
        from_display='"Bob Example"',
        contact_params={"+sip.instance": '"<urn:uuid:797def7d-a032-00f3-b21b-9e54b3d4efa5>"'},
    ),
    "linphonec-5.1.65-REGISTER-auth.sip": Expected(
        call_id="vEavUSXJRt",
        from_tag="0Sn2dEt~U",
        cseq=(21, "REGISTER"),
        via=[("127.0.0.1", 5062, "z9hG4bK.2ik-ragNF", "")],
        contact=["sip:bob@127.0.0.1:5062;transport=udp"],
        supported=["replaces", "outbound", "gruu"],
        from_display='"Bob Example"',
        to_display='"Bob Example"',
        contact_params={"+sip.instance": '"<urn:uuid:797def7d-a032-00f3-b21b-9e54b3d4efa5>"'},
    ),
    # SIPp's INVITE as Kamailio forwards it: its Record-Route (lr=on) and Via on top
    "kamailio-5.6.3-INVITE.sip": Expected(
        call_id="1-11031@127.0.5.5",
        from_tag="11031SIPpTag001",
        cseq=(1, "INVITE"),
        via=[
            ("127.0.5.4", None, "z9hG4bKfa97.9291560ee7f83bcd498e4aa41d92b1b1.0", None),
            ("127.0.5.5", 5070, "z9hG4bK-11031-1-0", None),
        ],
        contact=["sip:sipp@127.0.5.5:5070"],
        supported=None,
        record_route=["sip:127.0.5.4;lr=on;ftag=11031SIPpTag001"],
        from_display="sipp",
        to_display="+33123",
    ),
    "asterisk-18.12.1-INVITE.sip": Expected(
        call_id="a9a4f1ca-3a31-4044-b832-1483289c7963",
        from_tag="8b29e8c9-8801-44fb-b876-5622a69dcb5c",
        cseq=(23513, "INVITE"),
        via=[("198.51.100.204", 5060, "z9hG4bKPjb46638db-f05f-44fb-8644-86438687c288", "")],
        contact=["sip:asterisk@198.51.100.204:5060"],
        supported=["100rel", "timer", "replaces", "norefersub", "histinfo"],
    ),
    # a carrier's edge (Amazon Chime Voice Connector) toward a PBX
    "vineprox-2.3-INVITE.sip": Expected(
        call_id="39d6b15a-7688-4263-85ec-8409291a2b21",
        from_tag="9eXmFya9j7Hpa",
        cseq=(52215685, "INVITE"),
        via=[
            ("3.80.16.13", 5060, "z9hG4bKec37.25cad5b1953f730a93ea935c0ab48f61.0", None),
            ("10.0.58.47", None, "z9hG4bKBa834aZp7Hy1r", "5060"),
        ],
        contact=["sip:10.0.58.47:5060;alias=10.0.58.47~5060~1"],
        supported=None,
        record_route=["sip:3.80.16.13;lr;ftag=9eXmFya9j7Hpa;did=c71.2ee3;nat=yes"],
    ),
}


def test_every_expectation_has_its_file() -> None:
    assert set(EXPECTED) <= {p.name for p in FILES}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_values_a_b2bua_reads(name: str) -> None:
    want = EXPECTED[name]
    msg = request(load(FIXTURES / name))
    assert msg.call_id == want.call_id
    assert msg.from_ is not None and msg.from_.tag == want.from_tag
    assert msg.from_.display == want.from_display
    assert msg.to is not None and msg.to.tag is None and msg.to.display == want.to_display
    assert msg.cseq is not None and (msg.cseq.seq, msg.cseq.method) == want.cseq
    assert [(v.host, v.port, v.branch, v.rport) for v in msg.via] == want.via
    assert [str(c.uri) for c in msg.contact] == want.contact
    for param, value in want.contact_params.items():
        assert msg.contact[0].param(param) == value
    assert msg.has("supported") == (want.supported is not None)
    assert msg.values("supported") == (want.supported or [])
    assert [str(r.uri) for r in msg.record_route] == want.record_route
    assert [str(r.uri) for r in msg.route] == want.route
    # loose routing is read the same whether written ";lr" or ";lr=on"
    assert all(r.sip_uri.param("lr") is not None for r in (*msg.route, *msg.record_route))


def test_linphone_credentials_check_out() -> None:
    # linphonec answered our 401 (realm 127.0.5.2, nonce a1b2c3d4e5f6) with password "secret"
    msg = request(load(FIXTURES / "linphonec-5.1.65-REGISTER-auth.sip"))
    value = msg.header("authorization")
    assert value is not None and value.startswith("Digest realm=")  # two spaces after ':'
    creds = parse_credentials(value)
    assert (creds.username, creds.realm, creds.uri) == ("bob", "127.0.5.2", "sip:127.0.5.2")
    assert verify(creds, "secret", "REGISTER")
    assert not verify(creds, "secret2", "REGISTER")


def test_a_bare_supported_header_is_no_option() -> None:
    # the defect that dropped baresip's calls: "Supported:" raised "empty value in a list"
    data = load(FIXTURES / "baresip-1.0.0-INVITE.sip")
    assert b"\r\nSupported:\r\n" in data
    msg = request(data)
    assert msg.header("supported") == "" and msg.values("supported") == []
    assert not any(v.lower() == "100rel" for v in msg.values("supported"))
