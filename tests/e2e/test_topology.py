"""Topology hiding: every message each peer sees carries nothing of the other side.

For each side, the identifiers it made itself (its address, Call-IDs, tags, Via branches,
Contact) are collected from the messages it sent, then searched for in the headers of every
message the other side received. The SDP bodies are left out: media anchoring, which rewrites
them, is not built yet, and until then the SBC passes SDP unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sbc import Pkiss
from sipp import Sipp, sipp_available
from test_calls import OPERATOR, PBX, Net

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

_BLOCK = re.compile(r"^-{20,} .*$", re.M)


def _messages(log: str) -> list[tuple[str, str]]:
    """(direction, header section) of every message in a SIPp message log."""
    out = []
    for block in _BLOCK.split(log):
        lines = block.strip("\n").splitlines()
        if not lines or "message" not in lines[0]:
            continue
        direction = "sent" if " sent " in lines[0] else "received"
        text = "\n".join(lines[1:]).strip("\n").replace("\r", "")
        head = text.split("\n\n", 1)[0]
        out.append((direction, head))
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


def _assert_hidden(seen_by: Sipp, other: Sipp, other_ip: str) -> None:
    theirs = _messages(other.messages())
    mine = _messages(seen_by.messages())
    secrets = _identifiers(theirs) | {other_ip}
    assert len(secrets) > 3, "the other side's identifiers were not found"
    received = [head for direction, head in mine if direction == "received"]
    assert received, "no message was received"
    for head in received:
        for secret in secrets:
            assert secret not in head, f"{secret!r} leaked into:\n{head}"


@pytest.mark.parametrize(
    ("caller", "callee"),
    [
        ("uac_basic", "uas_basic"),
        ("uac_recv_bye", "uas_bye"),
        ("uac_100rel", "uas_100rel"),
        ("uac_reinvite", "uas_reinvite_recv"),
        ("uac_reinvite_recv", "uas_reinvite_send"),
        ("uac_busy", "uas_busy"),
        ("uac_cancel", "uas_ring_forever"),
    ],
)
def test_nothing_of_one_side_reaches_the_other(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], caller: str,
    callee: str,
) -> None:  # fmt: skip
    net = Net(sipp_factory, sbc_factory)
    pbx = net.pbx(callee, calls=2)
    operator = net.operator(caller, calls=2)
    operator.check()
    pbx.check()
    _assert_hidden(pbx, operator, OPERATOR)
    _assert_hidden(operator, pbx, PBX)
