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
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR_A = "127.0.0.2"
PBX = "127.0.0.3"
PBX_2 = "127.0.0.4"
OPERATOR_B = "127.0.0.5"
CALLED = "+33123456789"  # a DID of the PBX in basic_config
CALLER = "+33987654321"
PARIS = "+33112345678"
LYON = "+33471234567"
UK = "+442079460000"
FRANCE = "+33612345678"

Factory = Callable[..., Sipp]
SbcFactory = Callable[..., Pkiss]


def received(peer: Sipp, method: str) -> int:
    """How many distinct ``method`` requests (Call-ID + CSeq) the SIPp received."""
    seen: set[tuple[str, str]] = set()
    for chunk in re.split(r"-{20,}[^\n]*\n", peer.messages()):
        if "message received" not in chunk:
            continue
        text = chunk.split(":\n", 1)[-1].lstrip()
        if not text.startswith(f"{method} "):
            continue
        call_id = re.search(r"^Call-ID:\s*(\S+)", text, re.M | re.I)
        cseq = re.search(r"^CSeq:\s*(.+?)\s*$", text, re.M | re.I)
        seen.add((call_id.group(1) if call_id else "", cseq.group(1) if cseq else ""))
    return len(seen)


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
    sipp_factory: Factory, sbc_factory: SbcFactory, weights: tuple[int, int], share: float
) -> None:
    calls = 200
    sbc_port = free_port()
    operator_port = free_port(OPERATOR_A)
    ports = {PBX: free_port(PBX), PBX_2: free_port(PBX_2)}
    config = basic_config(sbc_port, carrier_port=operator_port)
    config["peers"]["pbx"].update(
        hosts=[
            {"address": f"{ip}:{ports[ip]}", "weight": weight}
            for ip, weight in zip((PBX, PBX_2), weights, strict=True)
        ],
        strategy="balance",
        match={"source": [PBX, PBX_2]},
    )
    sbc_factory(config)
    hosts = [
        sipp_factory(
            "uas_basic", local_ip=ip, local_port=ports[ip], calls=None, timeout=30,
            name=f"pbx-{ip}",
        ).start()
        for ip in (PBX, PBX_2)
    ]  # fmt: skip
    uac = sipp_factory(
        "uac_basic", local_ip=OPERATOR_A, local_port=operator_port,
        remote=("127.0.0.1", sbc_port), service=CALLED, caller=CALLER, calls=calls, rate=50,
        pause_ms=50, timeout=25,
    ).start()  # fmt: skip
    stats = uac.check()
    assert stats["SuccessfulCall(C)"] == calls
    counts = []
    for host in hosts:
        host.stop()
        host_stats = host.stats()
        assert host_stats["FailedCall(C)"] == 0, host.errors()[-3000:]
        assert received(host, "INVITE") == host_stats["SuccessfulCall(C)"]
        counts.append(host_stats["SuccessfulCall(C)"])
    assert sum(counts) == calls
    assert abs(counts[0] / calls - share) <= 0.10, counts


# ---------------------------------------------------------------------------- geography


def test_each_pbx_gets_only_the_calls_to_its_own_dids(
    sipp_factory: Factory, sbc_factory: SbcFactory
) -> None:
    sbc_port = free_port()
    operator_port = free_port(OPERATOR_A)
    ports = {PBX: free_port(PBX), PBX_2: free_port(PBX_2)}
    config = basic_config(sbc_port, carrier_port=operator_port)
    del config["peers"]["pbx"]
    for name, ip, dids in (("pbx-paris", PBX, ["+3311*"]), ("pbx-lyon", PBX_2, ["+3347*"])):
        config["peers"][name] = {
            "role": "pbx",
            "hosts": [f"{ip}:{ports[ip]}"],
            "match": {"source": [ip]},
            "health": False,
            "dids": dids,
        }
    sbc_factory(config)
    paris, lyon = (
        sipp_factory(
            "uas_basic", local_ip=ip, local_port=ports[ip], calls=None, timeout=20,
            name=f"pbx-{ip}",
        ).start()
        for ip in (PBX, PBX_2)
    )  # fmt: skip
    for number in (PARIS, LYON):
        uac = sipp_factory(
            "uac_basic", local_ip=OPERATOR_A, local_port=operator_port,
            remote=("127.0.0.1", sbc_port), service=number, caller=CALLER, calls=3, rate=20,
            pause_ms=50, timeout=10,
        ).start()  # fmt: skip
        assert uac.check()["SuccessfulCall(C)"] == 3
    paris.stop()
    lyon.stop()
    assert received(paris, "INVITE") == 3
    assert received(lyon, "INVITE") == 3
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

    def __init__(self, make_sipp: Factory, make_sbc: SbcFactory) -> None:
        self.make_sipp = make_sipp
        self.sbc_port = free_port()
        self.ports = {ip: free_port(ip) for ip in (OPERATOR_A, OPERATOR_B, PBX)}
        config = basic_config(
            self.sbc_port, carrier_port=self.ports[OPERATOR_A], pbx_port=self.ports[PBX]
        )
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
        self.sbc = make_sbc(config)

    def uas(self, ip: str, scenario: str = "uas_basic") -> Sipp:
        """A callee that runs until stopped (calls=None)."""
        return self.make_sipp(
            scenario, local_ip=ip, local_port=self.ports[ip], calls=None, timeout=20,
            name=f"{scenario}-{ip}-{time.monotonic_ns()}",
        ).start()  # fmt: skip

    def uac(self, ip: str, service: str, calls: int, scenario: str = "uac_basic") -> Sipp:
        return self.make_sipp(
            scenario, local_ip=ip, local_port=self.ports[ip], remote=("127.0.0.1", self.sbc_port),
            service=service, caller=CALLER if ip != PBX else CALLED, calls=calls, rate=10,
            pause_ms=50, timeout=15,
        ).start()  # fmt: skip


@pytest.fixture
def ops(sipp_factory: Factory, sbc_factory: SbcFactory) -> Operators:
    return Operators(sipp_factory, sbc_factory)


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
    assert received(pbx, "INVITE") == 4


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
    assert received(a, "INVITE") == 2
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


def test_sighup_reloads_twice_under_load_without_losing_a_call(
    sipp_factory: Factory, sbc_factory: SbcFactory
) -> None:
    calls = 300
    sbc_port = free_port()
    operator_port = free_port(OPERATOR_A)
    pbx_port = free_port(PBX)
    config = basic_config(sbc_port, carrier_port=operator_port, pbx_port=pbx_port)
    sbc = sbc_factory(config)
    pbx = sipp_factory(
        "uas_basic", local_ip=PBX, local_port=pbx_port, calls=calls, timeout=30
    ).start()
    uac = sipp_factory(
        "uac_basic", local_ip=OPERATOR_A, local_port=operator_port,
        remote=("127.0.0.1", sbc_port), service=CALLED, caller=CALLER, calls=calls, rate=50,
        pause_ms=1000, timeout=30,
    ).start()  # fmt: skip
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
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    uac = sipp_factory(
        "uac_basic", local_ip=OPERATOR_A, local_port=operator_port,
        remote=("127.0.0.1", sbc_port), service="+33555000222", caller=CALLER, calls=1,
        timeout=10,
    ).start()  # fmt: skip
    uac.check()
    pbx.check()
