"""A peer's codec policy applied to an offer (sdp/codecs.py)."""

from __future__ import annotations

import pytest

from pkiss.sdp import SdpError, keep_codecs, parse_sdp

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
    b"m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\n"
)


def test_only_the_named_codecs_in_the_policys_order() -> None:
    text = bytes(keep_codecs(parse_sdp(OFFER), ["PCMA", "pcmu", "telephone-event"])).decode()
    assert "m=audio 4000 RTP/AVP 8 0 101\r\n" in text
    assert "a=rtpmap:9" not in text and "G722" not in text
    assert "a=fmtp:101 0-16" in text and "a=ptime:20" in text
    # the video stream has no codec left: disabled (port 0), its per-format lines gone
    assert "m=video 0 RTP/AVP 96\r\n" in text and "VP8" not in text and "nack" not in text


def test_static_payload_types_without_rtpmap_are_known_by_number() -> None:
    offer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    offer += b"m=audio 4000 RTP/AVP 18 8 0\r\n"
    text = bytes(keep_codecs(parse_sdp(offer), ["G729"])).decode()
    assert "m=audio 4000 RTP/AVP 18\r\n" in text


def test_an_offer_with_no_allowed_audio_codec_is_refused() -> None:
    with pytest.raises(SdpError, match="no codec of G729"):
        keep_codecs(parse_sdp(OFFER), ["G729", "telephone-event"])  # DTMF alone is no codec
