"""Interoperability with real third-party SIP software through a running pkiss node: baresip
phones on both sides with real audio, a Kamailio edge proxy in front of the carrier or in
front of the PBX (the route set a record-routing edge imposes on every later request of the
dialog, both ways), and linphonec registering as a PBX.

Each peer has its own loopback address (127.0.6.x); the harness classes are in thirdparty.py.
A test that fails today because of a defect already known in pkiss is marked
``xfail(strict=True)`` with that defect as its reason, so that it turns into an error the day
the defect is fixed and the mark can go.
"""

from __future__ import annotations

import math
import re
import struct
import time
import urllib.request
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from network import CALLED, CALLER, received, wait_for
from sbc import Pkiss, basic_config, free_port
from sipp import SCENARIOS, Sipp, sipp_available
from thirdparty import Baresip, Kamailio, Linphonec, Tcpdump, rtcp_packets, tone_seconds

pytestmark = [pytest.mark.e2e]

needs_sipp = pytest.mark.skipif(
    not sipp_available(), reason="sipp is not on PATH (package sip-tester)"
)

CARRIER = "127.0.6.2"  # the carrier's phone or SIPp
PBX = "127.0.6.3"  # the PBX's phone or SIPp
EDGE = "127.0.6.10"  # the carrier's edge proxy
PBX_EDGE = "127.0.6.11"  # the PBX's edge proxy
REGISTERED_PBX = "127.0.6.4"

CALLER_TONE, CALLEE_TONE = 440, 1000
HOLD = 3.0  # seconds of audio each way before hanging up


def sbc_config(sbc_port: int, carrier: tuple[str, int], pbx: tuple[str, int]) -> dict[str, Any]:
    config = basic_config(
        sbc_port, carrier=carrier[0], carrier_port=carrier[1], pbx=pbx[0], pbx_port=pbx[1]
    )
    config["peers"]["pbx"]["dids"] = [CALLED]
    return config


