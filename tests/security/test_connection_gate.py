"""The verdict on inbound TCP/TLS connections, with explicit time and a given descriptor
limit: who is closed at accept, the caps, who makes room for whom, bans, the budget."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from pkiss.config import Config, parse_config
from pkiss.security import Security
from pkiss.security.connections import BASE_RESERVE, ConnectionGate, descriptor_reserve

PEERS = """
peers:
  op: {role: carrier, hosts: ["192.0.2.10:5060"], match: {source: ["192.0.2.0/28:5060"]}}
  pbx: {role: pbx, hosts: [{address: "198.51.100.7:5060", transport: tcp}],
        match: {source: ["198.51.100.8"]}}
"""
REGISTERED = """
  remote: {role: pbx, hosts: registered, match: {username: r1}, password: s3cret}
"""


class Conn:
    """An inbound connection as the gate sees it: told to shut, or not."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.shut_count = 0

    def shut(self) -> None:
        self.shut_count += 1

    @property
    def open(self) -> bool:
        return self.shut_count == 0


def config(registered: bool = True, security: str = "", media: str = "mode: bypass",
           flood: str = "{window: 10, max: 1000, ban: 600}",
           connections: str = "{max: 10, per_source: 3}") -> Config:  # fmt: skip
    return parse_config(
        "sbc: {listen: [udp:0.0.0.0:5060, tcp:0.0.0.0:5060]}\n"
        f"media: {{{media}}}\n"
        + PEERS
        + (REGISTERED if registered else "")
        + f"security:\n  never_ban: []\n  flood: {flood}\n  connections: {connections}\n"
        + security
    )


def gate(cfg: Config, limit: int = 100_000,
         bindings: Callable[[str, float], str | None] | None = None) -> ConnectionGate:  # fmt: skip
    security = Security(cfg.security)
    made = ConnectionGate(cfg, security, lambda: limit, bindings or (lambda name, now: None))
    security.bans.watch(made.banned)
    return made


def test_without_a_registered_peer_a_stranger_is_closed_at_accept_and_a_peer_is_kept() -> None:
    g = gate(config(registered=False))
    assert g.open(Conn(), "203.0.113.5", 0.0) == "stranger"
    # a peer by match.source (any port: a connection's source port is any), by host address
    for host in ("192.0.2.3", "198.51.100.8", "198.51.100.7", "192.0.2.10"):
        assert g.open(Conn(), host, 0.0) is None
    assert (g.inbound, g.strangers, g.closed["stranger"]) == (4, 0, 1)


def test_with_unknown_sources_reject_strangers_are_let_in_to_hear_their_403() -> None:
    g = gate(config(registered=False, security="  unknown_sources: reject\n"))
    assert g.open(Conn(), "203.0.113.5", 0.0) is None


def test_a_stranger_is_capped_per_source_and_all_of_them_in_all() -> None:
    g = gate(config())
    held = [Conn() for _ in range(3)]
    assert [g.open(c, "203.0.113.5", 0.0) for c in held] == [None] * 3
    assert g.open(Conn(), "203.0.113.5", 0.0) == "per_source"
    for i in range(7):
        assert g.open(Conn(), f"203.0.113.{10 + i}", 0.0) is None
    assert g.inbound == 10
    assert g.open(Conn(), "203.0.113.99", 0.0) == "max"
    g.release(held[0])  # one ends: room for one more
    assert g.open(Conn(), "203.0.113.99", 0.0) is None
    assert dict(g.closed) == {"per_source": 1, "max": 1}


def test_a_peer_is_never_capped_and_the_newest_stranger_makes_room_for_it() -> None:
    g = gate(config())
    strangers = [Conn(f"s{i}") for i in range(10)]
    for i, conn in enumerate(strangers):
        assert g.open(conn, f"203.0.113.{i}", float(i)) is None
    peers = [Conn(f"p{i}") for i in range(5)]
    for conn in peers:  # more than per_source from one address, beyond max
        assert g.open(conn, "198.51.100.8", 20.0) is None
    assert [c.name for c in strangers if not c.open] == ["s5", "s6", "s7", "s8", "s9"]
    assert all(c.open for c in peers)
    assert (g.inbound, g.strangers, g.closed["evicted"]) == (10, 5, 5)
    for _ in range(12):  # no stranger left to close: a peer still gets in
        g.open(Conn(), "192.0.2.1", 30.0)
    assert g.strangers == 0 and g.inbound == 17


