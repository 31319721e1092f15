"""The built-in relay with real sockets on loopback: what one side sends reaches the other,
through the ports the rewritten SDP names; strangers are ignored; ports are freed."""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from typing import NamedTuple

import pytest

from pkiss.media import BuiltinRelay, MediaError
from pkiss.media.relay import LEARN_WINDOW, Learn, cname_pseudonym, private_rtcp
from pkiss.sdp import Media, parse_sdp

A_HOST, B_HOST = "127.0.0.2", "127.0.0.3"


def offer(host: str, port: int) -> bytes:
    return (f"v=0\r\no=x 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n").encode()  # fmt: skip


def endpoint(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(2)
    return sock


def relay_port(body: bytes) -> int:
    session = parse_sdp(body)
    assert session.connection_for(session.media[0]) == ("IP4", "127.0.0.1")
    return session.media[0].port


async def _pooled() -> tuple[int, int]:
    """A call ends; a packet to its old port finds no route; later calls reuse the pair."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop)
    a = endpoint(A_HOST)
    first = relay_port(relay.rewrite("c0", "b", offer(B_HOST, 5000), "127.0.0.1", B_HOST, 0.0))
    relay.release("c0")
    a.sendto(b"late", ("127.0.0.1", first))
    await asyncio.sleep(0.05)
    ignored = relay.stats["ignored"]
    seen = set()
    for n in range(1, 40):
        body = relay.rewrite(f"c{n}", "b", offer(B_HOST, 5000), "127.0.0.1", B_HOST, 0.0)
        seen.add(relay_port(body))
        relay.release(f"c{n}")
    relay.close()
    a.close()
    return ignored, int(first in seen)


def test_ended_calls_ports_are_pooled_and_reused_after_a_rest() -> None:
    ignored, reused = asyncio.run(_pooled())
    assert ignored == 1  # the late packet reached no one
    assert reused == 1  # the pair served again once QUARANTINE others had rested


async def _exchange() -> tuple[dict[str, int], list[str], dict[str, int]]:
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop)
    a, b = endpoint(A_HOST), endpoint(B_HOST)
    to_b = relay.rewrite("call1", "a", offer(A_HOST, a.getsockname()[1]), "127.0.0.1", A_HOST, 0.0)
    to_a = relay.rewrite("call1", "b", offer(B_HOST, b.getsockname()[1]), "127.0.0.1", B_HOST, 0.0)
    port_for_b, port_for_a = relay_port(to_b), relay_port(to_a)
    assert port_for_a != port_for_b and port_for_a % 2 == 0
    a.sendto(b"rtp from a", ("127.0.0.1", port_for_a))
    await asyncio.sleep(0.05)
    assert b.recvfrom(100)[0] == b"rtp from a"
    b.sendto(b"rtp from b", ("127.0.0.1", port_for_b))
    await asyncio.sleep(0.05)
    assert a.recvfrom(100)[0] == b"rtp from b"
    # a stranger aiming at the relay port facing A reaches no one
    stranger = endpoint("127.0.0.9")
    stranger.sendto(b"injected", ("127.0.0.1", port_for_a))
    await asyncio.sleep(0.05)
    b.settimeout(0.2)
    with pytest.raises(TimeoutError):
        b.recvfrom(100)
    for s in (a, b, stranger):
        s.close()
    stats, idle = relay.stats, relay.idle(1.0, 60.0)
    relay.release("call1")
    assert relay.calls == {}
    relay.close()
    await asyncio.sleep(0)  # the endpoints close their sockets at the loop's next turn
    return stats, idle, {"a": port_for_a, "b": port_for_b}


def test_media_flows_both_ways_and_strangers_are_ignored() -> None:
    stats, idle, ports = asyncio.run(_exchange())
    assert stats["packets"] == 2 and stats["ignored"] == 1
    assert idle == []
    for port in ports.values():  # closed: they can be bound again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))


async def _before_the_endpoints() -> tuple[bool, bytes, bytes, list[str], list[str], int]:
    """Packets sent to relay ports whose endpoints the loop has not opened yet (rewrite and
    the sends happen in one turn of the loop); then silence."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop)
    a, b = endpoint(A_HOST), endpoint(B_HOST)
    to_b = relay.rewrite("c", "a", offer(A_HOST, a.getsockname()[1]), "127.0.0.1", A_HOST, 0.0)
    to_a = relay.rewrite("c", "b", offer(B_HOST, b.getsockname()[1]), "127.0.0.1", B_HOST, 0.0,
                         "answer")  # fmt: skip
    side = relay.calls["c"].streams[0]["a"]
    unopened = side.rtp.transport is None and side.peer is not None
    a.sendto(b"early from a", ("127.0.0.1", relay_port(to_a)))  # waits in the socket's buffer
    b.sendto(b"early from b", ("127.0.0.1", relay_port(to_b)))
    await asyncio.sleep(0.05)
    heard_b, heard_a = b.recvfrom(100)[0], a.recvfrom(100)[0]
    # the ports counted what they relayed: the call is not idle at 100 s, nor 59 s later,
    # and is 60 s after that look (its last packet is known to within two looks)
    moving = relay.idle(100.0, 60.0) + relay.idle(159.0, 60.0)
    silent = relay.idle(160.0, 60.0)
    packets = relay.stats["packets"]
    relay.close()
    await asyncio.sleep(0)
    for sock in (a, b):
        sock.close()
    return unopened, heard_a, heard_b, moving, silent, packets


def test_packets_sent_before_the_endpoints_open_are_relayed_once_they_are() -> None:
    unopened, heard_a, heard_b, moving, silent, packets = asyncio.run(_before_the_endpoints())
    assert unopened, "rewrite returns before the loop has opened the endpoints"
    assert heard_b == b"early from a" and heard_a == b"early from b" and packets == 2
    assert moving == [] and silent == ["c"]


async def _full_buffer() -> tuple[bool, bool, bool]:
    """A port whose transport says its buffer is full drops what it is given, and sends again
    once it has drained."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop)
    b = endpoint(B_HOST)
    relay.rewrite("c", "a", offer(A_HOST, 5000), "127.0.0.1", A_HOST, 0.0)
    await asyncio.sleep(0.01)
    port = relay.calls["c"].streams[0]["b"].rtp  # the port that sends toward B
    dest = ("127.0.0.1", 1)  # anything: nothing may leave while paused
    opened = port.transport is not None
    port.pause_writing()
    paused = port.send(b"x", dest)
    port.resume_writing()
    resumed = port.send(b"y", b.getsockname())
    await asyncio.sleep(0.01)
    relay.close()
    await asyncio.sleep(0)
    b.close()
    return opened, paused, resumed


def test_a_full_transport_drops_rather_than_queues() -> None:
    opened, paused, resumed = asyncio.run(_full_buffer())
    assert opened and not paused and resumed


def test_a_silent_call_is_reported_idle() -> None:
    relay = BuiltinRelay("127.0.0.1", (41000, 41099))
    relay.rewrite("quiet", "a", offer(A_HOST, 5000), "127.0.0.1", A_HOST, now=10.0)
    assert relay.idle(69.0, 60.0) == []
    assert relay.idle(70.0, 60.0) == ["quiet"]
    relay.release("quiet")
    relay.close()


def test_the_port_range_running_out_is_a_media_error() -> None:
    relay = BuiltinRelay("127.0.0.1", (41100, 41103))  # two pairs: one stream's worth
    relay.rewrite("one", "a", offer(A_HOST, 5000), "127.0.0.1", A_HOST, 0.0)
    with pytest.raises(MediaError):
        relay.rewrite("two", "a", offer(A_HOST, 5002), "127.0.0.1", A_HOST, 0.0)
    relay.release("one")
    relay.rewrite("two", "a", offer(A_HOST, 5002), "127.0.0.1", A_HOST, 0.0)
    relay.release("two")
    relay.close()


def test_a_refused_stream_keeps_port_zero() -> None:
    relay = BuiltinRelay("127.0.0.1", (41200, 41299))
    body = offer(A_HOST, 5000) + b"m=video 0 RTP/AVP 96\r\n"
    out = parse_sdp(relay.rewrite("c", "a", body, "127.0.0.1", A_HOST, 0.0))
    assert [m.port for m in out.media][1] == 0
    relay.release("c")
    relay.close()


# --- media.learn: sources that were not signalled ------------------------------------------

A_REAL = "127.0.0.12"  # where A's media really comes from (a phone bound on the wildcard)


async def _unsignalled(learn: Learn, times: list[float]) -> dict[str, object]:
    """A signals 127.0.0.2 and sends from 127.0.0.12; B is where it says. The offer is
    rewritten at time 0, the answer at time 10 (a call ringing for 10 s); A's first packet
    arrives at ``times[0]``, a stranger's at ``times[1]``, A's second at ``times[2]``."""
    loop = asyncio.get_running_loop()
    clock = [0.0]
    relay = BuiltinRelay("127.0.0.1", (42000, 42099), loop, clock=lambda: clock[0],
                         learn=learn)  # fmt: skip
    a, b, stranger = endpoint(A_REAL), endpoint(B_HOST), endpoint("127.0.0.9")
    to_b = relay.rewrite("c", "a", offer(A_HOST, a.getsockname()[1]), "127.0.0.1", A_HOST, 0.0)
    to_a = relay.rewrite("c", "b", offer(B_HOST, b.getsockname()[1]), "127.0.0.1", B_HOST, 10.0)
    port_for_a, port_for_b = relay_port(to_a), relay_port(to_b)
    b.settimeout(0.2)
    a.settimeout(0.2)
    heard: list[bytes] = []
    for when, sender, data in zip(times, (a, stranger, a), (b"a1", b"stranger", b"a2"),
                                  strict=True):  # fmt: skip
        clock[0] = when
        sender.sendto(data, ("127.0.0.1", port_for_a))
        await asyncio.sleep(0.05)
        try:
            heard.append(b.recvfrom(100)[0])
        except TimeoutError:
            pass
    b.sendto(b"to a", ("127.0.0.1", port_for_b))  # symmetric RTP: back where A sends from
    await asyncio.sleep(0.05)
    try:
        back = a.recvfrom(100)[0]
    except TimeoutError:
        back = b""
    stats = dict(relay.stats)
    relay.release("c")
    relay.close()
    for s in (a, b, stranger):
        s.close()
    return {"heard": heard, "back": back, "stats": stats}


def test_signalled_ignores_a_source_the_sdp_does_not_name() -> None:
    got = asyncio.run(_unsignalled("signalled", [10.1, 10.2, 10.3]))
    assert got["heard"] == [] and got["back"] == b""  # B's media went where A's SDP says
    assert got["stats"] == {"packets": 1, "bytes": 4, "ignored": 3, "learned": 0, "rtcp": 0,
                            "rtcp_muxed": 0, "rtcp_rewritten": 0}  # fmt: skip


def test_first_packet_latches_onto_the_first_source_within_the_window() -> None:
    got = asyncio.run(_unsignalled("first-packet", [10.1, 10.2, 20.0]))
    # A's first packet came within 3 s of the answer: learned; the stranger is not, even
    # within the window; A is still heard after it, and B's media goes back to A
    assert got["heard"] == [b"a1", b"a2"] and got["back"] == b"to a"
    assert got["stats"] == {"packets": 3, "bytes": 8, "ignored": 1, "learned": 1, "rtcp": 0,
                            "rtcp_muxed": 0, "rtcp_rewritten": 0}  # fmt: skip


def test_first_packet_learns_nothing_after_the_window() -> None:
    got = asyncio.run(_unsignalled("first-packet", [10.0 + LEARN_WINDOW, 13.5, 14.0]))
    assert got["heard"] == [] and got["back"] == b""
    assert got["stats"]["learned"] == 0 and got["stats"]["ignored"] == 3  # type: ignore[index]


def test_first_packet_a_signalled_first_packet_leaves_nothing_to_learn() -> None:
    """The stranger comes second, within the window, after A's packet from its signalled
    host: it is not taken for A."""

    async def run() -> tuple[list[bytes], dict[str, int]]:
        loop = asyncio.get_running_loop()
        relay = BuiltinRelay("127.0.0.1", (42100, 42199), loop, clock=lambda: 0.5,
                             learn="first-packet")  # fmt: skip
        a, b, stranger = endpoint(A_HOST), endpoint(B_HOST), endpoint("127.0.0.9")
        relay.rewrite("c", "a", offer(A_HOST, a.getsockname()[1]), "127.0.0.1", A_HOST, 0.0)
        to_a = relay.rewrite("c", "b", offer(B_HOST, b.getsockname()[1]), "127.0.0.1", B_HOST,
                             0.0)  # fmt: skip
        port_for_a = relay_port(to_a)
        heard = []
        b.settimeout(0.2)
        for sender, data in ((a, b"a1"), (stranger, b"stranger")):
            sender.sendto(data, ("127.0.0.1", port_for_a))
            await asyncio.sleep(0.05)
            try:
                heard.append(b.recvfrom(100)[0])
            except TimeoutError:
                pass
        stats = dict(relay.stats)
        relay.release("c")
        relay.close()
        for s in (a, b, stranger):
            s.close()
        return heard, stats

    heard, stats = asyncio.run(run())
    assert heard == [b"a1"] and stats["ignored"] == 1 and stats["learned"] == 0


def test_learn_is_checked() -> None:
    assert LEARN_WINDOW == 3.0
    with pytest.raises(ValueError, match="learn must be signalled or first-packet"):
        BuiltinRelay("127.0.0.1", (42200, 42299), learn="always")  # type: ignore[arg-type]


# --- RTCP: its own port (RFC 3605), or the RTP port (RFC 5761 rtcp-mux) ---------------------

RTP = bytes([0x80, 0x00, 0x00, 0x01]) + bytes(8) + b"\xd5" * 160  # PCMU, one 20 ms frame
RTCP_RR = bytes([0x80, 201, 0x00, 0x01]) + bytes(4)  # an empty receiver report


def media(host: str, port: int, *extra: str) -> bytes:
    return offer(host, port) + "".join(f"{line}\r\n" for line in extra).encode()


class Rtcp(NamedTuple):
    arrived: dict[str, list[int]]
    to_a: Media
    to_b: Media
    stats: dict[str, int]


async def _rtcp(a_lines: tuple[str, ...], b_lines: tuple[str, ...],
                a_rtcp_port: int | None = None) -> Rtcp:  # fmt: skip
    """A offers with ``a_lines``, B answers with ``b_lines``; each sends an RTP packet and an
    RTCP report where its SDP tells it to (the relay's RTP port when it muxes, else the
    relay's RTCP port, port + 1); returns where each side's packets arrived (0: its RTP
    socket, 1: its RTCP socket, the one its ``a=rtcp`` names when ``a_rtcp_port``), the SDP
    each got, and the relay's counters."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (42300, 42399), loop)
    a_rtp, b_rtp = endpoint(A_HOST), endpoint(B_HOST)
    a_rtcp = endpoint(A_HOST)
    b_rtcp = endpoint(B_HOST)
    if a_rtcp_port is None:  # RFC 3605's default: the next port
        a_rtcp.close()
        a_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a_rtcp.settimeout(2)
        a_rtcp.bind((A_HOST, a_rtp.getsockname()[1] + 1))
    else:
        a_lines = (*a_lines, f"a=rtcp:{a_rtcp.getsockname()[1]}")
    b_rtcp.close()
    b_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b_rtcp.settimeout(2)
    b_rtcp.bind((B_HOST, b_rtp.getsockname()[1] + 1))
    to_b = parse_sdp(relay.rewrite("c", "a", media(A_HOST, a_rtp.getsockname()[1], *a_lines),
                                   "127.0.0.1", A_HOST, 0.0))  # fmt: skip
    to_a = parse_sdp(relay.rewrite("c", "b", media(B_HOST, b_rtp.getsockname()[1], *b_lines),
                                   "127.0.0.1", B_HOST, 0.0, "answer"))  # fmt: skip
    muxed = to_a.media[0].muxed and to_b.media[0].muxed  # what each end then does
    arrived: dict[str, list[int]] = {"a": [], "b": []}
    for name, sdp, rtp, rtcp, far in (("a", to_a, a_rtp, a_rtcp, (b_rtp, b_rtcp)),
                                      ("b", to_b, b_rtp, b_rtcp, (a_rtp, a_rtcp))):  # fmt: skip
        port = sdp.media[0].port
        rtp.sendto(RTP, ("127.0.0.1", port))
        (rtp if muxed else rtcp).sendto(RTCP_RR, ("127.0.0.1", port if muxed else port + 1))
        await asyncio.sleep(0.05)
        for which, sock in enumerate(far):
            sock.settimeout(0.1)
            while True:
                try:
                    sock.recvfrom(2048)
                except TimeoutError:
                    break
                arrived[name].append(which)
    stats = dict(relay.stats)
    relay.release("c")
    relay.close()
    for sock in (a_rtp, a_rtcp, b_rtp, b_rtcp):
        sock.close()
    return Rtcp(arrived, to_a.media[0], to_b.media[0], stats)


def test_rtcp_mux_offered_and_accepted_rides_the_rtp_ports_both_ways() -> None:
    got = asyncio.run(_rtcp(("a=rtcp-mux",), ("a=rtcp-mux",)))
    # the attribute crossed both ways, no a=rtcp was made up
    for sdp in (got.to_a, got.to_b):
        assert sdp.muxed and sdp.rtcp() is None
    # RTP and RTCP of each side reached the other's RTP port, none its RTCP port
    assert got.arrived == {"a": [0, 0], "b": [0, 0]}
    assert got.stats["packets"] == 4
    assert got.stats["rtcp"] == 2 and got.stats["rtcp_muxed"] == 2


def test_rtcp_mux_declined_keeps_rtcp_on_its_own_ports() -> None:
    got = asyncio.run(_rtcp(("a=rtcp-mux",), ()))
    assert got.to_b.muxed and not got.to_a.muxed
    assert got.arrived == {"a": [0, 1], "b": [0, 1]}
    assert got.stats["rtcp"] == 2 and got.stats["rtcp_muxed"] == 0


def test_rtcp_goes_to_the_port_a_rtcp_names() -> None:
    """RFC 3605: A receives RTCP on a port of its choosing, not RTP + 1; the SDP B gets names
    the relay's own RTCP port."""
    got = asyncio.run(_rtcp((), (), a_rtcp_port=0))
    assert got.arrived == {"a": [0, 1], "b": [0, 1]}
    assert got.to_b.rtcp() == (got.to_b.port + 1, "127.0.0.1")


def test_a_muxed_answer_naming_its_rtp_port_in_a_rtcp_names_the_relays_rtp_port() -> None:
    relay = BuiltinRelay("127.0.0.1", (42400, 42499))
    relay.rewrite("c", "a", media(A_HOST, 5000, "a=rtcp-mux", "a=rtcp:5001"), "127.0.0.1",
                  A_HOST, 0.0)  # fmt: skip
    to_a = parse_sdp(relay.rewrite("c", "b", media(B_HOST, 6000, "a=rtcp-mux", "a=rtcp:6000"),
                                   "127.0.0.1", B_HOST, 0.0, "answer")).media[0]  # fmt: skip
    assert to_a.rtcp() == (to_a.port, "127.0.0.1") and to_a.muxed
    relay.release("c")
    relay.close()


async def _changed_hands() -> tuple[bytes, list[bytes], int]:
    """A call whose B side changes hands (a transfer): the new party answers on that side
    while the old one still sends; the caller's media goes to the new party only."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop,
                         learn="first-packet")  # fmt: skip
    caller, old, new = endpoint(A_HOST), endpoint("127.0.0.1"), endpoint("127.0.0.1")
    now = loop.time()
    to_b = relay.rewrite("c", "a", offer(A_HOST, caller.getsockname()[1]), "127.0.0.1", A_HOST,
                         now)  # fmt: skip
    to_a = relay.rewrite("c", "b", offer(B_HOST, old.getsockname()[1]), "127.0.0.1", B_HOST,
                         now, "answer")  # fmt: skip
    a_port, b_port = relay_port(to_a), relay_port(to_b)
    old.sendto(b"old-1", ("127.0.0.1", b_port))  # latched: sent from another host than signalled
    await asyncio.sleep(0.05)
    relay.rewrite("c", "b", offer("127.0.0.5", new.getsockname()[1]), "127.0.0.1", "127.0.0.5",
                  loop.time(), "answer")  # fmt: skip
    old.sendto(b"old-2", ("127.0.0.1", b_port))  # still on its way before its BYE
    await asyncio.sleep(0.05)
    new.sendto(b"new-1", ("127.0.0.1", b_port))
    await asyncio.sleep(0.05)
    caller.sendto(b"caller", ("127.0.0.1", a_port))
    await asyncio.sleep(0.05)
    got = [caller.recvfrom(100)[0] for _ in range(2)]
    heard = new.recvfrom(100)[0]
    ignored = relay.stats["ignored"]
    relay.close()
    for sock in (caller, old, new):
        sock.close()
    return heard, got, ignored


def test_a_side_that_changes_hands_leaves_the_old_party_out() -> None:
    heard, got, ignored = asyncio.run(_changed_hands())
    assert heard == b"caller", "the caller's media goes to the new party"
    assert got == [b"old-1", b"new-1"] and ignored == 1, "the old party's late packet is dropped"


async def _refused_reoffer(rollback: bool) -> bytes | None:
    """A re-offer from A (a new port: a T.38 switch, say) that B refuses: after the rollback
    B's media still reaches A where it listened before."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop)
    a_old, a_new, b = endpoint(A_HOST), endpoint(A_HOST), endpoint(B_HOST)
    to_b = relay.rewrite("c", "a", offer(A_HOST, a_old.getsockname()[1]), "127.0.0.1", A_HOST,
                         0.0)  # fmt: skip
    relay.rewrite("c", "b", offer(B_HOST, b.getsockname()[1]), "127.0.0.1", B_HOST, 0.0, "answer")
    relay.rewrite("c", "a", offer(A_HOST, a_new.getsockname()[1]), "127.0.0.1", A_HOST, 1.0)
    if rollback:
        relay.rollback("c", "a")
    b.sendto(b"from-b", ("127.0.0.1", relay_port(to_b)))
    await asyncio.sleep(0.05)
    a_old.settimeout(0.2)
    try:
        got: bytes | None = a_old.recvfrom(100)[0]
    except TimeoutError:
        got = None
    relay.close()
    for sock in (a_old, a_new, b):
        sock.close()
    return got


def test_a_refused_reoffer_is_rolled_back() -> None:
    assert asyncio.run(_refused_reoffer(rollback=True)) == b"from-b"
    assert asyncio.run(_refused_reoffer(rollback=False)) is None, "the check can fail"


# --- RTCP that names nothing of its sender (RFC 3550 §6.5 SDES, §6.6 BYE) -------------------

A_URI = b"sip:+33987650001@127.0.6.2"  # what baresip puts in its CNAME: its URI, its address
SSRC = 0x11223344


def rtcp_packet(kind: int, count: int, payload: bytes, pad: int = 0) -> bytes:
    """One RTCP packet: the header (V=2, P when ``pad``, count, type, length) and
    ``payload`` (whole 32-bit words), then ``pad`` octets of padding."""
    body = payload + (bytes(pad - 1) + bytes([pad]) if pad else b"")
    first = 0x80 | (0x20 if pad else 0) | count
    return struct.pack("!BBH", first, kind, len(body) // 4) + body


def sdes_chunk(ssrc: int, *items: tuple[int, bytes]) -> bytes:
    raw = b"".join(bytes((kind, len(text))) + text for kind, text in items) + b"\0"
    return struct.pack("!I", ssrc) + raw + bytes(-(4 + len(raw)) % 4)


SR = rtcp_packet(200, 0, struct.pack("!IIIIII", SSRC, 1, 2, 3, 4, 5))
EVERY_ITEM = ((1, A_URI), (2, b"Alice"), (3, b"alice@127.0.6.2"), (4, b"+33987650001"),
              (5, b"Paris 127.0.6.2"), (6, b"baresip 1.0.0"), (7, b"on 127.0.6.2"),
              (8, b"\x05x-pbxhost 127.0.6.2"), (15, b"0"))  # fmt: skip


def parse_compound(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, count, payload) of each packet, checking what RFC 3550 asks of a compound
    packet (§6.1, A.2): version 2, lengths adding up to the datagram, padding counted by the
    last octet and on the last packet only."""
    out = []
    offset = 0
    while offset < len(data):
        first, kind, words = struct.unpack_from("!BBH", data, offset)
        assert first >> 6 == 2, data
        end = offset + (words + 1) * 4
        assert end <= len(data), data
        stop = end
        if first & 0x20:
            assert end == len(data) and 0 < data[end - 1] <= end - offset - 4, data
            stop = end - data[end - 1]
        out.append((kind, first & 0x1F, data[offset + 4 : stop]))
        offset = end
    return out


def sdes_items(payload: bytes, count: int) -> list[tuple[int, list[tuple[int, bytes]]]]:
    """The chunks of an SDES payload, checking §6.5: items ended by a null octet, each chunk
    padded with nulls to a 32-bit word."""
    chunks = []
    pos = 0
    for _ in range(count):
        (ssrc,) = struct.unpack_from("!I", payload, pos)
        pos += 4
        items = []
        while payload[pos] != 0:
            size = payload[pos + 1]
            items.append((payload[pos], payload[pos + 2 : pos + 2 + size]))
            pos += 2 + size
        end = (pos // 4 + 1) * 4
        assert payload[pos:end] == bytes(end - pos), payload  # nulls to the word
        pos = end
        chunks.append((ssrc, items))
    assert pos == len(payload), payload
    return chunks


def test_sdes_keeps_a_pseudonym_for_the_cname_and_drops_what_names_the_sender() -> None:
    secret = bytes(range(16))
    sdes = rtcp_packet(202, 2, sdes_chunk(SSRC, *EVERY_ITEM)
                       + sdes_chunk(0x55667788, (1, b"bob@127.0.6.3"), (2, b"Bob")))  # fmt: skip
    out = private_rtcp(SR + sdes, secret)
    assert b"127.0.6" not in out and b"Alice" not in out and b"baresip" not in out
    packets = parse_compound(out)
    assert packets[0] == (200, 0, SR[4:])  # the sender report as it came
    kind, count, payload = packets[1]
    assert (kind, count) == (202, 2)
    (ssrc1, items1), (ssrc2, items2) = sdes_items(payload, count)
    assert (ssrc1, ssrc2) == (SSRC, 0x55667788)
    # the CNAME: 16 base64 characters (RFC 7022: 96 bits); MID stays, nothing else
    assert [kind for kind, _ in items1] == [1, 15] and items1[1][1] == b"0"
    assert len(items1[0][1]) == 16 and len(base64.b64decode(items1[0][1])) == 12
    assert items1[0][1] == cname_pseudonym(secret, A_URI)
    assert items2 == [(1, cname_pseudonym(secret, b"bob@127.0.6.3"))]
    assert items1[0][1] != items2[0][1]


def test_a_cname_keeps_its_pseudonym_within_a_call_and_not_across_calls() -> None:
    sdes = rtcp_packet(202, 1, sdes_chunk(SSRC, (1, A_URI)))
    call1, call2 = bytes(16), bytes([1]) * 16
    assert private_rtcp(sdes, call1) == private_rtcp(sdes, call1)
    assert private_rtcp(sdes, call1) != private_rtcp(sdes, call2)


def test_a_padded_sdes_and_a_bye_with_a_reason_are_written_back_well_formed() -> None:
    sdes = rtcp_packet(202, 1, sdes_chunk(SSRC, (1, b"x"), (6, A_URI)), pad=8)
    bye = rtcp_packet(203, 1, struct.pack("!I", SSRC) + b"\x0fleft 127.0.6.2!")
    for compound in (SR + sdes, SR + bye):
        out = private_rtcp(compound, bytes(16))
        assert b"127.0.6.2" not in out
        packets = parse_compound(out)
        assert len(packets) == 2
    assert parse_compound(private_rtcp(SR + bye, bytes(16)))[1] == (203, 1, struct.pack("!I", SSRC))
    out = parse_compound(private_rtcp(SR + sdes, bytes(16)))[1]
    assert sdes_items(out[2], 1) == [(SSRC, [(1, cname_pseudonym(bytes(16), b"x"))])]


def test_what_has_nothing_to_hide_or_does_not_parse_is_left_as_it_came() -> None:
    rr = rtcp_packet(201, 0, struct.pack("!I", SSRC))
    bye = rtcp_packet(203, 1, struct.pack("!I", SSRC))
    sdes = rtcp_packet(202, 1, sdes_chunk(SSRC, (1, A_URI)))
    for data in (
        rr + bye,  # nothing of the sender's
        b"rtp or junk " + A_URI,  # not version 2
        sdes[:-4],  # its length runs past the datagram
        sdes + b"\x80",  # octets left after the last packet
        rtcp_packet(202, 2, sdes_chunk(SSRC, (1, A_URI))),  # a chunk missing
        rtcp_packet(202, 1, struct.pack("!I", SSRC) + bytes((1, 200)) + A_URI + b"\0\0"),
        bytes([0xA0, 202]) + sdes[2:],  # padding on a packet that is not the last
    ):
        assert private_rtcp(data, bytes(16)) is data, data


def plain_or_srtp(host: str, port: int, proto: str, *extra: str) -> bytes:
    body = offer(host, port).replace(b"RTP/AVP", proto.encode())
    return body + "".join(f"{line}\r\n" for line in extra).encode()


async def _rtcp_received(proto: str, mux: bool) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    """A sends the same SR + SDES (its URI as CNAME, its tool) twice where its SDP tells it,
    then an RTP packet holding its URI; what B received on its RTCP path, what on its RTP
    path, and the relay's counters."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (42500, 42599), loop)
    a_rtp, b_rtp = endpoint(A_HOST), endpoint(B_HOST)
    a_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a_rtcp.bind((A_HOST, a_rtp.getsockname()[1] + 1))
    b_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b_rtcp.bind((B_HOST, b_rtp.getsockname()[1] + 1))
    b_rtcp.settimeout(0.3)
    lines = ("a=rtcp-mux",) if mux else ()
    to_b = parse_sdp(relay.rewrite("c", "a", plain_or_srtp(A_HOST, a_rtp.getsockname()[1],
                                                           proto, *lines),
                                   "127.0.0.1", A_HOST, 0.0))  # fmt: skip
    to_a = parse_sdp(relay.rewrite("c", "b", plain_or_srtp(B_HOST, b_rtp.getsockname()[1],
                                                           proto, *lines),
                                   "127.0.0.1", B_HOST, 0.0, "answer"))  # fmt: skip
    port = to_a.media[0].port
    report = SR + rtcp_packet(202, 1, sdes_chunk(SSRC, (1, A_URI), (6, b"baresip 1.0.0")))
    for _ in range(2):
        (a_rtp if mux else a_rtcp).sendto(report, ("127.0.0.1", port if mux else port + 1))
    a_rtp.sendto(RTP + A_URI, ("127.0.0.1", port))
    await asyncio.sleep(0.1)
    got: dict[str, list[bytes]] = {"rtp": [], "rtcp": []}
    b_rtp.settimeout(0.3)
    for name, sock in (("rtp", b_rtp), ("rtcp", b_rtcp)):
        while True:
            try:
                got[name].append(sock.recvfrom(2048)[0])
            except TimeoutError:
                break
    stats = dict(relay.stats)
    relay.release("c")
    relay.close()
    for sock in (a_rtp, a_rtcp, b_rtp, b_rtcp):
        sock.close()
    assert to_b.media[0].proto == proto
    rtcp = [p for p in got["rtp"] if 192 <= p[1] <= 223] + got["rtcp"]
    return rtcp, [p for p in got["rtp"] if not 192 <= p[1] <= 223], stats


@pytest.mark.parametrize("mux", [False, True], ids=["rtcp-port", "rtcp-mux"])
def test_plain_rtcp_reaches_the_other_side_without_its_senders_name(mux: bool) -> None:
    rtcp, rtp, stats = asyncio.run(_rtcp_received("RTP/AVP", mux))
    assert len(rtcp) == 2 and rtcp[0] == rtcp[1]  # one pseudonym for the call
    for packet in rtcp:
        assert A_URI not in packet and b"baresip" not in packet
        packets = parse_compound(packet)
        assert [kind for kind, _, _ in packets] == [200, 202]
        [(ssrc, items)] = sdes_items(packets[1][2], 1)
        assert ssrc == SSRC and [kind for kind, _ in items] == [1]
    assert rtp == [RTP + A_URI]  # RTP is never read: it crosses as it came
    assert stats["rtcp"] == 2 and stats["rtcp_rewritten"] == 2


@pytest.mark.parametrize("proto", ["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF"])
def test_srtcp_is_relayed_untouched(proto: str) -> None:
    """An encrypted stream's RTCP (SRTCP) cannot be read and must not be changed: even a
    packet that looks like plain SDES crosses as it came."""
    rtcp, _, stats = asyncio.run(_rtcp_received(proto, mux=False))
    assert len(rtcp) == 2 and all(A_URI in packet for packet in rtcp)
    assert stats["rtcp_rewritten"] == 0


async def _per_call_counts() -> list[tuple[int, int, int, int] | None]:
    """Two calls, one after the other, on the same two port pairs (the range holds two): each
    call's counts are its own, per direction."""
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (41000, 41003), loop)
    a, b = endpoint(A_HOST), endpoint(B_HOST)
    found: list[tuple[int, int, int, int] | None] = [relay.counts("none")]
    for call, (from_a, from_b) in (("c1", (3, 1)), ("c2", (1, 2))):
        to_b = relay.rewrite(call, "a", offer(A_HOST, a.getsockname()[1]), "127.0.0.1", A_HOST,
                             0.0)  # fmt: skip
        to_a = relay.rewrite(call, "b", offer(B_HOST, b.getsockname()[1]), "127.0.0.1", B_HOST,
                             0.0)  # fmt: skip
        for _ in range(from_a):
            a.sendto(b"x" * 160, ("127.0.0.1", relay_port(to_a)))
        for _ in range(from_b):
            b.sendto(b"y" * 100, ("127.0.0.1", relay_port(to_b)))
        await asyncio.sleep(0.05)
        found.append(relay.counts(call))
        relay.release(call)
    for s in (a, b):
        s.close()
    relay.close()
    await asyncio.sleep(0)
    return found


def test_a_calls_counts_are_its_own_per_direction_on_reused_ports() -> None:
    assert asyncio.run(_per_call_counts()) == [None, (3, 480, 1, 100), (1, 160, 2, 200)]
