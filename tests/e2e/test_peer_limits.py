"""Per-peer call limits through a real pkiss node between real SIPp peers: with
``limits: {calls: 2}`` on one side, the third of three concurrent calls gets 503, and once the
calls are over the counters are back to zero: two more concurrent calls go through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss
from sipp import Sipp, sipp_available
from test_calls import Net

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]


@pytest.mark.parametrize("limited", ["pbx", "operator"])
def test_third_concurrent_call_gets_503_and_counters_return_to_zero(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], limited: str
) -> None:
    def limit(config: dict[str, Any]) -> None:
        config["peers"][limited]["limits"] = {"calls": 2}

    net = Net(sipp_factory, sbc_factory, patch=limit)
    pbx = net.pbx("uas_basic", calls=4, timeout=20)
    # three calls 20 ms apart, each held 2 s: the third arrives while two are up
    operator = net.operator("uac_basic", calls=3, rate=50, pause_ms=2000, timeout=15)
    stats = operator.check(expect=1)  # SIPp exits 1 when a call failed
    assert stats["SuccessfulCall(C)"] == 2
    assert stats["FailedCall(C)"] == 1
    messages = operator.messages()
    assert messages.count("SIP/2.0 503 Service Unavailable") >= 1
    assert "Retry-After: 5" in messages

    # both calls have ended: the two calls allowed are free again, at the same time
    again = net.operator("uac_basic", calls=2, rate=50, pause_ms=1000, timeout=15)
    stats = again.check()
    assert stats["SuccessfulCall(C)"] == 2 and stats["FailedCall(C)"] == 0
    assert "503 Service Unavailable" not in again.messages()
    pbx.check()
    assert net.sbc.alive()
