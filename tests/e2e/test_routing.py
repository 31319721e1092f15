"""Where calls go, end to end with real SIPp peers, each on its own loopback address:

- balance: a PBX with two hosts shares calls by weight (1:1, then 3:1);
- geography: two PBXs, each reached only for its own DIDs;
- several operators: inbound from either, outbound by longest prefix with a `via` list tried
  in order (503 or silence moves on to the next operator, 486 is the callee's answer);
- SIGHUP reloads the config twice while calls keep flowing, and none is lost.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import yaml
from network import CALLED, CALLER, Network, received
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR_A = "127.0.0.2"
PBX = "127.0.0.3"
PBX_2 = "127.0.0.4"
OPERATOR_B = "127.0.0.5"
PARIS = "+33112345678"
LYON = "+33471234567"
UK = "+442079460000"
FRANCE = "+33612345678"

NetworkFactory = Callable[..., Network]


def invite_answers(peer: Sipp) -> dict[str, set[int]]:
    """For each Call-ID, the final statuses the SIPp received for its INVITE."""
    answers: dict[str, set[int]] = {}
    for chunk in re.split(r"-{20,}[^\n]*\n", peer.messages()):
        if "message received" not in chunk:
            continue
        text = chunk.split(":\n", 1)[-1].lstrip()
        status = re.match(r"SIP/2\.0 (\d{3}) ", text)
        if status is None or int(status.group(1)) < 200:
            continue
        if not re.search(r"^CSeq:\s*\d+\s+INVITE\s*$", text, re.M | re.I):
            continue
        call_id = re.search(r"^Call-ID:\s*(\S+)", text, re.M | re.I)
        answers.setdefault(call_id.group(1) if call_id else "", set()).add(int(status.group(1)))
    return answers


# ---------------------------------------------------------------------------- balance


@pytest.mark.parametrize(("weights", "share"), [((1, 1), 0.5), ((3, 1), 0.75)], ids=["1-1", "3-1"])
def test_balance_shares_calls_by_weight(
    network: NetworkFactory, weights: tuple[int, int], share: float
) -> None:
    calls = 200
    net = network(OPERATOR_A, PBX, PBX_2)
    config = net.basic_config(carrier=OPERATOR_A, pbx=PBX)
    config["peers"]["pbx"].update(
        hosts=[
            {"address": f"{ip}:{net.ports[ip]}", "weight": weight}
            for ip, weight in zip((PBX, PBX_2), weights, strict=True)
        ],
        strategy="balance",
        match={"source": [PBX, PBX_2]},
    )
    net.start(config)
    hosts = [net.uas(ip, timeout=30) for ip in (PBX, PBX_2)]
    uac = net.uac(OPERATOR_A, CALLED, calls=calls, rate=50, pause_ms=50, timeout=25)
    stats = uac.check()
    assert stats["SuccessfulCall(C)"] == calls
    counts = []
    for host in hosts:
        host.stop()
        host_stats = host.stats()
        assert host_stats["FailedCall(C)"] == 0, host.errors()[-3000:]
        assert len(received(host, "INVITE")) == host_stats["SuccessfulCall(C)"]
        counts.append(host_stats["SuccessfulCall(C)"])
    assert sum(counts) == calls
    assert abs(counts[0] / calls - share) <= 0.10, counts


# ---------------------------------------------------------------------------- geography


def test_each_pbx_gets_only_the_calls_to_its_own_dids(network: NetworkFactory) -> None:
    net = network(OPERATOR_A, PBX, PBX_2)
    config = net.basic_config(carrier=OPERATOR_A, pbx=PBX)
    del config["peers"]["pbx"]
    for name, ip, dids in (("pbx-paris", PBX, ["+3311*"]), ("pbx-lyon", PBX_2, ["+3347*"])):
        config["peers"][name] = {
            "role": "pbx",
            "hosts": [f"{ip}:{net.ports[ip]}"],
            "match": {"source": [ip]},
            "health": False,
            "dids": dids,
        }
    net.start(config)
    paris, lyon = (net.uas(ip, timeout=20) for ip in (PBX, PBX_2))
    for number in (PARIS, LYON):
        uac = net.uac(OPERATOR_A, number, calls=3, rate=20, pause_ms=50, timeout=10)
        assert uac.check()["SuccessfulCall(C)"] == 3
    paris.stop()
    lyon.stop()
    assert len(received(paris, "INVITE")) == 3
    assert len(received(lyon, "INVITE")) == 3
    assert f"INVITE sip:{PARIS}@" in paris.messages()
    assert LYON not in paris.messages()
    assert f"INVITE sip:{LYON}@" in lyon.messages()
    assert PARIS not in lyon.messages()
    for pbx in (paris, lyon):
        assert pbx.stats()["SuccessfulCall(C)"] == 3
        assert pbx.stats()["FailedCall(C)"] == 0


# ---------------------------------------------------------------------------- operators


class Operators:
    """Two carriers (A on 127.0.0.2, B on 127.0.0.5, setup_timeout 1 s) and one PBX: +44 via
    B then A, anything else via A."""

    def __init__(self, network: NetworkFactory) -> None:
        self.net = network(OPERATOR_A, OPERATOR_B, PBX)
        self.ports = self.net.ports
        config = self.net.basic_config(carrier=OPERATOR_A, pbx=PBX)
        peers = config["peers"]
        peers["operator-a"] = peers.pop("operator")
        peers["operator-b"] = {
            "role": "carrier",
            "hosts": [f"{OPERATOR_B}:{self.ports[OPERATOR_B]}"],
            "match": {"source": [OPERATOR_B]},
            "health": False,
            "setup_timeout": 1,
        }
        config["routes"] = [
            {"prefix": "+44", "via": ["operator-b", "operator-a"]},
            {"prefix": "", "via": ["operator-a"]},
        ]
        self.sbc = self.net.start(config)

    def uas(self, ip: str, scenario: str = "uas_basic") -> Sipp:
        """A callee that runs until stopped (calls=None)."""
        return self.net.uas(ip, scenario, timeout=20)

    def uac(self, ip: str, service: str, calls: int, scenario: str = "uac_basic") -> Sipp:
        return self.net.uac(
            ip, service, calls, scenario, caller=CALLER if ip != PBX else CALLED, rate=10,
            pause_ms=50, timeout=15,
        )  # fmt: skip


@pytest.fixture
def ops(network: NetworkFactory) -> Operators:
    return Operators(network)


@pytest.fixture
def silent_b() -> Iterator[socket.socket]:
    """Operator B bound but never answering: datagrams pile up unread in the socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        yield sock


