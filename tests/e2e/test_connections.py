"""Strangers' TCP and TLS connections against a running node: what they hold, for how long, and
that the node's peers and calls do not notice.

The attacker opens many connections from an address that is no peer's (127.0.0.66 and its
neighbours), each sending the start of an OPTIONS and then nothing. What is checked is what a
user sees: each connection closed by the node, the node's descriptors (``/proc/<pid>/fd``)
bounded, the source banned when it opens connections as fast as a flood, and a call from the
operator to the PBX over TCP, placed with SIPp, still completed.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from network import wait_for
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX = "127.0.0.2", "127.0.0.3"
CALLED = "+33123456789"  # a DID of the PBX in basic_config
STRANGER = "127.0.0.66"
PARTIAL = (b"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n"
           b"Via: SIP/2.0/TCP 127.0.0.66:5060;branch=z9hG4bK776asdhds\r\n"
           b"Max-Forwards: 70\r\n")  # fmt: skip
REGISTERED_PBX = {"role": "pbx", "hosts": "registered", "match": {"username": "remote1"},
                  "password": "secret", "dids": ["+33140000500"]}  # fmt: skip


class Attack:
    """Connections from strangers' addresses, each sent ``PARTIAL``; every socket closed at
    the end of the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[tuple[str, socket.socket]] = []

    def open(self, source: str, count: int, payload: bytes = PARTIAL) -> list[socket.socket]:
        made = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.bind((source, 0))
            try:
                sock.connect(("127.0.0.1", self.port))
                if payload:
                    sock.sendall(payload)
            except OSError:  # reset by the node at once: closed, as it should
                pass
            sock.setblocking(False)
            self.socks.append((source, sock))
            made.append(sock)
        return made

    def held(self, source: str | None = None) -> int:
        """Connections the node has not closed (from ``source``, or from any)."""
        return sum(1 for src, s in self.socks if source in (None, src) and not closed(s))

    def close(self) -> None:
        for _, sock in self.socks:
            sock.close()


def closed(sock: socket.socket) -> bool:
    """True when the node closed the connection (end of stream or reset)."""
    if sock.fileno() < 0:
        return True
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        return True
    if data == b"":
        sock.close()
        return True
    return False


@pytest.fixture
def sbc(sbc_factory: Callable[..., Pkiss]) -> Iterator[Callable[..., Pkiss]]:
    """``sbc_factory``, and whatever the attack, the node logs no exception."""
    started: list[Pkiss] = []

    def make(config: dict[str, Any]) -> Pkiss:
        started.append(sbc_factory(config))
        return started[-1]

    yield make
    for node in started:
        assert "Traceback" not in node.log(), node.log()[-3000:]


@pytest.fixture
def attack() -> Iterator[Callable[[int], Attack]]:
    made: list[Attack] = []

    def make(port: int) -> Attack:
        made.append(Attack(port))
        return made[-1]

    yield make
    for one in made:
        one.close()


def descriptors(node: Pkiss) -> int:
    assert node.proc is not None
    return len(os.listdir(f"/proc/{node.proc.pid}/fd"))


def metric(node: Pkiss, name: str, **labels: str) -> float:
    """One value of /metrics (0 when the series is absent)."""
    url = f"http://{node.config['admin']['listen']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{want}}}" if want else name
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def config(sbc_port: int, op_port: int, pbx_port: int, registered: bool = False,
           **security: Any) -> dict[str, Any]:  # fmt: skip
    """The PBX is reached over TCP; the operator may call in over UDP or TCP; with
    ``registered`` a PBX may register from anywhere, so strangers' connections are let in."""
    cfg = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port, pbx_transport="tcp")
    if registered:
        cfg["peers"]["remote-pbx"] = REGISTERED_PBX
    cfg["security"] = {"never_ban": [], **security}
    return cfg


class Call:
    """One call from the operator (SIPp UAC over ``transport``) to the PBX (SIPp UAS over TCP)."""

    def __init__(self, make: Callable[..., Sipp], sbc_port: int, op_port: int,
                 pbx_port: int) -> None:  # fmt: skip
        self.make, self.sbc_port, self.op_port, self.pbx_port = make, sbc_port, op_port, pbx_port

    def place(self, transport: str = "u1") -> None:
        pbx = self.make("uas_basic", local_ip=PBX, local_port=self.pbx_port, calls=1,
                        transport="t1").start()  # fmt: skip
        operator = self.make("uac_basic", local_ip=OPERATOR, local_port=self.op_port,
                             remote=("127.0.0.1", self.sbc_port), service=CALLED, calls=1,
                             transport=transport).start()  # fmt: skip
        assert operator.check()["SuccessfulCall(C)"] == 1
        pbx.check()


