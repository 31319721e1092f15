"""Topology hiding: every message each peer sees carries nothing of the other side.

For each side, the identifiers it made itself (its address, Call-IDs, tags, Via branches,
Contact) are collected from the messages it sent, then searched for in every message the other
side received, SDP bodies included: with media anchored (``media.mode: relay``, the default),
the SDP names only the SBC. With ``bypass`` the SDP passes untouched by design, so there the
headers alone are searched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss
from sipp import Sipp, sipp_available
from test_calls import OPERATOR, PBX, Net

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

_BLOCK = re.compile(r"^-{20,} .*$", re.M)


def _messages(log: str, bodies: bool = False) -> list[tuple[str, str]]:
    """(direction, header section, or whole message with ``bodies``) of every message in a
    SIPp message log."""
    out = []
    for block in _BLOCK.split(log):
        lines = block.strip("\n").splitlines()
        if not lines or "message" not in lines[0]:
            continue
        direction = "sent" if " sent " in lines[0] else "received"
        text = "\n".join(lines[1:]).strip("\n").replace("\r", "")
        out.append((direction, text if bodies else text.split("\n\n", 1)[0]))
    return out


def _identifiers(messages: list[tuple[str, str]]) -> set[str]:
    """What a side wrote about itself: Call-IDs, tags, branches of the messages it sent."""
    found: set[str] = set()
    for direction, head in messages:
        if direction != "sent":
            continue
        first = head.split("\n", 1)[0]
        for line in head.split("\n")[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name in ("call-id", "i"):
                found.add(value.strip())
            if name in ("via", "v"):
                found.update(re.findall(r"branch=([^;,\s]+)", value))
        if first.startswith("SIP/2.0"):
            tag = re.search(r"^To:.*;tag=([^;\s]+)", head, re.M)  # our tag in responses
        else:
            tag = re.search(r"^From:.*;tag=([^;\s]+)", head, re.M)  # our tag in requests
        if tag:
            found.add(tag.group(1))
    return found


def _assert_hidden(seen_by: Sipp, other: Sipp, other_ip: str, bodies: bool) -> None:
    theirs = _messages(other.messages())
    mine = _messages(seen_by.messages(), bodies)
    secrets = _identifiers(theirs) | {other_ip}
    assert len(secrets) > 3, "the other side's identifiers were not found"
    received = [head for direction, head in mine if direction == "received"]
    assert received, "no message was received"
    for head in received:
        for secret in secrets:
            assert secret not in head, f"{secret!r} leaked into:\n{head}"


FLOWS = [
    ("uac_basic", "uas_basic"),
    ("uac_recv_bye", "uas_bye"),
    ("uac_100rel", "uas_100rel"),
    ("uac_reinvite", "uas_reinvite_recv"),
    ("uac_reinvite_recv", "uas_reinvite_send"),
    ("uac_busy", "uas_busy"),
    ("uac_cancel", "uas_ring_forever"),
]


@pytest.mark.parametrize(
    ("caller", "callee", "media"),
    [(caller, callee, "relay") for caller, callee in FLOWS]
    + [("uac_basic", "uas_basic", "bypass")],
)
def test_nothing_of_one_side_reaches_the_other(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], caller: str,
    callee: str, media: str,
) -> None:  # fmt: skip
    def mode(config: dict[str, Any]) -> None:
        config["media"] = {"mode": media, "ports": "43000-43999"}

    net = Net(sipp_factory, sbc_factory, patch=mode)
    pbx = net.pbx(callee, calls=2)
    operator = net.operator(caller, calls=2)
    operator.check()
    pbx.check()
    bodies = media == "relay"
    _assert_hidden(pbx, operator, OPERATOR, bodies)
    _assert_hidden(operator, pbx, PBX, bodies)
