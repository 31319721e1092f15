"""peers.*.codecs end to end with SIPp: the PBX gets the caller's offer with only its codecs
(PCMA/PCMU/telephone-event offered, PCMU allowed), or the caller gets 488 when none is left."""

from __future__ import annotations

import re
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


def _net(make_sipp: Callable[..., Sipp], make_sbc: Callable[..., Pkiss], codecs: list[str]) -> Net:
    def patch(config: dict[str, Any]) -> None:
        config["peers"]["pbx"]["codecs"] = codecs

    return Net(make_sipp, make_sbc, patch=patch)


def test_the_pbx_gets_only_its_codecs(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    net = _net(sipp_factory, sbc_factory, ["PCMU", "telephone-event"])
    pbx = net.pbx("uas_basic", calls=1)
    net.operator("uac_basic", calls=1).check()
    pbx.check()
    received = [c for c in re.split(r"-{20,}[^\n]*\n", pbx.messages())
                if "message received" in c and "\nINVITE sip:" in c]  # fmt: skip
    assert received
    for invite in received:
        assert re.findall(r"^m=audio \d+ RTP/AVP ([0-9 ]+?)\s*$", invite, re.M) == ["0 101"]
        assert "PCMA" not in invite


def test_no_codec_left_gets_488(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    net = _net(sipp_factory, sbc_factory, ["G729"])
    pbx = net.pbx("uas_basic", calls=1, timeout=5)
    caller = net.operator("uac_basic", calls=1, timeout=8)
    caller.wait(timeout=12)
    assert "SIP/2.0 488" in caller.messages()
    pbx.wait(timeout=10)
    assert "INVITE sip:" not in pbx.messages()
