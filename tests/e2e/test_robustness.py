"""Bad input never crashes or stalls the SBC: the PROTOS c07-sip cases, the RFC 4475 invalid
messages and random bytes are sent to a running node, which must answer malformed requests
with 400 (with a reason), drop what cannot be answered, and keep answering calls afterwards."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss
from sipp import Sipp, sipp_available
from test_calls import OPERATOR, Net

from protos_cases import corpus_dir, load_protos

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

CORPUS = corpus_dir()
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "rfc4475").is_dir(),
    reason=f"test corpus not found at {CORPUS} (set PKISS_CORPUS)",
)


def _operator_socket(net: Net) -> socket.socket:
    """A UDP socket on the operator's own address and port: the SBC knows this source."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((OPERATOR, net.operator_port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return sock


def _drain(sock: socket.socket, wait: float) -> list[bytes]:
    out = []
    sock.settimeout(wait)
    try:
        while True:
            out.append(sock.recv(65535))
    except TimeoutError:
        return out


def _calls_still_work(net: Net) -> None:
    pbx = net.pbx("uas_basic", calls=2)
    operator = net.operator("uac_basic", calls=2)
    operator.check()
    pbx.check()
    assert net.sbc.alive()


@pytest.fixture
def net(sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]) -> Net:
    return Net(sipp_factory, sbc_factory)


@needs_corpus
def test_protos_cases_over_udp_leave_the_sbc_answering_calls(net: Net) -> None:
    cases = load_protos(
        to=f"+4999@127.0.0.1:{net.sbc_port}", from_="user@127.0.0.2", from_ip=OPERATOR,
        local_port=net.operator_port,
    )  # fmt: skip
    # a few cases are larger than any UDP datagram can be: they cannot be sent this way
    sendable = [c for c in cases if len(c.invite) < 65000 and len(c.teardown) < 65000]
    assert len(sendable) > 4400
    answers: list[bytes] = []
    with _operator_socket(net) as sock:
        for i, case in enumerate(sendable):
            sock.sendto(case.invite, ("127.0.0.1", net.sbc_port))
            sock.sendto(case.teardown, ("127.0.0.1", net.sbc_port))
            if i % 50 == 49:  # bounded bursts: the kernel buffers stay far from full
                answers += _drain(sock, 0.01)
        answers += _drain(sock, 1.0)
    assert net.sbc.alive()
    statuses = [a.split(b" ", 2)[1] for a in answers if a.startswith(b"SIP/2.0 ")]
    assert len(statuses) > len(sendable) // 2, "most cases get an answer (400, or 404: no such DID)"
    assert statuses.count(b"400") > 100
    _calls_still_work(net)


_INVALID_REQUESTS = {
    "badinv01.dat": 400, "clerr.dat": 400, "ncl.dat": 400, "scalar02.dat": 400,
    "quotbal.dat": 400, "ltgtruri.dat": 400, "lwsruri.dat": 400, "lwsstart.dat": 400,
    "trws.dat": 400, "escruri.dat": 400, "regbadct.dat": 400, "badaspec.dat": 400,
    "badvers.dat": 505, "mismatch01.dat": 400, "mismatch02.dat": 400, "mcl01.dat": 400,
}  # fmt: skip


@needs_corpus
@pytest.mark.parametrize(("name", "status"), sorted(_INVALID_REQUESTS.items()))
def test_malformed_request_gets_an_error_with_a_reason(net: Net, name: str, status: int) -> None:
    data = (CORPUS / "rfc4475" / name).read_bytes()
    with _operator_socket(net) as sock:
        sock.sendto(data, ("127.0.0.1", net.sbc_port))
        answers = _drain(sock, 1.0)
    assert answers, f"no answer to {name}"
    status_line = answers[0].split(b"\r\n", 1)[0].decode()
    assert status_line.startswith(f"SIP/2.0 {status} "), status_line
    assert "(" in status_line, f"the reason phrase says what is wrong: {status_line}"
    assert net.sbc.alive()


@needs_corpus
@pytest.mark.parametrize("name", ["scalarlg.dat", "bigcode.dat"])
def test_malformed_responses_are_dropped(net: Net, name: str) -> None:
    with _operator_socket(net) as sock:
        sock.sendto((CORPUS / "rfc4475" / name).read_bytes(), ("127.0.0.1", net.sbc_port))
        assert _drain(sock, 0.5) == []
    assert net.sbc.alive()


def test_garbage_bytes_over_udp_and_tcp(net: Net) -> None:
    rng = random.Random(4475)
    with _operator_socket(net) as sock:
        for _ in range(2000):
            sock.sendto(os.urandom(rng.randint(1, 1400)), ("127.0.0.1", net.sbc_port))
        sock.sendto(
            b"INVITE sip:x@y SIP/2.0\r\n" + b"X: y\r\n" * 10000, ("127.0.0.1", net.sbc_port)
        )
        _drain(sock, 0.3)
    # A stream that never ends its header section is cut off at the size guard, not buffered.
    with socket.create_connection(("127.0.0.1", net.sbc_port), timeout=5) as conn:
        conn.settimeout(5)
        deadline = time.monotonic() + 5
        closed = False
        try:
            while time.monotonic() < deadline:
                conn.sendall(b"X-Junk: " + b"a" * 1000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        assert closed, "the SBC keeps reading an endless header section"
    assert net.sbc.alive()
    _calls_still_work(net)


def test_sbc_exits_cleanly_on_sigterm(net: Net) -> None:
    assert net.sbc.stop() == 0
    assert "stopped" in net.sbc.log()
    assert "Traceback" not in net.sbc.log()


def test_unknown_sources_can_be_refused_with_403(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    def reject(config: dict[str, Any]) -> None:
        config["security"] = {"unknown_sources": "reject"}

    net = Net(sipp_factory, sbc_factory, patch=reject)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.66", 0))
        sock.settimeout(1.0)
        port = sock.getsockname()[1]
        sock.sendto(
            (
                f"OPTIONS sip:127.0.0.1:{net.sbc_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.66:{port};branch=z9hG4bK-stranger\r\n"
                "From: <sip:x@127.0.0.66>;tag=s\r\nTo: <sip:127.0.0.1>\r\nCall-ID: s1\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", net.sbc_port),
        )
        assert sock.recv(65535).startswith(b"SIP/2.0 403 ")