def assert_no_call_left(sbc: Pkiss, timeout: float = 5.0) -> None:
    """The node holds no call (the admin API's count), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := int(sbc.cli_json("status")["calls_in_progress"])) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert left == 0, sbc.log()[-3000:]


# ------------------------------------------------------------------------ the tone detector


def _write_wav(path: Path, parts: list[tuple[float, float]], rate: int = 8000) -> Path:
    """A 16-bit mono WAV of (frequency, seconds) parts; frequency 0 is silence."""
    samples: list[int] = []
    for frequency, seconds in parts:
        samples += [int(8000 * math.sin(2 * math.pi * frequency * i / rate))
                    for i in range(int(seconds * rate))]  # fmt: skip
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return path


def test_tone_seconds_finds_each_tone_where_it_sounds(tmp_path: Path) -> None:
    wav = _write_wav(tmp_path / "t.wav", [(440, 1.0), (0, 0.5), (1000, 2.0), (437, 0.5)])
    assert tone_seconds(wav, 440) == pytest.approx(1.5, abs=0.11)  # 437 Hz is within the bin
    assert tone_seconds(wav, 1000) == pytest.approx(2.0, abs=0.11)
    assert tone_seconds(wav, 700) == 0
    assert tone_seconds(_write_wav(tmp_path / "s.wav", [(0, 1.0)]), 440) == 0


# -------------------------------------------------------------- baresip -> pkiss -> baresip


def _phones(
    tmp_path: Path, *, uuid: bool = True, srtp: bool = False, rtcp_mux: bool = False
) -> tuple[Baresip, Baresip]:
    caller = Baresip(tmp_path / "caller", CARRIER, user=CALLER, tone=CALLER_TONE, uuid=uuid,
                     srtp=srtp, rtcp_mux=rtcp_mux)  # fmt: skip
    callee = Baresip(tmp_path / "callee", PBX, user=CALLED, tone=CALLEE_TONE, answer="auto",
                     srtp=srtp, rtcp_mux=rtcp_mux)  # fmt: skip
    return caller, callee


def _received_sdp(log: str, own: str) -> list[list[str]]:
    """The SDP bodies in a phone's SIP trace that are not its own (its own name ``own`` in
    their c= line): those it received from the node."""
    bodies: list[list[str]] = []
    for match in re.finditer(r"(?m)^v=0\r?$((?:\n[a-z]=[^\n]*)+)", log):
        lines = ["v=0", *(x.rstrip("\r") for x in match.group(1).split("\n") if x.strip())]
        if not any(x.startswith("c=") and own in x for x in lines):
            bodies.append(lines)
    return bodies


def _call_with_audio(
    caller: Baresip,
    callee: Baresip,
    sbc: Pkiss,
    sbc_port: int,
    hangs_up: Baresip,
    *,
    until: Callable[[], bool] | None = None,
) -> None:
    """One call from ``caller`` through the node, answered by ``callee``, ``HOLD`` seconds
    of tones both ways, ended by ``hangs_up``: both phones see it established and closed,
    each recorded the other's tone and not its own, and the node holds no call after.
    ``until``: the call lasts until that holds too (for 20 s at most)."""
    caller.dial(f"sip:{CALLED}@127.0.0.1:{sbc_port}")
    caller.wait_event("CALL_ESTABLISHED", timeout=10)
    callee.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(HOLD)
    if until is not None:
        wait_for(until, 20)
    media = sbc.cli_json("status")["media"]
    if media["relay"]:  # every packet the phones sent went through, none was ignored
        assert media["packets"] > 0 and media["ignored"] == 0, media
        # both phones send from 127.0.0.1, not the address their SDP names: learned
        assert media["learned"] >= 2, media
        url = f"http://{sbc.config['admin']['listen']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            metrics = response.read().decode()
        learned = re.search(r"^pkiss_media_learned_sources_total (\S+)$", metrics, re.M)
        assert learned is not None and float(learned.group(1)) >= 2, metrics
        # topology, SDP attribute by attribute: what each phone got names nothing of the
        # other (address, its software, its RTCP name or stream ids)
        for phone, own, other in ((callee, PBX, CARRIER), (caller, CARRIER, PBX)):
            bodies = _received_sdp(phone.log(), own)
            assert bodies, phone.log()[-3000:]
            for body in bodies:
                for line in body:
                    assert other not in line, (line, body)
                    assert not line.startswith(("a=tool", "a=ssrc", "a=msid", "i=", "u=",
                                                "e=", "p=")), (line, body)  # fmt: skip
                    assert "cname" not in line.lower(), (line, body)
    hangs_up.hangup()
    for phone in (caller, callee):
        closed = phone.wait_event("CALL_CLOSED", timeout=10)
        assert "error" not in str(closed.get("param", "")).lower(), closed
    other = callee if hangs_up is caller else caller
    # the BYE was answered with a 200 (baresip's SIP trace shows what it received; its
    # output may reach the file a moment after the event)
    answered = r"SIP/2\.0 200 OK\r?\n(?:[^\r\n]+\r?\n)*CSeq: \d+ BYE"
    assert wait_for(lambda: re.search(answered, hangs_up.log()) is not None, 5), hangs_up.log()[
        -3000:
    ]
    assert wait_for(lambda: re.search(r"\nBYE sip:", other.log()) is not None, 5), other.log()[
        -3000:
    ]
    heard_by_callee = callee.received_audio()
    heard_by_caller = caller.received_audio()
    assert tone_seconds(heard_by_callee, CALLER_TONE) >= HOLD / 2, heard_by_callee
    assert tone_seconds(heard_by_caller, CALLEE_TONE) >= HOLD / 2, heard_by_caller
    assert tone_seconds(heard_by_callee, CALLEE_TONE) == 0
    assert tone_seconds(heard_by_caller, CALLER_TONE) == 0
    assert_no_call_left(sbc)


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_baresip_calls_baresip_with_audio_both_ways(
    tmp_path: Path, sbc_factory: Callable[..., Pkiss], hangs_up: str
) -> None:
    caller, callee = _phones(tmp_path)
    with caller.start(), callee.start():
        sbc_port = free_port()
        sbc = sbc_factory(sbc_config(sbc_port, (CARRIER, caller.port), (PBX, callee.port)))
        _call_with_audio(caller, callee, sbc, sbc_port, caller if hangs_up == "caller" else callee)


def test_baresip_with_an_empty_supported_header_gets_through(
    tmp_path: Path, sbc_factory: Callable[..., Pkiss]
) -> None:
    caller, callee = _phones(tmp_path, uuid=False)
    with caller.start(), callee.start():
        sbc_port = free_port()
        sbc = sbc_factory(sbc_config(sbc_port, (CARRIER, caller.port), (PBX, callee.port)))
        caller.dial(f"sip:{CALLED}@127.0.0.1:{sbc_port}")
        caller.wait_event("CALL_ESTABLISHED", timeout=10)
        sent_empty = r"\nINVITE sip:[^\n]*\n(?:[^\r\n]+\r?\n)*?Supported:[ \t]*\r?\n"
        assert re.search(sent_empty, caller.log()), "no INVITE with an empty Supported sent"
        callee.wait_event("CALL_ESTABLISHED", timeout=10)
        caller.hangup()
        callee.wait_event("CALL_CLOSED", timeout=10)
        assert_no_call_left(sbc)


RELAY_PORTS = (43000, 43999)


def _rtcp_seen(capture: Tcpdump, ports: tuple[int, int]) -> list[bytes]:
    """The RTCP datagrams of the capture sent to a port within ``ports``."""
    return [d.payload for d in capture.datagrams()
            if ports[0] <= d.dst[1] <= ports[1] and rtcp_packets(d.payload)]  # fmt: skip


def _sdes_seen(capture: Tcpdump, ports: tuple[int, int]) -> bool:
    """Whether an RTCP datagram with an SDES packet went to a port within ``ports``."""
    return any(kind == 202 for payload in _rtcp_seen(capture, ports)
               for kind, _ in rtcp_packets(payload) or [])  # fmt: skip


@pytest.mark.parametrize("rtcp_mux", [False, True], ids=["rtcp-port", "rtcp-mux"])
def test_baresip_calls_baresip_through_the_builtin_relay(
    tmp_path: Path, sbc_factory: Callable[..., Pkiss], rtcp_mux: bool
) -> None:
    """Besides the call, its audio and its SDP: the RTCP each phone receives names nothing of
    the other phone. baresip's SDES CNAME is its SIP URI, its address in it (checked in what
    it sends the node); what the other phone gets has a pseudonym in its place."""
    caller, callee = _phones(tmp_path, rtcp_mux=rtcp_mux)
    ranges = [caller.rtp_ports, callee.rtp_ports, RELAY_PORTS]
    capture = Tcpdump(tmp_path / "capture", "udp and (" + " or ".join(
        f"dst portrange {low}-{high}" for low, high in ranges) + ")")  # fmt: skip
    with capture.start(), caller.start(), callee.start():
        sbc_port = free_port()
        config = sbc_config(sbc_port, (CARRIER, caller.port), (PBX, callee.port))
        # baresip sends RTP from 127.0.0.1 while its SDP names its SIP address: the relay
        # learns the source of the first packet (media.learn: first-packet)
        low, high = RELAY_PORTS
        config["media"] = {"mode": "relay", "ports": f"{low}-{high}", "learn": "first-packet"}
        sbc = sbc_factory(config)
        # baresip's first report (SR with SDES) comes some 5 s into the call: it goes on
        # until each phone has had one
        _call_with_audio(caller, callee, sbc, sbc_port, caller, until=lambda: all(
            _sdes_seen(capture, phone.rtp_ports) for phone in (caller, callee)))  # fmt: skip
        media = sbc.cli_json("status")["media"]
    # what each phone sent the node names it: the check below would see it
    sent = _rtcp_seen(capture, RELAY_PORTS)
    for phone in (caller, callee):
        assert any(phone.ip.encode() in payload for payload in sent), sent
    for phone, other in ((callee, caller), (caller, callee)):
        got = _rtcp_seen(capture, phone.rtp_ports)
        assert _sdes_seen(capture, phone.rtp_ports), f"{phone.aor} received no SDES: {got}"
        for payload in got:
            assert other.ip.encode() not in payload, payload
            assert other.user.encode() not in payload, payload
    assert media["rtcp_rewritten"] >= 2, media


def test_srtp_passes_end_to_end_through_the_builtin_relay(
    tmp_path: Path, sbc_factory: Callable[..., Pkiss]
) -> None:
    """SDES-keyed SRTP (RTP/SAVP, a=crypto) is relayed untouched: the keys cross in the SDP,
    the encrypted packets through the relay, and each phone decrypts the other's tone."""
    caller, callee = _phones(tmp_path, srtp=True)
    with caller.start(), callee.start():
        sbc_port = free_port()
        config = sbc_config(sbc_port, (CARRIER, caller.port), (PBX, callee.port))
        config["media"] = {"mode": "relay", "ports": "43000-43999", "learn": "first-packet"}
        sbc = sbc_factory(config)
        _call_with_audio(caller, callee, sbc, sbc_port, caller)
        for phone, own in ((callee, PBX), (caller, CARRIER)):
            received = [line for body in _received_sdp(phone.log(), own) for line in body]
            assert any("RTP/SAVP" in line for line in received), received
            assert any(line.startswith("a=crypto:") for line in received), received


