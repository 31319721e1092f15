"""The built-in relay with real sockets on loopback: what one side sends reaches the other,
through the ports the rewritten SDP names; strangers are ignored; ports are freed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pkiss.media import BuiltinRelay, MediaError
from pkiss.sdp import parse_sdp

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
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop.add_reader, loop.remove_reader,
                         loop.time)  # fmt: skip
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


async def _exchange() -> tuple[BuiltinRelay, dict[str, int]]:
    loop = asyncio.get_running_loop()
    relay = BuiltinRelay("127.0.0.1", (40000, 40999), loop.add_reader, loop.remove_reader,
                         loop.time)  # fmt: skip
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
    return relay, {"a": port_for_a, "b": port_for_b}


def test_media_flows_both_ways_and_strangers_are_ignored() -> None:
    relay, ports = asyncio.run(_exchange())
    assert relay.stats["packets"] == 2 and relay.stats["ignored"] == 1
    assert relay.idle(1.0, 60.0) == []
    relay.release("call1")
    assert relay.calls == {}
    relay.close()
    for port in ports.values():  # closed: they can be bound again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))


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
