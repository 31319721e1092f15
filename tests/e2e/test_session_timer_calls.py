"""RFC 4028 session timers end to end, each leg with its own: a SIPp carrier asks the node to
refresh its leg, a SIPp PBX wants a longer interval (422), says it will refresh its own leg
and never does. The node retries with the interval asked for, refreshes the carrier's leg with
a re-INVITE at half its interval, and when the PBX's session expires hangs up both legs, the
record saying why. One call of about 70 s: the shortest interval RFC 4028 allows is 90 s."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from network import received
from sbc import Pkiss
from sipp import Sipp, sipp_available
from test_calls import Net

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]


def test_refresh_422_and_expiry_on_each_leg(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    def patch(config: dict[str, Any]) -> None:
        config["media"] = {"mode": "relay", "timeout": 600}  # the refresh carries anchored SDP
        config["peers"]["operator"]["session_timer"] = {"expires": 90, "min_se": 90}
        config["peers"]["pbx"]["session_timer"] = {"expires": 90}

    net = Net(sipp_factory, sbc_factory, patch=patch)
    pbx = net.pbx("uas_timer", calls=1, timeout=120)
    operator = net.operator("uac_timer", calls=1, timeout=120)
    assert operator.check(timeout=120)["SuccessfulCall(C)"] == 1
    assert pbx.check(timeout=30)["SuccessfulCall(C)"] == 1

    # the carrier's leg: asked for 90 s and got it, refreshed by the node with its own SDP
    (refresh,) = received(operator, "INVITE")
    (answer,) = [chunk for chunk in re.split(r"-{20,}[^\n]*\n", operator.messages())
                 if "message received" in chunk and "CSeq: 1 INVITE" in chunk
                 and "SIP/2.0 200 OK" in chunk]  # fmt: skip
    assert "Session-Expires: 90;refresher=uas" in answer and "Require: timer" in answer
    assert "Session-Expires: 90;refresher=uac" in refresh
    refresh_sdp = refresh.split("\n\n", 1)[1] if "\n\n" in refresh else ""
    assert "127.0.0.3" not in refresh and "m=audio" in refresh_sdp
    # the PBX's leg: never saw the carrier's interval nor its refresh
    first, second = received(pbx, "INVITE")
    assert "Session-Expires: 90;refresher=uac" in first
    assert "Session-Expires: 100;refresher=uac" in second and "Min-SE: 100" in second
    assert len(received(pbx, "INVITE")) == 2, "the carrier's refresh stayed on its leg"

    (record,) = json.loads(net.sbc.cli("cdr", "--json").stdout)
    assert record["reason"] == "session expired"
    assert json.loads(net.sbc.cli("calls", "--json").stdout) == []
