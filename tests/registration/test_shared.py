"""Bindings as the nodes write them to each other: what one node writes, another reads back
on its own clock; anything a node would not have written is refused with a reason, never
raised otherwise (what Redis holds is untrusted)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pkiss.registration.bindings import RegisteredContact
from pkiss.registration.shared import (
    Expired,
    NotHere,
    Removal,
    decode,
    encode_register,
    encode_unregister,
)
from pkiss.sip.transaction import Addr

NAMES = frozenset({"pbx"})
WALL = 1_764_150_000.0
SOURCE = Addr("udp", "198.51.100.7", 5060)


def written() -> dict[str, Any]:
    """A binding taken at 100.0 for 600 s on the writer's clock, written at 130.0."""
    binding = RegisteredContact("sip:remote1@198.51.100.7:5060", SOURCE, 700.0, "", 100.0)
    text, at = encode_register("pbx", binding, "sbc1", WALL, 130.0)
    assert at == WALL - 30.0
    data: dict[str, Any] = json.loads(text)
    return data


def test_a_binding_read_on_another_clock() -> None:
    # read 2 s later on a node whose loop clock says 5000.0
    peer, binding = decode(json.dumps(written()), NAMES, WALL + 2.0, 5000.0)
    assert peer == "pbx" and isinstance(binding, RegisteredContact)
    assert binding.contact == "sip:remote1@198.51.100.7:5060" and binding.source == SOURCE
    assert binding.node == "sbc1"
    assert binding.registered_at == pytest.approx(5000.0 - 32.0)
    assert binding.expires_at == pytest.approx(5000.0 + 568.0)


def test_a_removal_read_on_another_clock() -> None:
    peer, removal = decode(encode_unregister("pbx", "sbc1", WALL - 1.0), NAMES, WALL, 50.0)
    assert peer == "pbx" and removal == Removal("sbc1", 49.0)


def test_ipv6_and_tcp_sources() -> None:
    data = written() | {"source": ["tcp", "2001:db8::7", 5060]}
    _, binding = decode(json.dumps(data), NAMES, WALL, 0.0)
    assert isinstance(binding, RegisteredContact)
    assert binding.source == Addr("tcp", "2001:db8::7", 5060) and not binding.reachable


def test_an_expired_binding_is_no_error() -> None:
    with pytest.raises(Expired):
        decode(json.dumps(written()), NAMES, WALL + 600.0, 0.0)


BAD: list[Any] = [
    b"\xff\xfe", "not json", "[1, 2]", "null", "{}",
    {"peer": ""}, {"peer": 7}, {"peer": "x" * 300},
    {"node": None}, {"node": ""}, {"op": "ban"}, {"op": None},
    {"at": "now"}, {"at": None}, {"at": True}, {"at": float("nan")}, {"at": 1e300},
    {"contact": None}, {"contact": ""}, {"contact": "sip:a@b\r\nVia: x"},
    {"contact": "sip:a@b c"}, {"contact": "<sip:a@b>"}, {"contact": "no uri"},
    {"contact": "sip:" + "a" * 2000}, {"source": None}, {"source": "udp:1.2.3.4:5060"},
    {"source": ["udp", "1.2.3.4"]}, {"source": ["sctp", "1.2.3.4", 5060]},
    {"source": ["udp", "example.com", 5060]}, {"source": ["udp", "1.2.3.4", 0]},
    {"source": ["udp", "1.2.3.4", 70000]}, {"source": ["udp", "1.2.3.4", "5060"]},
    {"source": ["udp", "1.2.3.4", True]}, {"source": ["udp", ["1.2.3.4"], 5060]},
    {"expires": None}, {"expires": WALL + 10 * 86400},
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD)
def test_anything_a_node_would_not_write_is_refused(bad: Any) -> None:
    raw = json.dumps(written() | bad) if isinstance(bad, dict) else bad
    with pytest.raises(ValueError) as refused:
        decode(raw, NAMES, WALL, 0.0)
    assert not isinstance(refused.value, Expired | NotHere)


def test_a_peer_not_registered_here_is_no_error() -> None:
    with pytest.raises(NotHere):
        decode(json.dumps(written() | {"peer": "other"}), NAMES, WALL, 0.0)
