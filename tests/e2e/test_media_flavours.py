"""Media flavours the relay must carry, end to end with real peers through a running node:

- RTCP multiplexed on the RTP port (``a=rtcp-mux``, RFC 5761), baresip phones, through the
  built-in relay and through rtpengine;
- DTLS-SRTP (``UDP/TLS/RTP/SAVPF``, ``a=fingerprint``, ``a=setup``; RFC 5763/5764), baresip's
  ``dtls_srtp`` module: untouched through the built-in relay (each phone checks the other's
  certificate), keyed anew on each side by rtpengine;
- RFC 4733 DTMF (``telephone-event``): digits one phone sends in its RTP, reported by the other;
- T.38 fax: a re-INVITE to ``m=image <port> udptl t38`` between SIPp peers, answered, and UDPTL
  packets from the test's sockets crossing the node's ports both ways, with either engine.

Each peer has its own loopback address (127.0.8.x); everything is stopped by PID.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import time
from collections.abc import Callable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest
from network import CALLED, CALLER, wait_for
from sbc import Pkiss, basic_config, free_port
from servers import Rtpengine
from sipp import Sipp, sipp_available
from test_topology import assert_hidden, sdp_of, sipp_messages
from thirdparty import Baresip, tone_seconds

pytestmark = [pytest.mark.e2e]

CARRIER, PBX = "127.0.8.2", "127.0.8.3"
CALLER_TONE, CALLEE_TONE = 440, 1000
HOLD = 3.0  # seconds of audio each way, at least
RELAY_PORTS = (44000, 44999)
RTPENGINE_PORTS = (46000, 46999)


@pytest.fixture
def rtpengine() -> Iterator[Rtpengine]:
    if shutil.which("rtpengine") is None:
        pytest.skip("rtpengine is not on PATH (package rtpengine-daemon)")
    server = Rtpengine(RTPENGINE_PORTS).start()
    yield server
    server.stop()


def media_config(engine: str, daemon: Rtpengine | None) -> dict[str, Any]:
    if engine == "rtpengine":
        assert daemon is not None
        return {"mode": "relay", "engine": "rtpengine",
                "rtpengine": f"udp:127.0.0.1:{daemon.ng_port}"}  # fmt: skip
    # baresip sends RTP from 127.0.0.1, not the address its SDP names: first-packet learns it
    return {"mode": "relay", "ports": f"{RELAY_PORTS[0]}-{RELAY_PORTS[1]}",
            "learn": "first-packet"}  # fmt: skip


def in_range(port: int, engine: str) -> bool:
    low, high = RTPENGINE_PORTS if engine == "rtpengine" else RELAY_PORTS
    return low <= port <= high


# -------------------------------------------------------------------- baresip phones


class Phones:
    """A baresip caller (the carrier's side) and callee (the PBX's) through one node."""

    def __init__(self, tmp_path: Path, make_sbc: Callable[..., Pkiss], engine: str,
                 daemon: Rtpengine | None = None, **flavour: bool) -> None:  # fmt: skip
        self.engine = engine
        self.caller = Baresip(tmp_path / "caller", CARRIER, user=CALLER, tone=CALLER_TONE,
                              **flavour)  # fmt: skip
        self.callee = Baresip(tmp_path / "callee", PBX, user=CALLED, tone=CALLEE_TONE,
                              **flavour)  # fmt: skip
        self.caller.start()
        self.callee.start()
        self.sbc_port = free_port()
        config = basic_config(self.sbc_port, carrier=CARRIER, carrier_port=self.caller.port,
                              pbx=PBX, pbx_port=self.callee.port)  # fmt: skip
        config["peers"]["pbx"]["dids"] = [CALLED]
        config["media"] = media_config(engine, daemon)
        self.sbc = make_sbc(config)

    def stop(self) -> None:
        self.caller.stop()
        self.callee.stop()

    def call(self) -> None:
        self.caller.dial(f"sip:{CALLED}@127.0.0.1:{self.sbc_port}")
        self.caller.wait_event("CALL_ESTABLISHED", timeout=10)
        self.callee.wait_event("CALL_ESTABLISHED", timeout=10)

    def hang_up(self) -> None:
        """The caller hangs up; both see the call closed, each heard the other's tone (and
        not its own), and the node holds no call."""
        self.caller.hangup()
        for phone in (self.caller, self.callee):
            phone.wait_event("CALL_CLOSED", timeout=10)
        heard_by_callee = self.callee.received_audio()
        heard_by_caller = self.caller.received_audio()
        assert tone_seconds(heard_by_callee, CALLER_TONE) >= HOLD / 2, heard_by_callee
        assert tone_seconds(heard_by_caller, CALLEE_TONE) >= HOLD / 2, heard_by_caller
        assert tone_seconds(heard_by_callee, CALLEE_TONE) == 0
        assert tone_seconds(heard_by_caller, CALLER_TONE) == 0
        assert wait_for(lambda: self.sbc.cli_json("status")["calls_in_progress"] == 0, 5)

    def sdp(self, phone: Baresip, direction: str) -> list[list[str]]:
        """The SDP bodies the phone sent or received, line by line."""
        return [lines for d, message in phone.sip_messages() if d == direction
                for lines in [sdp_of(message)] if lines]  # fmt: skip

    def media(self) -> dict[str, Any]:
        return dict(self.sbc.cli_json("status")["media"])


@pytest.fixture
def phones(tmp_path: Path, sbc_factory: Callable[..., Pkiss]) -> Iterator[Callable[..., Phones]]:
    made: list[Phones] = []

    def make(engine: str = "builtin", daemon: Rtpengine | None = None,
             **flavour: bool) -> Phones:  # fmt: skip
        pair = Phones(tmp_path, sbc_factory, engine, daemon, **flavour)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.stop()


def _lines(bodies: list[list[str]], prefix: str) -> list[str]:
    return [line for body in bodies for line in body if line.startswith(prefix)]


def _assert_muxed_sdp(pair: Phones) -> None:
    """Each phone got a=rtcp-mux, pointed at the node: the callee in the offer, where an
    a=rtcp may name the node's RTCP port as the fallback should it not mux (RFC 5761
    §5.1.3), the caller in the answer, where any a=rtcp names the node's RTP port."""
    for phone, fallback in ((pair.callee, 1), (pair.caller, 0)):
        for body in pair.sdp(phone, "received"):
            assert "a=rtcp-mux" in body, body
            port = int(_lines([body], "m=audio ")[0].split()[1])
            assert in_range(port, pair.engine), body
            for line in _lines([body], "a=rtcp:"):
                assert int(line[7:].split()[0]) in (port, port + fallback), body


