"""The harness's own checks: every scenario pair passes SIPp to SIPp directly, no SBC.

UAS on 127.0.0.3 (the PBX's address in the SBC tests), UAC on 127.0.0.2 (the operator's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sipp import SCENARIOS, Sipp, SippError, free_port, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not sipp_available(), reason="sipp is not on PATH (Debian package sip-tester)"
    ),
]

UAC_IP = "127.0.0.2"
UAS_IP = "127.0.0.3"
CALLS = 3
CALLED = "4930123456"
CALLING = "0891234567"

Factory = Callable[..., Sipp]

# (uas, uac): every pair the SBC tests rely on.
PAIRS = [
    ("uas_basic", "uac_basic"),
    ("uas_bye", "uac_recv_bye"),
    ("uas_ring_forever", "uac_cancel"),
    ("uas_busy", "uac_busy"),
    ("uas_503", "uac_503"),
    ("uas_183", "uac_183"),
    ("uas_100rel", "uac_100rel"),
    ("uas_reinvite_recv", "uac_reinvite"),
    ("uas_reinvite_send", "uac_reinvite_recv"),
    ("uas_basic", "uac_lossy"),
    ("uas_auth", "uac_auth"),
    ("uas_basic", "uac_tenant"),
    ("uas_auth407", "uac_auth407"),
    ("uas_basic", "uac_headers"),
]
CASES = [pytest.param(uas, uac, "u1", id=f"{uac}-udp") for uas, uac in PAIRS] + [
    pytest.param(uas, uac, "t1", id=f"{uac}-tcp") for uas, uac in PAIRS
]


# Options a UAC scenario needs beyond the common ones.
UAC_ARGS = {
    "uac_auth": ("-au", "0123456789", "-ap", "secret"),
    "uac_tenant": ("-key", "tenant", "acme"),
    "uac_auth407": ("-au", "acme", "-ap", "pw"),
}


def run_pair(
    make: Factory,
    uas_scenario: str | Path,
    uac_scenario: str | Path,
    transport: str = "u1",
    calls: int = CALLS,
) -> tuple[Sipp, Sipp]:
    uas = make(
        uas_scenario, local_ip=UAS_IP, transport=transport, calls=calls, pause_ms=100
    ).start()
    uac = make(
        uac_scenario,
        local_ip=UAC_IP,
        remote=uas.address,
        transport=transport,
        service=CALLED,
        caller=CALLING,
        calls=calls,
        rate=20,
        pause_ms=100,
        extra_args=UAC_ARGS.get(Path(uac_scenario).stem, ()),
    ).start()
    return uas, uac


def test_every_scenario_has_a_counterpart_here() -> None:
    on_disk = {p.stem for p in SCENARIOS.glob("*.xml")}
    covered = {name for pair in PAIRS for name in pair} | {"uac_options"}
    covered |= {"uas_registrar"}  # no UAC registers SIPp to SIPp: test_registration.py covers it
    covered |= {"uac_register"}  # the SBC is its registrar: test_registered_pbx.py covers it
    covered |= {"uac_media"}  # RTP through the SBC's relay: test_media.py covers it
    covered |= {"uac_sipi"}  # SDP inside multipart, anchored: test_media.py covers it
    # two forks answering one INVITE: only through the SBC, which absorbs the 199 and ends
    # the second dialog (a UAC straight behind would see both): test_calls.py covers it
    covered |= {"uas_fork"}
    # session timers: the 422 retried and the refresh re-INVITE are the SBC's, each leg with
    # its own timer: test_session_timer_calls.py covers them
    covered |= {"uac_timer", "uas_timer"}
    # a T.38 switch and SDP that tells all of its sender, relayed: test_media_flavours.py and
    # test_topology.py cover them
    covered |= {"t38_uac", "t38_uas", "media_topology_uac", "media_topology_uas"}
    assert on_disk == covered


@pytest.mark.parametrize(("uas_name", "uac_name", "transport"), CASES)
def test_pair_passes_sipp_to_sipp(
    sipp_factory: Factory, uas_name: str, uac_name: str, transport: str
) -> None:
    uas, uac = run_pair(sipp_factory, uas_name, uac_name, transport)
    uac_stats = uac.check()
    uas_stats = uas.check()
    for stats in (uac_stats, uas_stats):
        assert stats["SuccessfulCall(C)"] == CALLS
        assert stats["FailedCall(C)"] == 0
    # The called number comes from -s, the calling one from -key caller.
    assert f"INVITE sip:{CALLED}@{UAS_IP}:{uas.local_port} SIP/2.0" in uas.messages()
    assert f"From: <sip:{CALLING}@{UAC_IP}:{uac.local_port}>;tag=" in uas.messages()
    proto = "UDP" if transport == "u1" else "TCP"
    assert f"{proto} message received" in uas.messages()


def test_options_answered_by_auto_answer(sipp_factory: Factory) -> None:
    # -aa turns every out-of-dialog OPTIONS into a "call" that counts against -m:
    # a UAS that is pinged must run without -m (calls=None) and be stopped.
    uas = sipp_factory(
        "uas_basic", local_ip=UAS_IP, calls=None, auto_answer=True, timeout=10
    ).start()
    ping = sipp_factory(
        "uac_options", local_ip=UAC_IP, remote=uas.address, calls=2, rate=50, timeout=10
    ).start()
    assert ping.check()["SuccessfulCall(C)"] == 2
    assert ping.messages().count("SIP/2.0 200 OK") == 2
    # The pinged UAS still takes a real call afterwards.
    call = sipp_factory(
        "uac_basic", local_ip=UAC_IP, remote=uas.address, service=CALLED, calls=1, timeout=10
    ).start()
    call.check()
    assert uas.stop() == 0
    stats = uas.stats()
    assert stats["SuccessfulCall(C)"] == 1
    assert stats["AutoAnswered(C)"] == 2
    assert stats["FailedCall(C)"] == 0


def test_100rel_follows_the_rseq_it_receives(sipp_factory: Factory, tmp_path: Path) -> None:
    # An SBC renumbers RSeq: the UAC must PRACK whatever RSeq it got, not 1.
    text = (SCENARIOS / "uas_100rel.xml").read_text()
    assert "RSeq: 1\n" in text
    text = text.replace("RSeq: 1\n", "RSeq: 4711\n")
    text = text.replace("[[:space:]]*1[[:space:]]+[0-9]+", "[[:space:]]*4711[[:space:]]+1")
    renumbered = tmp_path / "uas_100rel_rseq4711.xml"
    renumbered.write_text(text)
    uas, uac = run_pair(sipp_factory, renumbered, "uac_100rel", calls=1)
    uac.check()
    uas.check()
    assert re.search(r"^RAck: 4711 1 INVITE\r?$", uas.messages(), re.M)


def test_uac_183_fails_without_early_sdp(sipp_factory: Factory) -> None:
    # The harness must see failures: uas_basic sends 180/200, never a 183 with SDP.
    uas, uac = run_pair(sipp_factory, "uas_basic", "uac_183", calls=1)
    assert uac.wait() != 0
    assert uac.stats()["FailedCall(C)"] == 1
    uas.stop()


def test_wait_timeout_kills_and_fails_clearly(sipp_factory: Factory) -> None:
    uas = sipp_factory("uas_basic", local_ip=UAS_IP, timeout=30).start()
    assert uas.running()
    with pytest.raises(SippError, match=r"still running after 0\.3s: killed"):
        uas.wait(timeout=0.3)
    assert not uas.running()
    assert uas.stop() == uas.returncode  # idempotent


def test_stop_before_any_call_and_uas_start_waits_for_listening(sipp_factory: Factory) -> None:
    port = free_port(UAS_IP)
    uas = sipp_factory("uas_basic", local_ip=UAS_IP, local_port=port, transport="t1").start()
    assert uas.running()
    code = uas.stop()
    assert code is not None
    assert not uas.running()


def test_start_failure_is_reported(sipp_factory: Factory) -> None:
    first = sipp_factory("uas_basic", local_ip=UAS_IP).start()
    clash = sipp_factory("uas_basic", local_ip=UAS_IP, local_port=first.local_port)
    with pytest.raises(SippError, match="exited while starting"):
        clash.start()
    assert clash.returncode == 254  # SIPp: cannot bind


def test_free_port_gives_distinct_loopback_ports() -> None:
    ports = {free_port(UAC_IP) for _ in range(20)}
    assert len(ports) == 20
    with pytest.raises(ValueError, match="127"):
        free_port("10.0.0.1")