# ------------------------------------------- SIPp -> Kamailio edge -> pkiss -> Kamailio -> SIPp


class Edge:
    """Two SIPps through the node, with a Kamailio edge proxy in front of one of them:
    ``side="carrier"``, the carrier's edge (the carrier sends its INVITE to the proxy, which
    forwards it to the node); ``side="pbx"``, the PBX's (the PBX peer's host is the proxy:
    the node sends its INVITE there, and the proxy forwards it to the PBX). Either way the
    proxy record-routes the initial INVITE, so every later request of the dialog on that
    side, in both directions, must go through it (RFC 3261 §12.2.1.1); it refuses an
    in-dialog request that comes without its Route (404; an ACK is dropped)."""

    def __init__(
        self,
        tmp_path: Path,
        make_sipp: Callable[..., Sipp],
        make_sbc: Callable[..., Pkiss],
        side: str = "carrier",
    ) -> None:
        if side not in ("carrier", "pbx"):
            raise ValueError(f"an edge proxy stands in front of the carrier or the pbx, not {side}")
        self.make_sipp = make_sipp
        self.side = side
        self.workdir = tmp_path
        self.sbc_port = free_port()
        self.carrier_port = free_port(CARRIER)
        self.pbx_port = free_port(PBX)
        node = f"127.0.0.1:{self.sbc_port}"
        if side == "carrier":
            self.edge_ip = EDGE
            routes = {CARRIER: node, "127.0.0.1": f"{CARRIER}:{self.carrier_port}"}
        else:
            self.edge_ip = PBX_EDGE
            routes = {"127.0.0.1": f"{PBX}:{self.pbx_port}", PBX: node}
        self.proxy = Kamailio(tmp_path / f"{side}-edge", self.edge_ip, routes=routes).start()
        carrier = self.proxy.address if side == "carrier" else (CARRIER, self.carrier_port)
        pbx = self.proxy.address if side == "pbx" else (PBX, self.pbx_port)
        self.sbc = make_sbc(sbc_config(self.sbc_port, carrier, pbx))

    @property
    def behind(self) -> str:
        """The address of the SIPp behind the proxy."""
        return CARRIER if self.side == "carrier" else PBX

    def pbx(self, scenario: str) -> Sipp:
        played: str | Path = scenario
        if self.side == "pbx":
            played = record_routing(scenario, self.workdir)
        return self.make_sipp(played, local_ip=PBX, local_port=self.pbx_port, calls=1,
                              timeout=15).start()  # fmt: skip

    def carrier(self, scenario: str) -> Sipp:
        remote = self.proxy.address if self.side == "carrier" else ("127.0.0.1", self.sbc_port)
        return self.make_sipp(
            scenario, local_ip=CARRIER, local_port=self.carrier_port, remote=remote,
            service=CALLED, caller=CALLER, calls=1, timeout=15,
        ).start()  # fmt: skip

    def stop(self) -> None:
        self.proxy.stop()

    def both(self, carrier: Sipp, pbx: Sipp) -> None:
        """Both SIPps' calls succeed; the SIPp behind the proxy got the proxy's Record-Route
        (in the answer on the carrier's side, in the INVITE on the PBX's: the route set
        in-dialog requests then follow), the proxy saw the ACK of the answer, and it refused
        no in-dialog request for want of a Route."""
        try:
            carrier.check(timeout=25)
            pbx.check(timeout=10)
        except AssertionError as failed:
            raise AssertionError(
                f"{failed}\n--- edge proxy:\n{self.proxy.log()[-4000:]}\n--- node:\n"
                f"{self.sbc.log()[-3000:]}"
            ) from None
        if self.side == "carrier":
            head, what = received_answer(carrier), "the answer the carrier got"
        else:
            head, what = received(pbx, "INVITE")[0].split("\n\n", 1)[0], "the PBX's INVITE"
        assert re.search(rf"^Record-Route:.*{re.escape(self.edge_ip)}", head, re.M | re.I), (
            f"{what} has no Record-Route of its edge:\n{head}"
        )
        assert self.proxy.requests("ACK"), self.proxy.log()[-3000:]
        refused = [line for line in self.proxy.log().splitlines() if "without Route" in line]
        assert not refused, refused


