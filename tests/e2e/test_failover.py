"""Health checks with real SIPp peers: a PBX with two hosts, each a SIPp UAS that answers the
SBC's OPTIONS probes by itself (-aa). Calls go to the primary; when it stops, calls still
complete on the secondary (setup_timeout) until the probes mark the primary down, then go
straight to the secondary; when it comes back, calls return to it after up_after probes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from network import CALLED, Network, received, wait_for
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR = "127.0.0.2"
PRIMARY = "127.0.0.3"
SECONDARY = "127.0.0.4"
HEALTH = {"interval": 1, "timeout": 0.5, "down_after": 2, "up_after": 2}


class Net:
    def __init__(self, network: Callable[..., Network]) -> None:
        self.net = network(OPERATOR, PRIMARY, SECONDARY)
        self.ports = self.net.ports
        config: dict[str, Any] = self.net.basic_config(carrier=OPERATOR, pbx=PRIMARY)
        config["peers"]["operator"]["health"] = False  # the operator is a SIPp UAC
        config["peers"]["pbx"].update(
            hosts=[
                {"address": f"{PRIMARY}:{self.ports[PRIMARY]}", "priority": 1},
                {"address": f"{SECONDARY}:{self.ports[SECONDARY]}", "priority": 2},
            ],
            match={"source": [PRIMARY, SECONDARY]},
            health=HEALTH,
            setup_timeout=1,
        )
        self.sbc = self.net.start(config)

    def pbx(self, ip: str) -> Sipp:
        return self.net.uas(ip, auto_answer=True, timeout=40)

    def calls(self, count: int, rate: float = 5) -> dict[str, Any]:
        stats = self.net.uac(OPERATOR, CALLED, calls=count, rate=rate, timeout=15).check()
        assert stats["SuccessfulCall(C)"] == count
        assert stats["FailedCall(C)"] == 0
        return stats

    def retried(self) -> int:
        """Calls the SBC moved on from a host that did not answer within setup_timeout."""
        return self.sbc.log().count("no answer from pbx, trying next")


def invites(uas: Sipp) -> int:
    return len(received(uas, "INVITE"))


def test_failover_and_return_driven_by_options_probes(network: Callable[..., Network]) -> None:
    net = Net(network)
    primary = net.pbx(PRIMARY)
    secondary = net.pbx(SECONDARY)

    # (a) both up: calls go to the primary
    net.calls(3)
    assert (invites(primary), invites(secondary)) == (3, 0)
    assert net.retried() == 0

    # (b) the primary dies: calls placed during detection complete on the secondary after
    # setup_timeout; once two probes went unanswered, calls go straight to the secondary
    primary.stop()
    net.calls(2, rate=2)
    assert invites(secondary) == 2
    assert net.retried() == 2
    assert wait_for(lambda: "is down" in net.sbc.log(), 4), net.sbc.log()
    assert f"host udp:{PRIMARY}:{net.ports[PRIMARY]} of pbx is down" in net.sbc.log()
    net.calls(3)
    assert invites(secondary) == 5
    assert net.retried() == 2  # no call waited for the dead primary

    # (c) the primary is back: after up_after answered probes, calls return to it
    primary = net.pbx(PRIMARY)
    assert wait_for(lambda: "is up again" in net.sbc.log(), 4), net.sbc.log()
    assert f"host udp:{PRIMARY}:{net.ports[PRIMARY]} of pbx is up again" in net.sbc.log()
    # The INVITEs of (b) are still retransmitted to it until Timer B (no CANCEL before a
    # provisional, RFC 3261 section 9.1): it may answer those, and the SBC ends them with
    # ACK + BYE. So the new calls are told by the secondary getting none of them.
    before = invites(primary)
    net.calls(3)
    assert invites(secondary) == 5
    assert invites(primary) - before >= 3
    assert net.retried() == 2
    assert net.sbc.alive()
    secondary.stop()
    assert secondary.stats()["FailedCall(C)"] == 0, secondary.errors()[-3000:]
    # the restarted primary's only failures are the stale attempts of (b) the SBC CANCELs
    # when they ring at last (uas_basic does not expect a CANCEL)
    primary.stop()
    cancelled = primary.errors().count("unexpected CANCEL")
    assert primary.stats()["FailedCall(C)"] == cancelled <= 2, primary.errors()[-3000:]


def test_probes_carry_nothing_of_the_other_side(network: Callable[..., Network]) -> None:
    net = Net(network)
    secondary = net.pbx(SECONDARY)
    assert wait_for(lambda: len(received(secondary, "OPTIONS")) >= 2, 5), secondary.messages()
    for probe in received(secondary, "OPTIONS"):
        assert probe.startswith(f"OPTIONS sip:{SECONDARY}:{net.ports[SECONDARY]} SIP/2.0")
        headers = probe.split("\n\n", 1)[0].lower()
        assert "\nuser-agent:" not in headers and "\nserver:" not in headers
        assert OPERATOR not in probe and PRIMARY not in probe
        assert re.search(r"^Max-Forwards:\s*70\s*$", probe, re.M)
    # the primary never answered: the SBC says so, the secondary stays up
    assert wait_for(lambda: "is down" in net.sbc.log(), 4)
    assert f"{SECONDARY}:{net.ports[SECONDARY]} of pbx is down" not in net.sbc.log()
