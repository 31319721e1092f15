"""Drained hosts and peers in the routing decision: treated as hosts marked down."""

from __future__ import annotations

import textwrap

from pkiss.config import parse_config
from pkiss.routing import Drains, Router
from pkiss.sip.message import Request
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import Addr

CONFIG = """
peers:
  op-a:
    role: carrier
    hosts: [10.1.0.1:5060]
  op-b:
    role: carrier
    hosts: [10.2.0.1:5060]
  pbx:
    role: pbx
    hosts:
      - {address: "10.0.0.10:5060", priority: 1}
      - {address: "10.0.0.11:5060", priority: 2}
    dids: ["+331*"]
  strict-pbx:
    role: pbx
    hosts: [{address: "10.0.1.10:5060", priority: 1}, {address: "10.0.1.10:5070", priority: 2}]
    health: {strict: true}
    dids: ["+332*"]
  remote:
    role: pbx
    hosts: registered
    match: {username: remote1}
    password: secret
    dids: ["+334*"]
routes:
  - {prefix: "", via: [op-a, op-b]}
"""


def invite(number: str) -> Request:
    data = (
        f"INVITE sip:{number}@sbc SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK1\r\n"
        "From: <sip:+33100@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_datagram(data)
    assert isinstance(message, Request)
    return message


def setup(text: str = CONFIG) -> tuple[object, Router, Drains]:
    config = parse_config(textwrap.dedent(text))
    return config, Router(config.peers, config.routes), Drains(config.peers)


def route(router: Router, config: object, number: str, source: str, drains: Drains) -> list[str]:
    decision = router.route(
        invite(number),
        config.peer(source),
        0,
        drains.addrs,
        drains.peers,  # type: ignore[attr-defined]
    )
    if decision.reject is not None:
        return [str(decision.reject)]
    return [f"{t.addr.host}:{t.addr.port}" for t in decision.targets]


def test_a_drained_primary_host_goes_after_the_secondary() -> None:
    config, router, drains = setup()
    assert route(router, config, "+33100", "op-a", drains) == ["10.0.0.10:5060", "10.0.0.11:5060"]
    assert drains.resolve("10.0.0.10:5060") == ("host", ["10.0.0.10:5060"])
    assert drains.change("host", ["10.0.0.10:5060"], True)
    assert route(router, config, "+33100", "op-a", drains) == ["10.0.0.11:5060", "10.0.0.10:5060"]
    assert drains.change("host", ["10.0.0.10:5060"], False)
    assert route(router, config, "+33100", "op-a", drains) == ["10.0.0.10:5060", "10.0.0.11:5060"]


def test_the_last_host_drained_is_the_same_outcome_as_all_hosts_down() -> None:
    config, router, drains = setup()
    down = frozenset({Addr("udp", "10.0.0.10", 5060), Addr("udp", "10.0.0.11", 5060)})
    all_down = router.route(invite("+33100"), config.peer("op-a"), 0, down)  # type: ignore[attr-defined]
    drains.change("host", ["10.0.0.10:5060", "10.0.0.11:5060"], True)
    drained = router.route(invite("+33100"), config.peer("op-a"), 0, drains.addrs, drains.peers)  # type: ignore[attr-defined]
    assert drained == all_down
    # a strict peer: every host drained leaves no candidate, 503 as with every host down
    drains.change("peer", ["strict-pbx"], True)
    assert route(router, config, "+33200", "op-a", drains) == ["503"]
    drains.change("peer", ["strict-pbx"], False)
    drains.change("host", ["10.0.1.10:5060"], True)
    assert route(router, config, "+33200", "op-a", drains) == ["10.0.1.10:5070"]


def test_a_drained_carrier_is_tried_after_the_next_one() -> None:
    config, router, drains = setup()
    assert route(router, config, "+4420", "pbx", drains) == ["10.1.0.1:5060", "10.2.0.1:5060"]
    assert drains.resolve("op-a") == ("peer", ["op-a"])
    drains.change("peer", ["op-a"], True)
    assert route(router, config, "+4420", "pbx", drains) == ["10.2.0.1:5060", "10.1.0.1:5060"]


def test_a_bare_host_names_every_port_and_unknown_names_nothing() -> None:
    _, _, drains = setup()
    assert drains.resolve("10.0.1.10") == ("host", ["10.0.1.10:5060", "10.0.1.10:5070"])
    assert drains.resolve("10.0.0.99:5060") == ("", [])
    assert drains.resolve("nobody") == ("", [])
    assert drains.resolve("remote") == ("registered", ["remote"])
    assert not drains.change("host", [], True)  # nothing changed
    assert drains.version == 0


def test_drains_stay_across_a_new_config_and_follow_its_hosts() -> None:
    _, _, drains = setup()
    drains.change("host", ["10.0.0.11:5060"], True)
    drains.change("peer", ["op-b"], True)
    assert drains.addrs == {Addr("udp", "10.0.0.11", 5060)}
    # the reload moves that address to TCP and adds a peer that lists it as well
    moved = CONFIG.replace(
        '"10.0.0.11:5060", priority: 2}', '"10.0.0.11:5060", priority: 2, transport: tcp}'
    )
    new = parse_config(textwrap.dedent(moved))
    drains.rebuild(new.peers)
    assert drains.peers == {"op-b"} and drains.hosts == {"10.0.0.11:5060"}
    assert drains.addrs == {Addr("tcp", "10.0.0.11", 5060)}
    assert drains.host_drained("pbx", Addr("tcp", "10.0.0.11", 5060))
    assert drains.host_drained("op-b", Addr("udp", "10.2.0.1", 5060))
    assert not drains.host_drained("pbx", Addr("udp", "10.0.0.10", 5060))


def test_shared_drains_replace_the_local_set() -> None:
    _, _, drains = setup()
    drains.change("host", ["10.0.0.10:5060"], True)
    assert drains.replace(frozenset({"op-a"}), frozenset())
    assert drains.peers == {"op-a"} and drains.addrs == frozenset()
    assert not drains.replace(frozenset({"op-a"}), frozenset())