def record_routing(scenario: str, workdir: Path) -> Path:
    """The UAS ``scenario`` as a UA behind a record-routing proxy plays it: its responses to
    the initial INVITE (those sent before its ACK arrives) copy the INVITE's Record-Route
    (RFC 3261 §12.1.1), which the SIPp scenarios of the house leave out. Written to
    ``workdir``; SIPp's ``[last_Record-Route:]`` is the header of the last request
    received, the INVITE."""
    text = (SCENARIOS / f"{scenario}.xml").read_text()
    ack = text.index('<recv request="ACK"')
    head = text[:ack].replace("[last_CSeq:]\n", "[last_CSeq:]\n      [last_Record-Route:]\n")
    path = workdir / f"{scenario}_record_routing.xml"
    path.write_text(head + text[ack:])
    return path


def received_answer(peer: Sipp) -> str:
    """The head of the first 200 to an INVITE the SIPp received."""
    for chunk in re.split(r"-{20,}[^\n]*\n", peer.messages()):
        text = chunk.split(":\n", 1)[-1].lstrip()
        if "message received" in chunk and text.startswith("SIP/2.0 200 "):
            head = text.split("\n\n", 1)[0]
            if re.search(r"^CSeq:\s*\d+\s+INVITE\s*$", head, re.M | re.I):
                return head
    raise AssertionError(f"no 200 to an INVITE received:\n{peer.messages()[-3000:]}")


