"""Topology hiding: every message each peer sees carries nothing of the other side.

For each side, the identifiers it made itself (its address, Call-IDs, tags, Via branches,
Contact) are collected from the messages it sent, then searched for in every message the other
side received. With media anchored (``media.mode: relay``, the default) the SDP is read line by
line, attribute by attribute (``sdp_leaks``): no line of what one side receives may name the
other side's addresses, its media ports (``m=``, ``a=rtcp``), its Call-IDs, tags or branches,
its user names, or what its own SDP said of it (``o=`` user, ``s=``, ``i=``, ``u=``, ``e=``,
``p=``, ``a=tool``, ``a=ssrc`` cname, ``a=msid``, ICE credentials and candidates); and none of
the lines that only ever describe the sender (``i=`` ``u=`` ``e=`` ``p=`` ``k=``, ``a=tool``,
``a=ssrc``, ``a=msid``, ICE) may be there at all. ``media_topology_uac``/``_uas`` send SDP that
carries all of these; baresip phones carry what a real phone does (``a=tool``, ``a=ssrc``
cname). With ``bypass`` the SDP passes untouched by design, so there the headers alone are
searched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available
from test_calls import CALLED, CALLER, OPERATOR, PBX, Net
from thirdparty import Baresip

pytestmark = [pytest.mark.e2e]

needs_sipp = pytest.mark.skipif(
    not sipp_available(), reason="sipp is not on PATH (package sip-tester)"
)

_BLOCK = re.compile(r"^-{20,} .*$", re.M)

Messages = list[tuple[str, str]]
"""(``sent`` or ``received``, the whole message with LF line ends), in order."""

_SENDER_ONLY_LINES = ("i=", "u=", "e=", "p=", "k=")
_SENDER_ONLY_ATTRIBUTES = ("tool", "ssrc", "ssrc-group", "msid", "msid-semantic", "candidate",
                           "remote-candidates", "ice-ufrag", "ice-pwd", "ice-options")  # fmt: skip


def sipp_messages(log: str) -> Messages:
    """Every message of a SIPp message log (``-trace_msg``)."""
    out = []
    for block in _BLOCK.split(log):
        lines = block.strip("\n").splitlines()
        if not lines or "message" not in lines[0]:
            continue
        direction = "sent" if " sent " in lines[0] else "received"
        out.append((direction, "\n".join(lines[1:]).strip("\n").replace("\r", "")))
    return out


def head_of(message: str) -> str:
    return message.split("\n\n", 1)[0]


def sdp_of(message: str) -> list[str]:
    """The lines of the message's SDP body; [] when it has none."""
    body = message.split("\n\n", 1)[1] if "\n\n" in message else ""
    lines = [line.strip() for line in body.strip("\n").split("\n") if line.strip()]
    return lines if lines and lines[0] == "v=0" else []