# ----------------------------------------------------------------------------- rtcp-mux


def test_rtcp_mux_rides_the_rtp_ports_through_the_builtin_relay(
    phones: Callable[..., Phones],
) -> None:
    pair = phones(rtcp_mux=True)
    pair.call()
    for phone in (pair.caller, pair.callee):  # each got the other's RTCP (reports)
        phone.wait_event("CALL_RTCP", timeout=12)
    time.sleep(max(0.0, HOLD - 1))
    _assert_muxed_sdp(pair)
    # RTCP crossed on the RTP ports, both ways; a phone's very first report may still go to
    # the RTCP port (sent before the answer told it the other side muxes): the relay carries
    # it to the other phone's RTP port all the same
    assert wait_for(lambda: pair.media()["rtcp_muxed"] >= 2, 10), pair.media()
    media = pair.media()
    assert media["rtcp"] - media["rtcp_muxed"] <= 1, media
    assert media["ignored"] == 0, media
    pair.hang_up()


def test_rtcp_mux_goes_through_rtpengine(
    phones: Callable[..., Phones], rtpengine: Rtpengine
) -> None:
    """rtpengine's default follows the phones: it offers rtcp-mux when the caller does and
    accepts it back when the callee does (no flag is needed, none is sent)."""
    pair = phones("rtpengine", rtpengine, rtcp_mux=True)
    pair.call()
    for phone in (pair.caller, pair.callee):
        phone.wait_event("CALL_RTCP", timeout=12)
    time.sleep(max(0.0, HOLD - 1))
    _assert_muxed_sdp(pair)
    pair.hang_up()


# --------------------------------------------------------------------------- DTLS-SRTP


def _fingerprints(bodies: list[list[str]]) -> set[str]:
    return {line.split(":", 1)[1].upper() for line in _lines(bodies, "a=fingerprint:")}


def _dtls_sdp(pair: Phones) -> dict[str, set[str]]:
    """Each phone received UDP/TLS/RTP/SAVP(F) with a=setup; the fingerprints each phone sent
    and received."""
    out: dict[str, set[str]] = {}
    for name, phone in (("caller", pair.caller), ("callee", pair.callee)):
        received = pair.sdp(phone, "received")
        assert received
        for body in received:
            assert " UDP/TLS/RTP/SAVP" in _lines([body], "m=audio ")[0], body
            assert _lines([body], "a=setup:"), body
        out[f"{name} sent"] = _fingerprints(pair.sdp(phone, "sent"))
        out[f"{name} received"] = _fingerprints(received)
        assert out[f"{name} sent"] and out[f"{name} received"], out
    return out


