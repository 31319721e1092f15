"""Session descriptions from real senders (tests/sdp/fixtures, see SOURCES.md), rewritten toward
the relay: nothing of the sender is left (addresses, user names, software, RTCP names, stream
ids), and what media needs between the endpoints (codecs, keys, direction, BUNDLE) still is."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from pkiss.sdp import Session, parse_sdp

FIXTURES = Path(__file__).parent / "fixtures"
OFFERS = sorted(FIXTURES.glob("*.sdp"))
RELAY4, RELAY6 = "203.0.113.5", "2001:db8::5"

_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
# what crosses unchanged, by attribute name (or line type for session-level t= and b=)
_KEPT = {"rtpmap", "fmtp", "rtcp-fb", "crypto", "fingerprint", "setup", "mid", "group",
         "sendrecv", "sendonly", "recvonly", "inactive", "extmap", "rtcp-mux", "rtcp-rsize",
         "ptime", "maxptime", "minptime", "label", "framerate", "content", "rtcp-xr"}  # fmt: skip


def revealing(text: str) -> set[str]:
    """What an SDP tells of its sender: every address in it, the origin's user name, the
    session name, the tool, the values of a=ssrc (cname, msid, mslabel, label), a=msid and
    a=msid-semantic, and the i= u= e= p= texts."""
    found: set[str] = set(_IPV4.findall(text))
    for line in text.splitlines():
        key, _, value = line.partition("=")
        for token in value.replace("@", " ").split():
            try:
                if ipaddress.ip_address(token.split("/")[0]).version == 6:
                    found.add(token.split("/")[0])
            except ValueError:
                pass
        name, _, rest = value.partition(":")
        if key == "o" and value.split()[0] != "-":
            found.add(value.split()[0])
        elif (key == "s" and value.strip() != "-") or key in ("i", "u", "e", "p"):
            found.add(value)
        elif key == "a" and name == "tool":
            found.add(rest)
        elif key == "a" and name == "ssrc":
            attribute = rest.split(" ", 1)[1] if " " in rest else ""
            found.update(attribute.partition(":")[2].split())
        elif key == "a" and name in ("msid", "msid-semantic"):
            found.update(t for t in rest.split() if t != "WMS")
    return found - {RELAY4, RELAY6, ""}


def kept(lines: list[tuple[str, str]]) -> list[str]:
    return [f"{k}={v}" for k, v in lines
            if k in ("t", "b") or (k == "a" and v.split(":", 1)[0] in _KEPT)]  # fmt: skip


def rewritten(path: Path, relay: str = RELAY4) -> tuple[Session, Session, str]:
    original = parse_sdp(path.read_bytes())
    ports: list[int | None] = [None if m.port == 0 else 30000 + 2 * i
                               for i, m in enumerate(original.media)]  # fmt: skip
    out = original.rewrite(relay, ports)
    return original, out, bytes(out).decode()


def test_every_fixture_is_listed_in_its_sources() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    assert len(OFFERS) >= 10
    for path in OFFERS:
        assert f"`{path.name}`" in sources


@pytest.mark.parametrize("path", OFFERS, ids=[p.name for p in OFFERS])
@pytest.mark.parametrize("relay", [RELAY4, RELAY6])
def test_nothing_of_the_sender_is_left(path: Path, relay: str) -> None:
    text = path.read_bytes().decode()
    secrets = revealing(text)
    assert secrets  # every sender here tells something: an address at least
    _, _, out = rewritten(path, relay)
    for secret in secrets:
        assert secret not in out, f"{secret!r} from {path.name} crossed"
    for word in ("candidate", "ice-", "a=tool", "a=ssrc", "a=msid", "\r\ni=", "\r\nu=",
                 "\r\ne=", "\r\np="):  # fmt: skip
        assert word not in out
    addresses = [line.split()[-1] for line in out.splitlines()
                 if line.startswith(("c=", "o=", "a=rtcp:"))]  # fmt: skip
    assert addresses and set(addresses) == {relay}


@pytest.mark.parametrize("path", OFFERS, ids=[p.name for p in OFFERS])
def test_what_media_needs_crosses_unchanged(path: Path) -> None:
    original, out, _ = rewritten(path)
    assert kept(out.lines) == kept(original.lines)
    assert len(out.media) == len(original.media)
    for before, after in zip(original.media, out.media, strict=True):
        assert (after.kind, after.proto, after.formats) == (before.kind, before.proto,
                                                             before.formats)  # fmt: skip
        assert kept(after.lines) == kept(before.lines)
        assert (after.port == 0) == (before.port == 0)
        if after.port:
            # RTCP at the relay's next port, or on its RTP port where the sender muxes it
            # there (RFC 5761 §5.1.3: WebRTC's a=rtcp:9 with m= port 9 and a=rtcp-mux)
            sent = before.rtcp()
            on_rtp = before.muxed and sent is not None and sent[0] == before.port
            port = after.port if on_rtp else after.port + 1
            rtcp = [v for k, v in after.lines if k == "a" and v.startswith("rtcp:")]
            assert all(v == f"rtcp:{port} IN IP4 {RELAY4}" for v in rtcp)


@pytest.mark.parametrize("path", OFFERS, ids=[p.name for p in OFFERS])
def test_a_rewritten_offer_rewritten_again_is_the_same(path: Path) -> None:
    _, out, text = rewritten(path)
    ports: list[int | None] = [m.port or None for m in out.media]
    assert bytes(parse_sdp(text.encode()).rewrite(RELAY4, ports)).decode() == text


def test_srtp_keys_and_dtls_fingerprint_reach_the_other_endpoint() -> None:
    _, _, sdes = rewritten(FIXTURES / "baresip-1.0.0-srtp.sdp")
    key = "inline:IfbTJEtnWPSxlAHTjH+zvh1LcNo3oM4rPmB3Dfa/"
    assert f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\r\n" in sdes
    assert "m=audio 30000 RTP/SAVP 0 8 96 9 101\r\n" in sdes
    _, _, dtls = rewritten(FIXTURES / "baresip-1.0.0-dtls-srtp.sdp")
    assert "a=setup:actpass\r\na=fingerprint:SHA-256 DF:AD:39:78:79:AA:3E:D2:" in dtls


def test_baresip_offer_as_the_other_side_gets_it() -> None:
    _, _, out = rewritten(FIXTURES / "baresip-1.0.0.sdp")
    assert out.startswith(
        "v=0\r\no=- 3828433865 278973444 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\n"
        "t=0 0\r\nm=audio 30000 RTP/AVP 0 8 96 9 101\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    assert "a=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\na=minptime:20\r\na=ptime:20\r\n" in out


def test_webrtc_bundle_keeps_its_mids_and_drops_stream_identities() -> None:
    _, out, text = rewritten(FIXTURES / "chrome-webrtc.sdp")
    assert ("a", "group:BUNDLE audio video") in out.lines
    assert [v for m in out.media for k, v in m.lines if v.startswith("mid:")] == [
        "mid:audio", "mid:video"]  # fmt: skip
    assert "87eXz3QiQBBvJFID" not in text  # the browser's RTCP CNAME
    assert "ssrc-group" not in text and "mslabel" not in text


def test_rtpengine_output_is_scrubbed_but_keeps_its_addresses() -> None:
    """rtpengine already points the SDP at itself; what it passes through of the sender
    (baresip's tool and CNAME) is dropped, its own addresses and ports stay."""
    body = (FIXTURES / "rtpengine-10.5.3.5.sdp").read_bytes()
    out = bytes(parse_sdp(body).scrubbed()).decode()
    assert "baresip" not in out and "+33987650001" not in out and "127.0.6.1" not in out
    assert "m=audio 40000 RTP/AVP 0 8 96 9 101\r\nc=IN IP4 127.0.0.1\r\n" in out
    assert "a=rtcp:40001\r\n" in out and "o=- 91777744 205192489 IN IP4 127.0.0.1\r\n" in out
    assert len(out.splitlines()) == len(body.splitlines()) - 2  # a=tool and a=ssrc


def test_a_disabled_stream_keeps_no_address() -> None:
    body = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\n"
            b"a=rtcp:4003 IN IP4 192.0.2.7\r\na=rtpmap:96 H264/90000\r\n")  # fmt: skip
    out = bytes(parse_sdp(body).rewrite(RELAY4, [30000, None])).decode()
    assert "192.0.2.7" not in out
    assert out.endswith("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")


@pytest.mark.parametrize(
    "line",
    [
        "a=Tool:Softphone 4.2",  # attribute names compared in any case
        "a=altc:1 IP6 2001:db8::7 4000",  # RFC 6947 alternative address
        "a=path:msrp://192.0.2.7:2855/kjhd37s2s20w2a;tcp",  # MSRP
        "a=identity:eyJpZHAiOnsiZG9tYWluIjoiZXhhbXBsZS5vcmcifX0=",  # RFC 8827 assertion
        "y=0100000001",  # not an RFC 8866 type (GB28181's SSRC)
        "k=clear:secret",  # obsolete
        "i=Alice's camera",  # media title
    ],
)
def test_media_level_lines_that_tell_are_dropped(line: str) -> None:
    body = (f"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            f"c=IN IP4 192.0.2.7\r\n{line}\r\na=sendrecv\r\n").encode()  # fmt: skip
    session = parse_sdp(body)
    for out in (session.rewrite(RELAY4, [30000]), session.scrubbed()):
        lines = out.media[0].lines
        assert (line[0], line[2:]) not in lines
        assert ("a", "sendrecv") in lines
