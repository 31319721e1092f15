"""Media anchoring with the built-in relay and with rtpengine: real SIPp peers, real RTP.

The operator's SIPp sends the G.711 recording SIPp ships (``g711a.pcap``) after the answer; the
PBX's SIPp echoes every RTP packet back (``-rtp_echo``). Both must reach each other through
the SBC's relay ports only, and neither side's SDP may name the other's address.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sbc import Pkiss, basic_config, free_port
from servers import Rtpengine
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX = "127.0.0.2", "127.0.0.3"
RECORDING = Path("/usr/share/sip-tester/g711a.pcap")


def pcap_packets(path: Path) -> int:
    """Packets in a classic pcap file (24-byte header, then 16-byte record headers)."""
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    count, pos = 0, 24
    while pos + 16 <= len(data):
        length = struct.unpack(endian + "I", data[pos + 8 : pos + 12])[0]
        pos += 16 + length
        count += 1
    return count


def status(node: Pkiss) -> dict[str, Any]:
    url = f"http://{node.config['admin']['listen']}/api/status"
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def relayed_config(**media: Any) -> tuple[dict[str, Any], int, int, int]:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    config = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port)
    config["media"] = {"mode": "relay", "ports": "42000-42999", **media}
    return config, sbc_port, op_port, pbx_port


def sdp_of(messages: str, first_line: str) -> str:
    """The SDP body of the first message in a SIPp log that starts with ``first_line``."""
    block = messages.split(first_line, 1)[1]
    return block.split("v=0", 1)[1].split("----------", 1)[0]


def recorded_call(make: Callable[..., Sipp], sbc_port: int, op_port: int, pbx_port: int) -> str:
    """One call from the operator that plays the recording to a PBX that echoes it; checks
    that the offer the PBX got and the answer the operator got name the SBC, never the other
    side, and returns the offer's SDP."""
    pbx = make("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1,
               media_port=free_port(PBX), extra_args=["-rtp_echo"]).start()  # fmt: skip
    uac = make("uac_media", local_ip=OPERATOR, local_port=op_port, remote=("127.0.0.1", sbc_port),
               service="+33123456789", media_port=free_port(OPERATOR), calls=1,
               timeout=30).start()  # fmt: skip
    uac.check(timeout=30)
    pbx.check(timeout=5)
    offer = sdp_of(pbx.messages(), "INVITE sip:")
    answer = sdp_of(uac.messages(), "SIP/2.0 200 OK")
    assert "c=IN IP4 127.0.0.1" in offer and OPERATOR not in offer
    assert "c=IN IP4 127.0.0.1" in answer and PBX not in answer
    return offer


