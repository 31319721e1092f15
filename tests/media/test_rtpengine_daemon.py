"""rtpengine as the engine, with the real daemon (Debian's rtpengine-daemon, user space): the
SDP it returns reaches the other side scrubbed of the sender, and its ``strict-source`` flag
keeps a stranger out once it has learned where a side's media comes from."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkiss.media import RtpEngine
from pkiss.sdp import parse_sdp

BARESIP = Path(__file__).parents[1] / "sdp" / "fixtures" / "baresip-1.0.0.sdp"
PORTS = (47000, 47099)
RTP = bytes([0x80, 0x00, 0x00, 0x01]) + bytes(8) + b"\xd5" * 160  # PCMU, one 20 ms frame


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def engine() -> Iterator[tuple[RtpEngine, Path]]:
    if shutil.which("rtpengine") is None:
        pytest.skip("rtpengine is not on PATH (package rtpengine-daemon)")
    workdir = Path(tempfile.mkdtemp(prefix="pkiss-rtpengine-"))
    log_path = workdir / "rtpengine.log"
    ng = free_udp_port()
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--foreground", "--table=-1",
             "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng}",
             f"--port-min={PORTS[0]}", f"--port-max={PORTS[1]}", "--log-stderr",
             "--log-level=6"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    client = RtpEngine("127.0.0.1", ng, timeout=0.2)
    try:
        deadline = time.monotonic() + 5
        while not client.ping():
            assert daemon.poll() is None and time.monotonic() < deadline, log_path.read_text()
            client._down_until = 0.0  # asked again at once while it starts
        yield client, log_path
    finally:
        client._sock.close()
        daemon.terminate()
        daemon.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def endpoint(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.3)
    return sock


def heard(sock: socket.socket) -> bool:
    try:
        sock.recvfrom(2048)
    except TimeoutError:
        return False
    return True


def test_a_stranger_is_dropped_once_rtpengine_has_learned_the_source(
    engine: tuple[RtpEngine, Path],
) -> None:
    client, log_path = engine
    # A is baresip: its SDP names 127.0.6.1, its RTP comes from 127.0.0.12
    a, b, stranger = endpoint("127.0.0.12"), endpoint("127.0.0.3"), endpoint("127.0.0.9")
    to_b = client.rewrite("k1", "a", BARESIP.read_bytes(), "127.0.0.1", "127.0.6.1", 0.0)
    text = to_b.decode()
    for secret in ("baresip", "+33987650001", "127.0.6.1"):
        assert secret not in text
    b_offer = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
               f"m=audio {b.getsockname()[1]} RTP/AVP 0\r\n").encode()  # fmt: skip
    to_a = client.rewrite("k1", "b", b_offer, "127.0.0.1", "127.0.0.3", 0.0, "answer")
    port_for_a = parse_sdp(to_a).media[0].port
    port_for_b = parse_sdp(to_b).media[0].port
    assert PORTS[0] <= port_for_a <= PORTS[1]
    # A talks past rtpengine's learning delay (3 s): B hears it all along
    start = time.monotonic()
    while time.monotonic() - start < 4.5:
        a.sendto(RTP, ("127.0.0.1", port_for_a))
        assert heard(b)
        time.sleep(0.2)
    b.sendto(RTP, ("127.0.0.1", port_for_b))
    assert heard(a)  # learned: B's media goes where A's comes from, not to its SDP
    stranger.sendto(RTP, ("127.0.0.1", port_for_a))
    assert not heard(b)
    a.sendto(RTP, ("127.0.0.1", port_for_a))
    assert heard(b)
    assert "Drop due to strict-source" in log_path.read_text()
    client.release("k1")
    for s in (a, b, stranger):
        s.close()