def _identifiers(messages: Messages) -> set[str]:
    """What a side wrote about itself in SIP: Call-IDs, tags, branches of what it sent."""
    found: set[str] = set()
    for direction, message in messages:
        if direction != "sent":
            continue
        head = head_of(message)
        first = head.split("\n", 1)[0]
        for line in head.split("\n")[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name in ("call-id", "i"):
                found.add(value.strip())
            if name in ("via", "v"):
                found.update(re.findall(r"branch=([^;,\s]+)", value))
        if first.startswith("SIP/2.0"):
            tag = re.search(r"^To:.*;tag=([^;\s]+)", head, re.M | re.I)  # our tag in responses
        else:
            tag = re.search(r"^From:.*;tag=([^;\s]+)", head, re.M | re.I)  # ours in requests
        if tag:
            found.add(tag.group(1))
    return found


def _described(messages: Messages) -> tuple[set[str], set[int]]:
    """What a side's own SDP said of it: the names and values that describe the sender only
    (o= user, s=, i= u= e= p=, a=tool, ssrc ids and cnames, msid, ICE credentials), and its
    media ports (m=, a=rtcp)."""
    names: set[str] = set()
    ports: set[int] = set()
    for direction, message in messages:
        if direction != "sent":
            continue
        for line in sdp_of(message):
            key, value = line[0], line[2:]
            attribute, _, rest = value.partition(":")
            if key == "o" and value.split(" ", 1)[0] != "-":
                names.add(value.split(" ", 1)[0])
            elif (key == "s" and value.strip() != "-") or f"{key}=" in _SENDER_ONLY_LINES:
                names.add(value.strip())
            elif key == "m":
                ports.add(int(value.split()[1].split("/")[0]))
            elif key == "a" and attribute == "rtcp":
                ports.add(int(rest.split()[0]))
            elif key == "a" and attribute in ("tool", "msid", "ice-ufrag", "ice-pwd"):
                names.add(rest.strip())
            elif key == "a" and attribute == "ssrc":
                ssrc, _, what = rest.partition(" ")
                names.add(ssrc)
                names.update(what.split(":", 1)[1].split() if ":" in what else [])
            elif key == "a" and attribute == "msid-semantic":
                names.update(rest.split()[1:])
    return {n for n in names if len(n) >= 4}, ports


def sdp_leaks(received: Messages, secrets: Iterable[str], ports: set[int]) -> tuple[int, list[str]]:
    """Each line of every SDP in ``received`` checked on its own: (lines read, what leaked)."""
    secrets = [s for s in secrets if s]
    read = 0
    leaks: list[str] = []
    for direction, message in received:
        if direction != "received":
            continue
        for line in sdp_of(message):
            read += 1
            key, value = line[0], line[2:]
            attribute, _, rest = value.partition(":")
            leaks += [f"{secret!r} in {line!r}" for secret in secrets if secret in line]
            if line.startswith(_SENDER_ONLY_LINES):
                leaks.append(f"sender's own line {line!r}")
            if key == "a" and attribute.strip().lower() in _SENDER_ONLY_ATTRIBUTES:
                leaks.append(f"sender's own attribute {line!r}")
            if key == "m" and int(value.split()[1].split("/")[0]) in ports:
                leaks.append(f"the other side's media port in {line!r}")
            if key == "a" and attribute == "rtcp" and int(rest.split()[0]) in ports:
                leaks.append(f"the other side's RTCP port in {line!r}")
    return read, leaks


def assert_hidden(mine: Messages, theirs: Messages, their_addresses: Iterable[str],
                  their_names: Iterable[str] = (), bodies: bool = True) -> None:  # fmt: skip
    """Nothing the other side (``theirs``) wrote of itself reaches this side (``mine``): in the
    headers of what this side received, and with ``bodies`` in each line of its SDP."""
    ids = _identifiers(theirs) | set(their_addresses)
    assert len(ids) > 3, "the other side's identifiers were not found"
    received = [message for direction, message in mine if direction == "received"]
    assert received, "no message was received"
    for message in received:
        head = head_of(message)
        for secret in ids:
            assert secret not in head, f"{secret!r} leaked into:\n{head}"
    if not bodies:
        return
    described, ports = _described(theirs)
    if not ports:
        return  # the other side sent no SDP (a 486, a CANCELled call): none to find
    read, leaks = sdp_leaks(mine, ids | described | set(their_names), ports)
    assert read, "no SDP was received"
    assert not leaks, "\n".join(leaks)


# ------------------------------------------------------------------------------- SIPp

FLOWS = [
    ("uac_basic", "uas_basic"),
    ("uac_recv_bye", "uas_bye"),
    ("uac_100rel", "uas_100rel"),
    ("uac_reinvite", "uas_reinvite_recv"),
    ("uac_reinvite_recv", "uas_reinvite_send"),
    ("uac_busy", "uas_busy"),
    ("uac_cancel", "uas_ring_forever"),
    ("media_topology_uac", "media_topology_uas"),
]

PBX_USER = "pbx-line-4471"  # the name media_topology_uas gives itself


@needs_sipp
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
    pbx = net.pbx(callee, calls=2, keys={"pbx_user": PBX_USER})
    operator = net.operator(caller, calls=2)
    operator.check()
    pbx.check()
    bodies = media == "relay"
    on_pbx, on_operator = sipp_messages(pbx.messages()), sipp_messages(operator.messages())
    assert_hidden(on_pbx, on_operator, [OPERATOR], [CALLER], bodies=bodies)
    assert_hidden(on_operator, on_pbx, [PBX], [PBX_USER], bodies=bodies)


@needs_sipp
def test_the_attribute_check_finds_what_bypass_lets_through(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    """The control: with media bypassed the SDP crosses untouched, and the line by line
    search finds in it the other side's address, ports, names and attributes."""

    def bypass(config: dict[str, Any]) -> None:
        config["media"] = {"mode": "bypass"}

    net = Net(sipp_factory, sbc_factory, patch=bypass)
    pbx = net.pbx("media_topology_uas", calls=1, keys={"pbx_user": PBX_USER})
    operator = net.operator("media_topology_uac", calls=1)
    operator.check()
    pbx.check()
    on_pbx, on_operator = sipp_messages(pbx.messages()), sipp_messages(operator.messages())
    described, ports = _described(on_operator)
    _, leaks = sdp_leaks(on_pbx, _identifiers(on_operator) | described | {OPERATOR, CALLER},
                         ports)  # fmt: skip
    for expected in (repr(OPERATOR), repr(CALLER), "sender's own line 'i=",
                     "sender's own attribute 'a=tool", "sender's own attribute 'a=ssrc",
                     "sender's own attribute 'a=candidate", "media port in 'm=audio",
                     "RTCP port in 'a=rtcp"):  # fmt: skip
        assert any(expected in leak for leak in leaks), (expected, leaks)


# ----------------------------------------------------------------------------- baresip

PHONE_A, PHONE_B = "127.0.9.2", "127.0.9.3"


@pytest.mark.parametrize("flavour", ["rtp", "rtcp-mux", "dtls-srtp"])
def test_baresip_phones_see_nothing_of_each_other_attribute_by_attribute(
    tmp_path: Path, sbc_factory: Callable[..., Pkiss], flavour: str
) -> None:
    """Two real phones through the built-in relay: what each receives, SIP headers and every
    SDP line, names nothing of the other (its address, ports, user, Call-ID and tags, its
    ``a=tool``, ssrc and cname), whatever media flavour they speak."""
    kw = {"rtcp_mux": flavour == "rtcp-mux", "dtls_srtp": flavour == "dtls-srtp"}
    caller = Baresip(tmp_path / "caller", PHONE_A, user=CALLER, tone=440, **kw)
    callee = Baresip(tmp_path / "callee", PHONE_B, user=CALLED, tone=1000, **kw)
    with caller.start(), callee.start():
        sbc_port = free_port()
        config = basic_config(sbc_port, carrier=PHONE_A, carrier_port=caller.port, pbx=PHONE_B,
                              pbx_port=callee.port)  # fmt: skip
        config["peers"]["pbx"]["dids"] = [CALLED]
        config["media"] = {"mode": "relay", "ports": "43000-43999", "learn": "first-packet"}
        sbc_factory(config)
        caller.dial(f"sip:{CALLED}@127.0.0.1:{sbc_port}")
        caller.wait_event("CALL_ESTABLISHED", timeout=10)
        callee.wait_event("CALL_ESTABLISHED", timeout=10)
        caller.hangup()
        callee.wait_event("CALL_CLOSED", timeout=10)
    on_caller, on_callee = caller.sip_messages(), callee.sip_messages()
    # baresip's own SDP names its address, software and RTCP name: the search has a target
    sent = [line for d, m in on_caller if d == "sent" for line in sdp_of(m)]
    assert any(line.startswith("a=tool:baresip") for line in sent), sent
    assert any("cname:" in line for line in sent), sent
    assert_hidden(on_callee, on_caller, [PHONE_A], [CALLER])
    assert_hidden(on_caller, on_callee, [PHONE_B], [CALLED])
