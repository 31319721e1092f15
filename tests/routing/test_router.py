"""The router with health as an argument: down hosts last, strict peers lose them."""

from __future__ import annotations

import textwrap

from pkiss.config import Config, parse_config
from pkiss.routing import Router
from pkiss.sip.message import Request
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import Addr

CONFIG = """
peers:
  op-a:
    role: carrier
    hosts: [{address: "10.1.0.1:5060", priority: 1}, {address: "10.1.0.2:5060", priority: 2}]
  op-b:
    role: carrier
    hosts: [10.2.0.1:5060]
    health: {strict: true}
  pbx:
    role: pbx
    hosts:
      - {address: "10.0.0.10:5060", priority: 1}
      - {address: "10.0.0.11:5060", priority: 2}
      - {address: "10.0.0.12:5060", priority: 3}
    dids: ["+331*"]
  strict-pbx:
    role: pbx
    hosts: [{address: "10.0.1.10:5060", priority: 1}, {address: "10.0.1.11:5060", priority: 2}]
    health: {strict: true}
    dids: ["+332*"]
  balanced:
    role: pbx
    strategy: balance
    hosts: [10.0.2.1:5060, 10.0.2.2:5060, 10.0.2.3:5060]
    dids: ["+333*"]
routes:
  - {prefix: "+44", via: [op-b, op-a]}
  - {prefix: "", via: [op-a, op-b]}
"""


def udp(host: str) -> Addr:
    return Addr("udp", host, 5060)


def setup() -> tuple[Config, Router]:
    config = parse_config(textwrap.dedent(CONFIG))
    return config, Router(config.peers, config.routes)


def invite(number: str) -> Request:
    data = (
        f"INVITE sip:{number}@sbc SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK1\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_datagram(data)
    assert isinstance(message, Request)
    return message


def hosts(decision_targets: object) -> list[str]:
    return [t.addr.host for t in decision_targets]  # type: ignore[attr-defined]


def test_no_health_information_keeps_the_strategy_order() -> None:
    config, router = setup()
    decision = router.route(invite("+33100"), config.peer("op-a"))
    assert hosts(decision.targets) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]


def test_down_hosts_go_last_in_their_order() -> None:
    config, router = setup()
    down = frozenset({udp("10.0.0.10"), udp("10.0.0.11")})
    decision = router.route(invite("+33100"), config.peer("op-a"), 0, down)
    assert hosts(decision.targets) == ["10.0.0.12", "10.0.0.10", "10.0.0.11"]
    assert hosts(router.targets("pbx", 0, down)) == ["10.0.0.12", "10.0.0.10", "10.0.0.11"]


def test_all_down_are_still_tried_in_order() -> None:
    config, router = setup()
    down = frozenset(udp(h) for h in ("10.0.0.10", "10.0.0.11", "10.0.0.12"))
    decision = router.route(invite("+33100"), config.peer("op-a"), 0, down)
    assert decision.reject is None
    assert hosts(decision.targets) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]


def test_strict_removes_down_hosts_and_rejects_when_none_is_left() -> None:
    config, router = setup()
    one = frozenset({udp("10.0.1.10")})
    decision = router.route(invite("+33200"), config.peer("op-a"), 0, one)
    assert hosts(decision.targets) == ["10.0.1.11"]
    both = one | {udp("10.0.1.11")}
    decision = router.route(invite("+33200"), config.peer("op-a"), 0, both)
    assert (decision.reject, decision.targets) == (503, ())


def test_down_carrier_hosts_after_every_up_host_of_the_route() -> None:
    config, router = setup()
    down = frozenset({udp("10.1.0.1"), udp("10.1.0.2")})
    decision = router.route(invite("+33612345678"), config.peer("pbx"), 0, down)
    assert hosts(decision.targets) == ["10.2.0.1", "10.1.0.1", "10.1.0.2"]
    # op-b is strict: its down host is skipped, op-a's hosts keep their order
    decision = router.route(invite("+4420"), config.peer("pbx"), 0, {udp("10.2.0.1")})
    assert hosts(decision.targets) == ["10.1.0.1", "10.1.0.2"]
    decision = router.route(invite("+4420"), config.peer("pbx"), 0, down | {udp("10.2.0.1")})
    assert hosts(decision.targets) == ["10.1.0.1", "10.1.0.2"]  # op-a is not strict


def test_balance_skips_a_down_host_whose_turn_it_is() -> None:
    _, router = setup()
    down = {udp("10.0.2.1")}
    firsts = {router.targets("balanced", turn, down)[0].addr.host for turn in range(6)}
    assert firsts == {"10.0.2.2", "10.0.2.3"}
    assert router.targets("balanced", 0, down)[-1].addr.host == "10.0.2.1"
