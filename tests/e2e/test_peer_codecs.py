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


def test_reoffers_to_the_pbx_keep_only_its_codecs(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    # the caller's INVITE offers 8 0 101, its re-INVITE 8 101, its UPDATE 8 0 101
    net = _net(sipp_factory, sbc_factory, ["PCMA"])
    pbx = net.pbx("uas_reinvite_recv", calls=1)
    assert net.operator("uac_reinvite", calls=1).check()["SuccessfulCall(C)"] == 1
    pbx.check()
    offers = [c for c in re.split(r"-{20,}[^\n]*\n", pbx.messages())
              if "message received" in c and re.search(r"\n(INVITE|UPDATE) sip:", c)]  # fmt: skip
    assert len(offers) == 3, "INVITE, re-INVITE and UPDATE"
    for offer in offers:
        assert re.findall(r"^m=audio \d+ RTP/AVP ([0-9 ]+?)\s*$", offer, re.M) == ["8"]
        assert "telephone-event" not in offer and "PCMU" not in offer
