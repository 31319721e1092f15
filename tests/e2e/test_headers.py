"""What crosses with a call beyond the built-in header list, end to end with SIPp: a peer's
``headers.pass`` (Diversion of a forwarded call) and RFC 3325 trust (P-Asserted-Identity
and Privacy kept toward a trusted peer; toward an untrusted one PAI is stripped and a caller
asking for privacy is anonymous in From)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss
from sipp import Sipp, sipp_available
from test_calls import CALLER, OPERATOR, Net

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]


def _invite_at_pbx(pbx: Sipp) -> str:
    for chunk in re.split(r"-{20,}[^\n]*\n", pbx.messages()):
        if "message received" in chunk and "\nINVITE sip:" in chunk:
            return chunk
    raise AssertionError("the PBX got no INVITE")


def _call(make_sipp: Callable[..., Sipp], make_sbc: Callable[..., Pkiss],
          patch: Callable[[dict[str, Any]], None]) -> str:  # fmt: skip
    net = Net(make_sipp, make_sbc, patch=patch)
    pbx = net.pbx("uas_basic", calls=1)
    net.operator("uac_headers", calls=1).check()
    pbx.check()
    return _invite_at_pbx(pbx)


def test_passed_headers_and_a_trusted_peer(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    def patch(config: dict[str, Any]) -> None:
        config["peers"]["operator"]["headers"] = {"pass": ["Diversion"]}

    invite = _call(sipp_factory, sbc_factory, patch)
    assert f"Diversion: <sip:+33111222333@{OPERATOR}>;reason=unconditional" in invite
    pai = re.search(r"^P-Asserted-Identity: (.*)$", invite, re.M)
    assert pai is not None and f"sip:{CALLER}@127.0.0.1" in pai.group(1)  # re-homed
    assert OPERATOR not in pai.group(1)
    assert re.search(r"^Privacy: id\s*$", invite, re.M)
    assert re.search(rf"^From: <sip:\{CALLER}@", invite, re.M)


def test_nothing_extra_passes_and_an_untrusted_peer_gets_no_identity(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    def patch(config: dict[str, Any]) -> None:
        config["peers"]["pbx"]["trusted"] = False

    invite = _call(sipp_factory, sbc_factory, patch)
    assert "Diversion:" not in invite
    assert "P-Asserted-Identity" not in invite
    assert "Privacy:" not in invite
    assert re.search(r'^From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=', invite, re.M)
    assert CALLER not in invite