@pytest.fixture
def ports() -> tuple[int, int, int]:
    return free_port(), free_port(OPERATOR), free_port(PBX)


def test_with_no_peer_allowed_from_anywhere_strangers_connections_are_closed_at_accept(
    sipp_factory: Callable[..., Sipp], sbc: Callable[..., Pkiss],
    attack: Callable[[int], Attack], ports: tuple[int, int, int],
) -> None:  # fmt: skip
    sbc_port, op_port, pbx_port = ports
    node = sbc(config(sbc_port, op_port, pbx_port))
    before = descriptors(node)
    strangers = attack(sbc_port)
    strangers.open(STRANGER, 1000)
    during = descriptors(node)
    assert wait_for(lambda: strangers.held() == 0, 20), f"{strangers.held()} connections held"
    assert during <= before + 16, (before, during)
    assert f"banned {STRANGER}" in node.log()  # a thousand connections at once: a flood
    assert metric(node, "pkiss_connections_closed_total", reason="stranger") > 0
    assert metric(node, "pkiss_inbound_connections", source="stranger") == 0
    Call(sipp_factory, sbc_port, op_port, pbx_port).place("t1")  # the operator, over TCP
    assert descriptors(node) <= before + 16


def test_with_a_registered_pbx_strangers_are_capped_and_a_peer_always_gets_in(
    sipp_factory: Callable[..., Sipp], sbc: Callable[..., Pkiss],
    attack: Callable[[int], Attack], ports: tuple[int, int, int],
) -> None:  # fmt: skip
    sbc_port, op_port, pbx_port = ports
    node = sbc(config(sbc_port, op_port, pbx_port, registered=True,
                              flood={"max": 100_000},
                              connections={"max": 40, "per_source": 8,
                                           "first_message": 60}))  # fmt: skip
    before = descriptors(node)
    strangers = attack(sbc_port)
    sources = [f"127.0.0.{66 + i}" for i in range(8)]
    for source in sources:
        strangers.open(source, 12)
    time.sleep(1)  # the node has judged every one of them well before
    assert all(strangers.held(source) <= 8 for source in sources)
    assert strangers.held() == 40
    assert descriptors(node) <= before + 40 + 8
    assert metric(node, "pkiss_inbound_connections", source="stranger") == 40
    Call(sipp_factory, sbc_port, op_port, pbx_port).place("t1")  # in over TCP at the cap
    assert metric(node, "pkiss_connections_closed_total", reason="evicted") >= 1
    assert strangers.held() == 39  # the newest stranger's made room for the operator's
    per_source = metric(node, "pkiss_connections_closed_total", reason="per_source")
    over = metric(node, "pkiss_connections_closed_total", reason="max")
    assert per_source > 0 and over > 0 and per_source + over == 8 * 12 - 40


def test_connections_that_say_nothing_are_closed_after_the_first_message_and_idle_deadlines(
    sbc: Callable[..., Pkiss], attack: Callable[[int], Attack],
    ports: tuple[int, int, int],
) -> None:  # fmt: skip
    sbc_port, op_port, pbx_port = ports
    node = sbc(config(sbc_port, op_port, pbx_port, registered=True,
                              connections={"first_message": 2, "idle": 3}))  # fmt: skip
    strangers = attack(sbc_port)
    slow = strangers.open(STRANGER, 4)  # the start of a message, never its end
    mute = strangers.open("127.0.0.67", 2, payload=b"")
    whole = PARTIAL + b"Content-Length: 0\r\n\r\n"
    idle = strangers.open("127.0.0.68", 2, payload=whole)  # one message, then silence
    assert wait_for(lambda: strangers.held() == 0, 20), f"{strangers.held()} connections held"
    assert all(closed(s) for s in slow + mute + idle)
    assert metric(node, "pkiss_connections_closed_total", reason="first_message") == 6
    assert metric(node, "pkiss_connections_closed_total", reason="idle") == 2
    assert "closing tcp" in node.log() and "first message" in node.log()