@pytest.fixture
def edge(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sipp_factory: Callable[..., Sipp],
    sbc_factory: Callable[..., Pkiss],
) -> Iterator[Edge]:
    """An Edge in front of the carrier, or of the side the test's ``edge`` parameter names."""
    net = Edge(tmp_path, sipp_factory, sbc_factory, getattr(request, "param", "carrier"))
    yield net
    net.stop()


both_edges = pytest.mark.parametrize("edge", ["carrier", "pbx"], indirect=True)


@needs_sipp
def test_initial_invite_through_the_edge_reaches_the_pbx_record_routed(edge: Edge) -> None:
    """What works today: the INVITE crosses the proxy, which record-routes it, and the node;
    the PBX answers and the answer comes back to the carrier."""
    pbx = edge.pbx("uas_basic")
    carrier = edge.carrier("uac_basic")
    assert wait_for(lambda: "SIP/2.0 200 OK" in carrier.messages(), 10), edge.proxy.log()[-3000:]
    carrier.stop()
    pbx.stop()
    invites = received(pbx, "INVITE")
    assert len(invites) == 1
    head = invites[0].split("\n\n", 1)[0]  # (the SDP names the carrier: media bypass)
    assert EDGE not in head and CARRIER not in head  # the carrier's topology stays hidden
    assert f"initial INVITE record-routed to sip:{CALLED}@127.0.0.1:{edge.sbc_port}" in (
        edge.proxy.log()
    )