def _stopped_clean(peer: Sipp, calls: int) -> None:
    peer.stop()
    stats = peer.stats()
    assert stats["SuccessfulCall(C)"] == calls, peer.errors()[-3000:]
    assert stats["FailedCall(C)"] == 0, peer.errors()[-3000:]


def test_inbound_from_either_operator_reaches_the_pbx(ops: Operators) -> None:
    pbx = ops.uas(PBX)
    for ip in (OPERATOR_A, OPERATOR_B):
        uac = ops.uac(ip, CALLED, calls=2)
        assert uac.check()["SuccessfulCall(C)"] == 2
    _stopped_clean(pbx, 4)
    assert len(received(pbx, "INVITE")) == 4


def test_outbound_by_longest_prefix(ops: Operators) -> None:
    a = ops.uas(OPERATOR_A)
    b = ops.uas(OPERATOR_B)
    assert ops.uac(PBX, UK, calls=2).check()["SuccessfulCall(C)"] == 2
    assert ops.uac(PBX, FRANCE, calls=2).check()["SuccessfulCall(C)"] == 2
    _stopped_clean(a, 2)
    _stopped_clean(b, 2)
    assert f"INVITE sip:{UK}@" in b.messages() and UK not in a.messages()
    assert f"INVITE sip:{FRANCE}@" in a.messages() and FRANCE not in b.messages()