def test_a_source_opening_connections_as_fast_as_a_flood_is_banned_and_cut_off(
    sipp_factory: Callable[..., Sipp], sbc: Callable[..., Pkiss],
    attack: Callable[[int], Attack], ports: tuple[int, int, int],
) -> None:  # fmt: skip
    sbc_port, op_port, pbx_port = ports
    node = sbc(config(sbc_port, op_port, pbx_port, registered=True,
                              flood={"window": 10, "max": 20},
                              connections={"per_source": 8, "first_message": 120}))  # fmt: skip
    strangers = attack(sbc_port)
    first = strangers.open(STRANGER, 8)
    time.sleep(0.5)
    assert strangers.held(STRANGER) == 8  # held, as long as the source is not a flood
    strangers.open(STRANGER, 20)
    assert wait_for(lambda: strangers.held() == 0, 10), f"{strangers.held()} connections held"
    assert all(closed(s) for s in first)  # closed by the ban, long before their deadline
    assert f"banned {STRANGER} for 600 s: more than 20 messages" in node.log()
    assert metric(node, "pkiss_connections_closed_total", reason="banned") >= 8
    later = strangers.open(STRANGER, 3)
    assert wait_for(lambda: all(closed(s) for s in later), 10)
    Call(sipp_factory, sbc_port, op_port, pbx_port).place()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=sbc.test"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return crt, key


@pytest.mark.parametrize("registered", [False, True], ids=["no-registered-pbx", "registered-pbx"])
def test_a_tls_connection_that_never_completes_its_handshake_is_closed(
    sbc: Callable[..., Pkiss], attack: Callable[[int], Attack],
    ports: tuple[int, int, int], cert: tuple[Path, Path], registered: bool,
) -> None:  # fmt: skip
    sbc_port, op_port, pbx_port = ports
    tls_port = free_port()
    cfg = config(sbc_port, op_port, pbx_port, registered=registered,
                 connections={"tls_handshake": 2, "first_message": 60})  # fmt: skip
    cfg["sbc"]["listen"].append(f"tls:127.0.0.1:{tls_port}")
    cfg["sbc"]["tls"] = {"cert": str(cert[0]), "key": str(cert[1])}
    node = sbc(cfg)
    strangers = attack(tls_port)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # a ClientHello's first bytes
    stuck = strangers.open(STRANGER, 3, payload=hello) + strangers.open("127.0.0.67", 2, b"")
    assert wait_for(lambda: all(closed(s) for s in stuck), 20)
    reason = "tls_handshake" if registered else "stranger"
    assert metric(node, "pkiss_connections_closed_total", reason=reason) == 5


def test_the_descriptor_limit_bounds_what_strangers_hold_and_running_out_is_survived(
    sipp_factory: Callable[..., Sipp], sbc: Callable[..., Pkiss],
    attack: Callable[[int], Attack], ports: tuple[int, int, int],
) -> None:  # fmt: skip
    """The node runs under a low descriptor limit (set with prlimit, as ``LimitNOFILE`` of a
    service would): strangers get what the limit leaves once the node's own needs are kept,
    calls go on; and when the descriptors do run out all the same, ``accept`` failing is told
    once, the node does not spin, and takes connections again once descriptors are freed."""
    sbc_port, op_port, pbx_port = ports
    node = sbc(config(sbc_port, op_port, pbx_port, registered=True,
                              flood={"max": 100_000},
                              connections={"first_message": 120}))  # fmt: skip
    assert node.proc is not None
    pid, limit = node.proc.pid, 240
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    time.sleep(1.5)  # the node reads its limit again at most every second
    strangers = attack(sbc_port)
    for i in range(12):
        strangers.open(f"127.0.0.{66 + i}", 32)
    time.sleep(1)
    held = strangers.held()
    assert 0 < held < limit - 64, held
    assert limit - descriptors(node) >= 40  # left for what the node needs: calls go on
    assert f"descriptor limit {limit}" in node.log()
    Call(sipp_factory, sbc_port, op_port, pbx_port).place("t1")
    assert metric(node, "pkiss_connections_closed_total", reason="max") > 0
    assert metric(node, "pkiss_inbound_connections_max") == held

    # descriptors run out all the same (here: the limit lowered under what is open)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (descriptors(node), limit))
    cpu = _cpu_seconds(pid)
    knocks = []
    for _ in range(6):  # a peer knocking for 3 s
        knocks.append(socket.create_connection(("127.0.0.1", sbc_port), timeout=5,
                                               source_address=(OPERATOR, 0)))  # fmt: skip
        time.sleep(0.5)
    spent = _cpu_seconds(pid) - cpu
    assert node.alive()
    told = node.log().count("listener cannot accept")
    assert told == 1, node.log()[-3000:]
    assert "Too many open files" in node.log()
    assert spent < 1.5, f"{spent:.2f} s of CPU in 3 s: the accept loop spins"
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    assert wait_for(lambda: "accepting connections again" in node.log(), 10)
    for sock in knocks:
        sock.close()
    Call(sipp_factory, sbc_port, op_port, pbx_port).place("t1")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
