"""multipart bodies as SIP-I carriers send them: SDP and ISUP side by side (RFC 3204)."""

from __future__ import annotations

import pytest

from pkiss.sip.errors import ParseError
from pkiss.sip.multipart import Part, boundary_of, join_parts, split_parts

ISUP = bytes(range(0, 40))  # binary, CRLFs included
SIP_I = (
    b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8\r\n"
    b"\r\n--unique-boundary-1\r\nContent-Type: application/ISUP;version=itu-t92+\r\n"
    b"Content-Disposition: signal;handling=optional\r\n\r\n" + ISUP + b"\r\n"
    b"--unique-boundary-1--\r\n"
)


def test_boundary_from_the_content_type() -> None:
    assert boundary_of("multipart/mixed;boundary=unique-boundary-1") == "unique-boundary-1"
    assert boundary_of('Multipart/Mixed; boundary="a b"') == "a b"
    assert boundary_of("application/sdp") is None
    with pytest.raises(ParseError):
        boundary_of("multipart/mixed")


def test_parts_keep_their_headers_and_bytes_and_join_back() -> None:
    parts = split_parts(SIP_I, "unique-boundary-1")
    assert [p.content_type() for p in parts] == ["application/sdp", "application/isup"]
    assert parts[1].body == ISUP
    assert parts[0].body.endswith(b"m=audio 4000 RTP/AVP 8\r\n")
    assert join_parts(parts, "unique-boundary-1") == SIP_I


def test_a_part_replaced_leaves_the_others_alone() -> None:
    parts = split_parts(SIP_I, "unique-boundary-1")
    parts[0] = Part(parts[0].headers, b"v=0\r\n")
    again = split_parts(join_parts(parts, "unique-boundary-1"), "unique-boundary-1")
    assert again[0].body == b"v=0\r\n" and again[1].body == ISUP


@pytest.mark.parametrize(
    "body",
    [b"", b"no delimiters at all", b"--b\r\nContent-Type: a/b\r\n\r\nx\r\n",
     b"--bX\r\n\r\nx\r\n--b--\r\n", b"--b\r\nbad header\r\n\r\nx\r\n--b--\r\n"],
)  # fmt: skip
def test_broken_multipart_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        split_parts(body, "b")