def test_503_from_first_operator_completes_through_the_next(ops: Operators) -> None:
    a = ops.uas(OPERATOR_A)
    b = ops.uas(OPERATOR_B, "uas_503")
    caller = ops.uac(PBX, UK, calls=2)
    assert caller.check()["SuccessfulCall(C)"] == 2
    answers = invite_answers(caller)
    assert len(answers) == 2 and all(s == {200} for s in answers.values()), answers
    assert "SIP/2.0 503" not in caller.messages()
    _stopped_clean(b, 2)  # got its ACK for the 503
    _stopped_clean(a, 2)
    assert len(received(a, "INVITE")) == 2
    assert ops.sbc.log().count("503 from operator-b, trying next") == 2


def test_silent_first_operator_is_left_after_setup_timeout(
    ops: Operators, silent_b: socket.socket
) -> None:
    silent_b.bind((OPERATOR_B, ops.ports[OPERATOR_B]))
    a = ops.uas(OPERATOR_A)
    started = time.monotonic()
    caller = ops.uac(PBX, UK, calls=2)
    assert caller.check()["SuccessfulCall(C)"] == 2
    assert time.monotonic() - started >= 1.0  # each waited for B's setup_timeout
    answers = invite_answers(caller)
    assert len(answers) == 2 and all(s == {200} for s in answers.values()), answers
    _stopped_clean(a, 2)
    assert ops.sbc.log().count("no answer from operator-b, trying next") == 2
    silent_b.setblocking(False)
    got = b""
    try:
        while True:
            got += silent_b.recv(65535)
    except BlockingIOError:
        pass
    assert f"INVITE sip:{UK}@".encode() in got  # B was really asked first


def test_busy_from_first_operator_is_the_callee_answer(ops: Operators) -> None:
    a = ops.uas(OPERATOR_A)
    b = ops.uas(OPERATOR_B, "uas_busy")
    caller = ops.uac(PBX, UK, calls=2, scenario="uac_busy")
    assert caller.check()["SuccessfulCall(C)"] == 2
    answers = invite_answers(caller)
    assert len(answers) == 2 and all(s == {486} for s in answers.values()), answers
    _stopped_clean(b, 2)
    a.stop()
    assert "message received" not in a.messages()


# ---------------------------------------------------------------------------- reload


def test_sighup_reloads_twice_under_load_without_losing_a_call(network: NetworkFactory) -> None:
    calls = 300
    net = network(OPERATOR_A, PBX)
    config = net.basic_config(carrier=OPERATOR_A, pbx=PBX)
    sbc = net.start(config)
    pbx = net.uas(PBX, calls=calls, timeout=30)
    uac = net.uac(OPERATOR_A, CALLED, calls=calls, rate=50, pause_ms=1000, timeout=30)
    for extra in ("+33555000111", "+33555000222"):
        time.sleep(2)
        assert uac.running(), "the load ended before the reload"
        config["peers"]["pbx"]["dids"].append(extra)
        sbc.path.write_text(yaml.safe_dump(config, sort_keys=False))
        sbc.signal(signal.SIGHUP)
    stats = uac.check()
    assert stats["SuccessfulCall(C)"] == calls
    assert stats["FailedCall(C)"] == 0
    assert pbx.check()["SuccessfulCall(C)"] == calls
    assert sbc.log().count("config reloaded") == 2, sbc.log()[-3000:]
    assert sbc.alive()
    # the reloaded config is the one in force: the DID added last now reaches the PBX
    pbx = net.uas(PBX, calls=1)
    uac = net.uac(OPERATOR_A, "+33555000222", calls=1, timeout=10)
    uac.check()
    pbx.check()