@needs_sipp
@pytest.mark.parametrize("edge", ["pbx"], indirect=True)
def test_the_node_reaches_the_pbx_through_its_edge_record_routed(edge: Edge) -> None:
    """The PBX peer's host is its edge proxy: the node's INVITE goes there, the proxy
    record-routes it to the PBX, and what the PBX gets names the proxy and the node, never
    the carrier."""
    pbx = edge.pbx("uas_basic")
    carrier = edge.carrier("uac_basic")
    edge.both(carrier, pbx)
    assert f"initial INVITE record-routed to sip:{CALLED}@{PBX}:{edge.pbx_port}" in (
        edge.proxy.log()
    )
    invites = received(pbx, "INVITE")
    assert len(invites) == 1
    head = invites[0].split("\n\n", 1)[0]  # (the SDP names the carrier: media bypass)
    assert CARRIER not in head
    # the answer the carrier got names neither the PBX nor its proxy
    answer = received_answer(carrier)
    assert PBX not in answer and PBX_EDGE not in answer, answer


@needs_sipp
@both_edges
def test_carrier_hangs_up_through_the_edge(edge: Edge) -> None:
    pbx = edge.pbx("uas_basic")
    carrier = edge.carrier("uac_basic")
    edge.both(carrier, pbx)
    assert edge.proxy.requests("BYE")
    assert len(received(pbx, "BYE")) == 1


@needs_sipp
@both_edges
def test_pbx_hangs_up_through_the_edge(edge: Edge) -> None:
    pbx = edge.pbx("uas_bye")
    carrier = edge.carrier("uac_recv_bye")
    edge.both(carrier, pbx)
    assert edge.proxy.requests("BYE")
    assert len(received(carrier, "BYE")) == 1


@needs_sipp
@both_edges
def test_reinvite_from_the_carrier_through_the_edge(edge: Edge) -> None:
    pbx = edge.pbx("uas_reinvite_recv")
    carrier = edge.carrier("uac_reinvite")
    edge.both(carrier, pbx)
    assert len(received(pbx, "INVITE")) == 2
    assert len(edge.proxy.requests("INVITE")) >= 2  # the re-INVITE crossed it too
    assert edge.proxy.requests("UPDATE") and edge.proxy.requests("INFO")


@needs_sipp
@both_edges
def test_reinvite_from_the_pbx_through_the_edge(edge: Edge) -> None:
    pbx = edge.pbx("uas_reinvite_send")
    carrier = edge.carrier("uac_reinvite_recv")
    edge.both(carrier, pbx)
    assert len(received(carrier, "INVITE")) == 1  # the re-INVITE
    assert len(edge.proxy.requests("INVITE")) >= 2
    assert edge.proxy.requests("UPDATE") and edge.proxy.requests("INFO")