@pytest.mark.skipif(not RECORDING.is_file(), reason=f"{RECORDING} not found (sip-tester)")
def test_rtp_goes_both_ways_through_the_relay_and_sdp_names_only_the_sbc(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    config, sbc_port, op_port, pbx_port = relayed_config()
    sbc = sbc_factory(config)
    offer = recorded_call(sipp_factory, sbc_port, op_port, pbx_port)
    assert 42000 <= int(offer.split("m=audio ", 1)[1].split()[0]) <= 42999  # the relay's range
    sent = pcap_packets(RECORDING)
    media = status(sbc)["media"]
    # every packet there and back (the echo), allowing a few lost on the way
    assert media["packets"] >= 2 * sent * 0.95, (media, sent)
    assert media["ignored"] == 0
    assert media["calls"] == 0  # released with the call


def test_a_call_without_media_is_hung_up_after_the_media_timeout(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    config, sbc_port, op_port, pbx_port = relayed_config(timeout=2)
    sbc = sbc_factory(config)
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    uac = sipp_factory("uac_recv_bye", local_ip=OPERATOR, local_port=op_port,
                       remote=("127.0.0.1", sbc_port), service="+33123456789", calls=1,
                       timeout=15).start()  # fmt: skip
    started = time.monotonic()
    uac.check(timeout=15)  # the caller got a BYE from the SBC
    pbx.check(timeout=5)  # and so did the PBX
    assert time.monotonic() - started >= 2
    assert "no media for 2 s, hanging up" in sbc.log()


@pytest.fixture
def rtpengine() -> Iterator[Rtpengine]:
    if shutil.which("rtpengine") is None:
        pytest.skip("rtpengine is not on PATH (package rtpengine-daemon)")
    server = Rtpengine().start()
    yield server
    server.stop()


def rtp_packets_by_tag(log: str) -> dict[str, int]:
    """RTP packets rtpengine received per side, from its final statistics of the call."""
    counts: dict[str, int] = {}
    tag = ""
    for line in log.splitlines():
        if "--- Tag '" in line:
            tag = line.split("--- Tag '", 1)[1].split("'", 1)[0]
        elif "--------- Port" in line and "(RTCP)" not in line:
            found = re.search(r", (\d+) p,", line)
            if found:
                counts[tag] = counts.get(tag, 0) + int(found.group(1))
    return counts


@pytest.mark.skipif(not RECORDING.is_file(), reason=f"{RECORDING} not found (sip-tester)")
def test_rtp_goes_through_rtpengine_when_it_is_the_engine(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], rtpengine: Rtpengine
) -> None:
    config, sbc_port, op_port, pbx_port = relayed_config(
        engine="rtpengine", rtpengine=f"udp:127.0.0.1:{rtpengine.ng_port}"
    )
    sbc = sbc_factory(config)
    offer = recorded_call(sipp_factory, sbc_port, op_port, pbx_port)
    port = int(offer.split("m=audio ", 1)[1].split()[0])
    assert 46000 <= port <= 46999  # one of rtpengine's ports, not the built-in relay's
    assert "media through rtpengine" in sbc.log()
    deadline = time.monotonic() + 5
    while "Final packet stats" not in rtpengine.log():  # the SBC deleted the call
        assert time.monotonic() < deadline, rtpengine.log()[-2000:]
        time.sleep(0.1)
    counts = rtp_packets_by_tag(rtpengine.log())
    sent = pcap_packets(RECORDING)
    assert counts.get("a", 0) >= sent * 0.95 and counts.get("b", 0) >= sent * 0.95, counts


def test_calls_needing_a_silent_rtpengine_are_refused_at_once(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    config, sbc_port, op_port, _ = relayed_config(
        engine="rtpengine",
        rtpengine=f"udp:127.0.0.1:{free_port()}",  # nothing listens there
    )
    sbc = sbc_factory(config)
    uac = sipp_factory("uac_503", local_ip=OPERATOR, local_port=op_port,
                       remote=("127.0.0.1", sbc_port), service="+33123456789",
                       calls=1).start()  # fmt: skip
    uac.check(timeout=10)
    assert "rtpengine at 127.0.0.1:" in sbc.log() and "does not answer" in sbc.log()


def _free_v6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not RECORDING.is_file(), reason=f"{RECORDING} not found (sip-tester)")
def test_media_comes_in_over_ipv6_and_leaves_over_ipv4(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    config, _, _, pbx_port = relayed_config()
    op_port, sbc_v6 = _free_v6_port(), _free_v6_port()
    config["sbc"]["listen"].append(f"udp:[::1]:{sbc_v6}")
    config["peers"]["operator"]["hosts"] = [f"[::1]:{op_port}"]
    config["peers"]["operator"]["match"] = {"source": [f"[::1]:{op_port}"]}
    sbc = sbc_factory(config)
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1,
                       media_port=free_port(PBX), extra_args=["-rtp_echo"]).start()  # fmt: skip
    uac = sipp_factory("uac_media", local_ip="::1", local_port=op_port, remote=f"[::1]:{sbc_v6}",
                       service="+33123456789", media_port=_free_v6_port(), calls=1,
                       timeout=30).start()  # fmt: skip
    uac.check(timeout=30)
    pbx.check(timeout=5)
    offer = sdp_of(pbx.messages(), "INVITE sip:")
    answer = sdp_of(uac.messages(), "SIP/2.0 200 OK")
    assert "c=IN IP4 127.0.0.1" in offer and "::1" not in offer
    assert "c=IN IP6 ::1" in answer and PBX not in answer
    media = status(sbc)["media"]
    assert media["packets"] >= 2 * pcap_packets(RECORDING) * 0.95, media


def test_sip_i_multipart_keeps_its_isup_and_gets_its_sdp_anchored(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    config, sbc_port, op_port, pbx_port = relayed_config()
    sbc_factory(config)
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    sipp_factory("uac_sipi", local_ip=OPERATOR, local_port=op_port,
                 remote=("127.0.0.1", sbc_port), service="+33123456789",
                 calls=1).start().check()  # fmt: skip
    pbx.check()
    invite = pbx.messages().split("INVITE sip:", 1)[1].split("----------", 1)[0]
    head, body = invite.split("\n\n", 1)
    assert "Content-Type: multipart/mixed;boundary=unique-boundary-1" in head
    assert OPERATOR not in invite
    sdp_part, isup_part = body.split("--unique-boundary-1")[1:3]
    assert "c=IN IP4 127.0.0.1" in sdp_part and "m=audio 42" in sdp_part
    assert "Content-Type: application/ISUP;version=itu-t92+" in isup_part
    assert "IAM-0123456789-called-+33123456789" in isup_part  # byte for byte


def test_an_exhausted_port_range_refuses_new_calls_and_keeps_those_in_progress(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    """Two port pairs per call (one toward each side): a range of 8 ports holds 2 calls. A
    third gets 503 at once; the two in progress go on and end normally; their ports serve the
    next call."""
    config, sbc_port, op_port, pbx_port = relayed_config()
    config["media"]["ports"] = "45100-45107"  # no other test binds these
    sbc = sbc_factory(config)
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=None,
                       timeout=30).start()  # fmt: skip
    held = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                        remote=("127.0.0.1", sbc_port), service="+33123456789", calls=2,
                        rate=10, pause_ms=4000, timeout=20).start()  # fmt: skip
    time.sleep(1.5)
    third = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=free_port(OPERATOR),
                         remote=("127.0.0.1", sbc_port), service="+33123456789", calls=1,
                         timeout=10).start()  # fmt: skip
    third.wait(timeout=15)
    assert "SIP/2.0 503" in third.messages()
    assert held.check(timeout=20)["SuccessfulCall(C)"] == 2
    time.sleep(0.5)
    again = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=free_port(OPERATOR),
                         remote=("127.0.0.1", sbc_port), service="+33123456789", calls=1,
                         timeout=10).start()  # fmt: skip
    assert again.check(timeout=15)["SuccessfulCall(C)"] == 1
    pbx.stop()
    assert status(sbc)["media"]["calls"] == 0