def test_a_registered_pbx_host_is_a_peer_while_its_binding_lasts() -> None:
    where = {"remote": "203.0.113.50"}
    g = gate(config(), bindings=lambda name, now: where.get(name))
    conns = [Conn() for _ in range(5)]
    assert [g.open(c, "203.0.113.50", 0.0) for c in conns] == [None] * 5
    assert g.strangers == 0
    where.clear()
    assert g.open(Conn(), "203.0.113.50", 0.0) == "per_source"


def test_a_ban_closes_the_connections_of_its_source_at_once_and_refuses_new_ones() -> None:
    g = gate(config())
    mine, other = [Conn(), Conn()], Conn()
    for conn in mine:
        g.open(conn, "203.0.113.5", 0.0)
    g.open(other, "203.0.113.6", 0.0)
    g.filters.bans.ban("203.0.113.5", 600, "admin", 1.0)
    assert [c.shut_count for c in mine] == [1, 1] and other.open
    assert g.inbound == 1
    assert g.open(Conn(), "203.0.113.5", 2.0) == "banned"
    assert g.closed["banned"] == 3


def test_opening_connections_fast_is_a_flood_that_bans_its_source() -> None:
    cfg = config(flood="{window: 2, max: 5, ban: 600}")
    g = gate(cfg)
    held = [Conn() for _ in range(3)]
    verdicts = [g.open(c, "203.0.113.5", 0.1 * i) for i, c in enumerate(held)]
    verdicts += [g.open(Conn(), "203.0.113.5", 0.5) for _ in range(3)]
    assert verdicts == [None] * 3 + ["per_source"] * 2 + ["banned"]
    assert all(not c.open for c in held)  # the ban closed what the source held
    assert g.filters.bans.banned("203.0.113.5", 1.0)
    assert g.open(Conn(), "198.51.100.8", 0.6) is None  # a peer is never counted


def test_the_cap_is_bounded_by_the_descriptor_limit_less_what_the_node_keeps() -> None:
    cfg = config(connections="{max: 2048}")
    reserve = descriptor_reserve(cfg, 300)
    assert reserve == BASE_RESERVE + 2 + 1  # two listeners, one peer host over TCP
    g = gate(cfg, limit=300)
    assert g.cap == 300 - reserve
    assert gate(cfg, limit=1_000_000).cap == 2048
    assert gate(cfg, limit=10).cap == 0  # strangers never get in; peers still do
    tiny = gate(cfg, limit=10)
    assert tiny.open(Conn(), "203.0.113.5", 0.0) == "max"
    assert tiny.open(Conn(), "198.51.100.8", 0.0) is None


def test_the_relay_ports_are_kept_but_never_more_than_half_the_limit() -> None:
    cfg = config(media="mode: relay, ports: 20000-20999")
    assert descriptor_reserve(cfg, 100_000) == BASE_RESERVE + 3 + 1000
    assert descriptor_reserve(cfg, 1024) == BASE_RESERVE + 3 + 512
    rtpengine = config(media="mode: relay, engine: rtpengine")
    assert descriptor_reserve(rtpengine, 100_000) == BASE_RESERVE + 3


def test_a_changed_limit_is_read_again() -> None:
    limit = [100_000]
    cfg = config(connections="{max: 2048}")
    g = ConnectionGate(cfg, Security(cfg.security), lambda: limit[0], lambda n, t: None)
    assert g.cap == 2048
    limit[0] = 500
    g.open(Conn(), "198.51.100.8", 10.0)
    assert g.cap == 500 - descriptor_reserve(cfg, 500)


def test_a_reload_keeps_what_is_held_and_applies_new_caps() -> None:
    g = gate(config())
    held = [Conn() for _ in range(3)]
    for conn in held:
        g.open(conn, "203.0.113.5", 0.0)
    g.reconfigure(config(connections="{max: 10, per_source: 1}"))
    assert all(c.open for c in held) and g.inbound == 3
    assert g.open(Conn(), "203.0.113.5", 0.0) == "per_source"
    assert g.open(Conn(), "203.0.113.6", 0.0) is None


def test_running_out_of_descriptors_is_told_once_a_minute_at_most(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pkiss.security")
    g = gate(config())
    g.outbound = 2
    error = OSError(24, "Too many open files")

    def told() -> list[str]:
        return [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]

    for second in range(30):
        g.exhausted("tcp:0.0.0.0:5060", error, float(second))
        if second % 10 == 5:  # now and then, one gets in
            g.open(Conn(), "198.51.100.8", float(second))
    assert len(told()) == 1
    assert "Too many open files" in told()[0] and "2 outbound" in told()[0]
    assert sum("accepting connections again" in r.getMessage() for r in caplog.records) == 1
    g.exhausted("tcp:0.0.0.0:5060", error, 61.0)
    assert len(told()) == 2