# ------------------------------------------------------- linphonec, a PBX that registers


def _registered_config(sbc_port: int, carrier_port: int, username: str) -> dict[str, Any]:
    return {
        "sbc": {"listen": [f"udp:127.0.0.1:{sbc_port}"]},
        "media": {"mode": "bypass"},
        "peers": {
            "operator": {"role": "carrier", "hosts": [f"{CARRIER}:{carrier_port}"],
                         "match": {"source": [CARRIER]}, "health": False},
            "pbx": {"role": "pbx", "hosts": "registered", "match": {"username": username},
                    "password": "s3cret-pbx", "dids": [CALLED]},
        },
        "routes": [{"prefix": "", "via": ["operator"]}],
        "logging": {"level": "info"},
    }  # fmt: skip


@needs_sipp
def test_linphonec_registers_and_answers_a_call_from_the_carrier(
    tmp_path: Path, sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    sbc_port, carrier_port = free_port(), free_port(CARRIER)
    sbc = sbc_factory(_registered_config(sbc_port, carrier_port, "linphone1"))
    with Linphonec(tmp_path / "linphonec", REGISTERED_PBX, proxy=f"127.0.0.1:{sbc_port}",
                   user="linphone1", password="s3cret-pbx").start() as pbx:  # fmt: skip
        pbx.wait_registered(timeout=10)
        assert "peer pbx registered from" in sbc.log()
        carrier = sipp_factory(
            "uac_basic", local_ip=CARRIER, local_port=carrier_port,
            remote=("127.0.0.1", sbc_port), service=CALLED, caller=CALLER, calls=1,
            pause_ms=1000, timeout=20,
        ).start()  # fmt: skip
        carrier.check(timeout=25)
        assert f"<sip:{CALLED}@{REGISTERED_PBX}>" in pbx.log()  # the To of the INVITE it got
        pbx.wait_log(r"LinphoneCallEnd|LinphoneCallReleased", timeout=10)
    assert_no_call_left(sbc)


@needs_sipp
def test_baresip_registers_and_answers_a_call_from_the_carrier(
    tmp_path: Path, sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    sbc_port, carrier_port = free_port(), free_port(CARRIER)
    sbc = sbc_factory(_registered_config(sbc_port, carrier_port, "baresip1"))
    phone = Baresip(tmp_path / "baresip", REGISTERED_PBX, user="baresip1",
                    registrar=f"127.0.0.1:{sbc_port}", auth=("baresip1", "s3cret-pbx"))  # fmt: skip
    with phone.start():
        phone.wait_registered(timeout=10)
        assert "peer pbx registered from" in sbc.log()
        carrier = sipp_factory(
            "uac_basic", local_ip=CARRIER, local_port=carrier_port,
            remote=("127.0.0.1", sbc_port), service=CALLED, caller=CALLER, calls=1,
            pause_ms=1000, timeout=20,
        ).start()  # fmt: skip
        carrier.check(timeout=25)
        phone.wait_event("CALL_CLOSED", timeout=10)
    assert_no_call_left(sbc)


@needs_sipp
def test_baresip_registers_where_the_challenge_offers_md5_alone(
    tmp_path: Path, sipp_factory: Callable[..., Sipp]
) -> None:
    """The control of the test above, without pkiss: the same phone registers to a
    registrar (SIPp) whose 401 offers MD5 alone."""
    registrar = sipp_factory("uas_registrar", local_ip=EDGE, calls=None, timeout=20).start()
    phone = Baresip(
        tmp_path / "baresip", REGISTERED_PBX, user="0123456789",
        registrar=f"{EDGE}:{registrar.local_port}", auth=("0123456789", "secret"),
    )  # fmt: skip
    with phone.start():
        phone.wait_registered(timeout=10)
    registrar.stop()
    assert len(received(registrar, "REGISTER")) >= 2  # the first, then with credentials
