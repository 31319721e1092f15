"""The node's whole receive path, fuzzed (``receive_rig.py``): whatever comes in, over UDP or
TCP, from a peer or a stranger, no exception escapes the engine, and once every timer has
fired nothing is held (transactions, calls, dialogs, relay ports, connections, timers).

The suite runs a few hundred cases; ``bench/fuzz_receive.py`` runs the nightly size
(docs/fuzzing.md).
"""

from __future__ import annotations

import random
import traceback

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from receive_rig import (
    OPERATOR_HOST,
    SETTLE,
    HypothesisDraw,
    RandomDraw,
    Rig,
    Scenario,
    Stats,
    corpus,
    corpus_dir,
    run_case,
)

from pkiss.sip.transaction import Addr

KNOWN: tuple[str, ...] = ()  # files of known crashes not fixed yet (none)


def _known(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and any(frames[-1].filename.endswith(k) for k in KNOWN)


def _case(rig: Rig, draw: object) -> None:
    try:
        run_case(rig, draw)  # type: ignore[arg-type]
    except Exception as exc:
        if not _known(exc):
            raise
        assume(False)
    leaks = rig.leaks()
    assert not leaks, leaks


@settings(
    max_examples=200,
    derandomize=True,  # the same cases every run: no flakes
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(st.data())
def test_whatever_comes_in_nothing_escapes_and_nothing_stays(data: st.DataObject) -> None:
    rig = Rig()
    try:
        _case(rig, HypothesisDraw(data))
    finally:
        rig.close()


def test_random_cases_reach_the_call_logic() -> None:
    """Fixed seeds; the share of cases that reached each owner says the fuzzing is not
    vacuous (mutations that never get past the parser would pass every check)."""
    total = Stats()
    for seed in range(300):
        rig = Rig()
        try:
            try:
                run_case(rig, RandomDraw(random.Random(seed)))
            except Exception as exc:
                if not _known(exc):
                    raise
                continue
            assert not rig.leaks(), (seed, rig.leaks())
        finally:
            rig.close()
            total.add(rig.stats)
    assert total.cases == 300
    assert total.parsed > 0.6 * total.cases, total
    assert total.calls > 0.3 * total.cases, total
    assert total.answered > 0.08 * total.cases, total
    assert total.options > 0 and total.stream_closed > 0, total
    assert total.kinds.get("reply", 0) > total.cases, total


def test_the_leak_check_sees_a_call_in_progress() -> None:
    """The check can fail: an INVITE the PBX has not answered holds a call, transactions and
    relay ports until its timers have run (then the call fails over, fails, and ends)."""
    rig = Rig()
    try:
        sc = Scenario(rig, RandomDraw(random.Random(0)), "udp")
        data, source = sc.invite()
        rig.datagram(data, source)
        sc.look()
        assert sc.node_requests, "the INVITE was relayed to the PBX"
        leaks = " ".join(rig.leaks())
        assert "transactions" in leaks and "calls" in leaks and "relay calls" in leaks
        rig.advance(SETTLE)
        assert rig.leaks() == []
    finally:
        rig.close()


CORPUS = corpus_dir()


@pytest.mark.skipif(
    not (CORPUS / "rfc4475").is_dir(),
    reason=f"corpus not found at {CORPUS} (set PKISS_CORPUS)",
)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_corpus_message_from_a_peer(transport: str) -> None:
    """The corpus's 9,000 hostile messages (RFC 4475/5118, PROTOS INVITEs and teardowns,
    scanners), in one go from the carrier's address: answered or dropped, and nothing held
    once the timers have run."""
    messages = corpus()
    rig = Rig()
    try:
        source = Addr(transport, OPERATOR_HOST, 5060)
        for i, data in enumerate(messages):
            if transport == "udp":
                rig.datagram(data, source)
            else:  # a connection per message: a framing error closes it
                rig.stream(data, Addr("tcp", OPERATOR_HOST, 10000 + i))
            if i % 200 == 199:
                rig.advance(40.0)  # within the carrier's limit of 50 calls
        answered = sum(1 for data, dest in rig.sent if data.startswith(b"SIP/2.0 "))
        assert answered > len(messages) // 2, answered
        rig.advance(SETTLE)
        assert rig.leaks() == []
    finally:
        rig.close()