def test_dtls_srtp_passes_end_to_end_through_the_builtin_relay(
    phones: Callable[..., Phones],
) -> None:
    """The relay carries the handshake like RTP: each phone checks the certificate of the
    other phone, whose fingerprint reached it untouched, and decrypts the other's tone."""
    pair = phones(dtls_srtp=True)
    pair.call()
    for phone in (pair.caller, pair.callee):
        secured = [phone.wait_event("CALL_MENC", timeout=10)]
        assert "audio" in str(secured[0].get("param")), secured
    time.sleep(HOLD)
    prints = _dtls_sdp(pair)
    assert prints["callee received"] == prints["caller sent"], prints
    assert prints["caller received"] == prints["callee sent"], prints
    # the offerer's actpass and the answerer's active crossed as they were
    assert _lines(pair.sdp(pair.callee, "received"), "a=setup:") == ["a=setup:actpass"]
    assert _lines(pair.sdp(pair.caller, "received"), "a=setup:") == ["a=setup:active"]
    for phone in (pair.caller, pair.callee):
        assert re.search(r"dtls_srtp: verified \S+ fingerprint OK", phone.log()), phone.log()
        assert "DTLS-SRTP complete (audio/RTP)" in phone.log()
    assert pair.media()["ignored"] == 0
    pair.hang_up()


def test_dtls_srtp_through_rtpengine_is_keyed_on_each_side(
    phones: Callable[..., Phones], rtpengine: Rtpengine
) -> None:
    """rtpengine terminates DTLS-SRTP by default: each phone's handshake is with rtpengine
    (its fingerprint, not the other phone's), which decrypts and encrypts again. The call
    works, the audio is encrypted on both legs, and is not end to end."""
    pair = phones("rtpengine", rtpengine, dtls_srtp=True)
    pair.call()
    for phone in (pair.caller, pair.callee):
        phone.wait_event("CALL_MENC", timeout=10)
    time.sleep(HOLD)
    prints = _dtls_sdp(pair)
    assert not prints["callee received"] & prints["caller sent"], prints
    assert not prints["caller received"] & prints["callee sent"], prints
    for phone in (pair.caller, pair.callee):
        assert "DTLS-SRTP complete (audio/RTP)" in phone.log()
    pair.hang_up()


# ------------------------------------------------------------------------- RFC 4733 DTMF


@pytest.mark.parametrize("engine", ["builtin", "rtpengine"])
def test_rfc4733_dtmf_crosses_the_relay_both_ways(
    request: pytest.FixtureRequest, phones: Callable[..., Phones], engine: str
) -> None:
    daemon = request.getfixturevalue("rtpengine") if engine == "rtpengine" else None
    pair = phones(engine, daemon)
    pair.call()
    for phone in (pair.caller, pair.callee):  # telephone-event was negotiated
        for body in pair.sdp(phone, "received"):
            assert any("telephone-event/8000" in line for line in body), body
    time.sleep(1.0)  # RTP flowing (and learned) before the first digit
    pair.caller.send_dtmf("159#*0")
    assert wait_for(lambda: pair.callee.dtmf_received() == "159#*0", 10), (
        pair.callee.dtmf_received(), pair.callee.log()[-3000:])  # fmt: skip
    pair.callee.send_dtmf("42")
    assert wait_for(lambda: pair.caller.dtmf_received() == "42", 10), (
        pair.caller.dtmf_received(), pair.caller.log()[-3000:])  # fmt: skip
    # the digits came in the RTP stream as telephone events (baresip logs each event it
    # decodes, start and end), not as SIP INFO
    for phone, digits in ((pair.callee, "159#*0"), (pair.caller, "42")):

        def ended(phone: Baresip = phone, digits: str = digits) -> bool:
            events = re.findall(r"received event: '(.)' \(end=1\)", phone.log())
            # (an event's end may come in up to three packets, RFC 4733 §2.5.1.4)
            return "".join(k for k, _ in groupby(events)) == digits

        assert wait_for(ended, 5), phone.log()[-3000:]
        assert not [m for d, m in phone.sip_messages() if d == "received"
                    and m.startswith("INFO ")]  # fmt: skip
    time.sleep(max(0.0, HOLD - 1))
    pair.hang_up()


# --------------------------------------------------------------------------------- T.38

T38_ATTRIBUTES = ["a=T38FaxVersion:0", "a=T38MaxBitRate:14400",
                  "a=T38FaxRateManagement:transferredTCF", "a=T38FaxMaxBuffer:262",
                  "a=T38FaxMaxDatagram:176", "a=T38FaxUdpEC:t38UDPRedundancy"]  # fmt: skip
FAX_SECONDS = 4


def udptl(seq: int, ifp: bytes) -> bytes:
    """A UDPTL packet (ITU-T T.38 §9.1): sequence number, the primary IFP packet with its
    length, and redundancy error recovery with no secondary packet."""
    return struct.pack("!HB", seq, len(ifp)) + ifp + b"\x00\x00"


def _image_port(bodies: list[list[str]]) -> int:
    for body in bodies:
        for line in body:
            if line.startswith("m=image "):
                return int(line.split()[1])
    raise AssertionError(f"no m=image in {bodies}")


@pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)")
@pytest.mark.parametrize("engine", ["builtin", "rtpengine"])
def test_t38_reinvite_is_relayed_and_udptl_crosses_both_ways(
    request: pytest.FixtureRequest, sipp_factory: Callable[..., Sipp],
    sbc_factory: Callable[..., Pkiss], engine: str,
) -> None:  # fmt: skip
    """The carrier's gateway switches an answered call to T.38 (re-INVITE, m=image udptl
    t38); the PBX accepts. Each side's SDP names the node's port and keeps every T.38
    parameter; fax packets each side sends to the node's port reach the other side, in
    order and unchanged."""
    daemon = request.getfixturevalue("rtpengine") if engine == "rtpengine" else None
    carrier_fax = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx_fax = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        carrier_fax.bind((CARRIER, 0))
        pbx_fax.bind((PBX, 0))
        sbc_port, carrier_port, pbx_port = free_port(), free_port(CARRIER), free_port(PBX)
        config = basic_config(sbc_port, carrier=CARRIER, carrier_port=carrier_port, pbx=PBX,
                              pbx_port=pbx_port)  # fmt: skip
        config["media"] = {**media_config(engine, daemon), "learn": "signalled"}
        if engine == "rtpengine":
            del config["media"]["learn"]
        sbc = sbc_factory(config)
        pbx = sipp_factory("t38_uas", local_ip=PBX, local_port=pbx_port, calls=1,
                           keys={"fax_port": str(pbx_fax.getsockname()[1])},
                           timeout=30).start()  # fmt: skip
        carrier = sipp_factory(
            "t38_uac", local_ip=CARRIER, local_port=carrier_port, remote=("127.0.0.1", sbc_port),
            service=CALLED, caller=CALLER, calls=1, pause_ms=FAX_SECONDS * 1000, timeout=30,
            keys={"fax_port": str(carrier_fax.getsockname()[1])},
        ).start()  # fmt: skip

        def switched() -> bool:  # the carrier has the PBX's T.38 answer, through the node
            return any(line.startswith("m=image ") for _, m in sipp_messages(carrier.messages())
                       for line in sdp_of(m))  # fmt: skip

        assert wait_for(switched, 10), carrier.messages()[-3000:]
        at_pbx = [sdp_of(m) for d, m in sipp_messages(pbx.messages()) if d == "received"]
        at_carrier = [sdp_of(m) for d, m in sipp_messages(carrier.messages())
                      if d == "received"]  # fmt: skip
        port_for_carrier = _image_port([b for b in at_carrier if b])
        port_for_pbx = _image_port([b for b in at_pbx if b])
        for bodies, port in ((at_pbx, port_for_pbx), (at_carrier, port_for_carrier)):
            image = next(b for b in bodies if any(x.startswith("m=image ") for x in b))
            assert in_range(port, engine), image
            assert f"m=image {port} udptl t38" in image and "c=IN IP4 127.0.0.1" in image
            assert [x for x in image if x.startswith("a=T38")] == T38_ATTRIBUTES, image
        # the fax: pages one way, confirmations the other
        pages = [udptl(n, b"\x80" + bytes([n % 256]) * 40) for n in range(50)]
        confirmations = [udptl(n, b"\x40" + bytes([n % 256]) * 8) for n in range(20)]
        heard: dict[str, list[bytes]] = {"pbx": [], "carrier": []}
        for packet in pages:
            carrier_fax.sendto(packet, ("127.0.0.1", port_for_carrier))
            time.sleep(0.01)
        for packet in confirmations:
            pbx_fax.sendto(packet, ("127.0.0.1", port_for_pbx))
            time.sleep(0.01)
        for name, sock, want in (("pbx", pbx_fax, len(pages)),
                                 ("carrier", carrier_fax, len(confirmations))):  # fmt: skip
            sock.settimeout(1.0)
            while len(heard[name]) < want:
                try:
                    data, source = sock.recvfrom(2048)
                except TimeoutError:
                    break
                assert source[0] == "127.0.0.1"  # from the node, never from the other side
                heard[name].append(data)
        assert heard["pbx"] == pages
        assert heard["carrier"] == confirmations
        carrier.check(timeout=30)
        pbx.check(timeout=10)
        # nothing of one side in the other's SDP, T.38 re-INVITE included
        on_pbx, on_carrier = sipp_messages(pbx.messages()), sipp_messages(carrier.messages())
        assert_hidden(on_pbx, on_carrier, [CARRIER], [CALLER])
        assert_hidden(on_carrier, on_pbx, [PBX])
        assert wait_for(lambda: sbc.cli_json("status")["calls_in_progress"] == 0, 5)
    finally:
        carrier_fax.close()
        pbx_fax.close()
