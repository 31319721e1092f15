"""HealthMonitor with explicit time: schedule, hysteresis, reload."""

from __future__ import annotations

import logging
import textwrap

import pytest

from pkiss.config import Config, parse_config
from pkiss.health import HealthMonitor
from pkiss.sip.transaction import Addr

A = Addr("udp", "10.0.0.10", 5060)
B = Addr("udp", "10.0.0.11", 5060)
C = Addr("tcp", "10.0.0.12", 5070)
CARRIER = Addr("udp", "198.51.100.10", 5060)

CONFIG = """
peers:
  pbx:
    role: pbx
    hosts: [10.0.0.10:5060, 10.0.0.11:5060]
    health: {interval: 10, timeout: 2, down_after: 2, up_after: 3}
    dids: ["+331*"]
  tenant:
    role: pbx
    hosts: [10.0.0.10:5060]
    match: {source: [10.0.0.10], username: t}
    password: x
    dids: ["+332*"]
  operator:
    role: carrier
    hosts: [198.51.100.10:5060]
    health: false
"""


def config(text: str = CONFIG) -> Config:
    return parse_config(textwrap.dedent(text))


def probe(monitor: HealthMonitor, now: float) -> list[Addr]:
    return [addr for _, addr in monitor.due(now)]


def test_probed_hosts_start_up_and_first_probe_after_one_interval() -> None:
    monitor = HealthMonitor(config().peers, 100.0)
    assert set(monitor.hosts) == {A, B}  # health: false is not probed; A is probed once
    assert monitor.hosts[A].peers == ["pbx", "tenant"]
    assert monitor.is_up(A) and monitor.is_up(B) and monitor.is_up(CARRIER)
    assert monitor.down == frozenset()
    assert monitor.next_deadline() == 110.0
    assert monitor.due(109.9) == []
    assert monitor.due(110.0) == [("pbx", A), ("pbx", B)]
    assert monitor.hosts[A].in_flight
    assert monitor.due(110.5) == []  # not twice in one interval
    assert monitor.next_deadline() == 120.0
    assert monitor.timeout(A) == 2.0


def test_down_after_consecutive_failures_up_after_consecutive_successes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pkiss.health")
    monitor = HealthMonitor(config().peers, 0.0)
    now = 10.0
    probe(monitor, now)
    monitor.result(A, False, now + 2)
    monitor.result(B, True, now + 0.1)
    assert monitor.is_up(A)  # one failure is not enough
    now = 20.0
    probe(monitor, now)
    monitor.result(A, False, now + 2)
    monitor.result(B, True, now + 0.1)
    assert not monitor.is_up(A) and monitor.down == frozenset({A})
    assert "host udp:10.0.0.10:5060 of pbx, tenant is down" in caplog.text
    # up_after: 3 successes in a row; a failure in between starts the count again
    for now, alive in ((30.0, True), (40.0, True), (50.0, False), (60.0, True), (70.0, True)):
        probe(monitor, now)
        monitor.result(A, alive, now + 0.1)
        assert not monitor.is_up(A), now
    probe(monitor, 80.0)
    monitor.result(A, True, 80.1)
    assert monitor.is_up(A) and A not in monitor.down
    assert "host udp:10.0.0.10:5060 of pbx, tenant is up again" in caplog.text


def test_a_success_resets_the_failure_count() -> None:
    monitor = HealthMonitor(config().peers, 0.0)
    for now, alive in ((10.0, False), (20.0, True), (30.0, False), (40.0, True)):
        probe(monitor, now)
        monitor.result(A, alive, now + 1)
    assert monitor.is_up(A)


def test_results_without_a_probe_in_flight_are_ignored() -> None:
    monitor = HealthMonitor(config().peers, 0.0)
    monitor.result(A, False, 1.0)
    monitor.result(A, False, 2.0)
    monitor.result(Addr("udp", "10.9.9.9", 5060), False, 3.0)
    assert monitor.down == frozenset()
    probe(monitor, 10.0)
    monitor.result(A, False, 11.0)
    monitor.result(A, False, 11.5)  # a duplicate report of the same probe
    assert monitor.is_up(A)


def test_a_probe_whose_result_never_came_counts_as_failed() -> None:
    monitor = HealthMonitor(config().peers, 0.0)
    probe(monitor, 10.0)
    probe(monitor, 20.0)
    probe(monitor, 30.0)
    assert not monitor.is_up(A) and not monitor.is_up(B)


def test_late_wake_up_probes_once_and_reschedules_from_now() -> None:
    monitor = HealthMonitor(config().peers, 0.0)
    assert probe(monitor, 35.0) == [A, B]
    assert monitor.next_deadline() == 45.0


def test_rebuild_keeps_the_state_of_hosts_still_configured() -> None:
    monitor = HealthMonitor(config().peers, 0.0)
    for now in (10.0, 20.0):
        probe(monitor, now)
        monitor.result(A, False, now + 2)
        monitor.result(B, False, now + 2)
    assert monitor.down == frozenset({A, B})
    new = config("""
        peers:
          pbx:
            role: pbx
            hosts: [10.0.0.10:5060, {address: "10.0.0.12:5070", transport: tcp}]
            health: {interval: 5, timeout: 1, down_after: 1, up_after: 1}
            dids: ["+331*"]
        """)
    monitor.rebuild(new.peers, 25.0)
    assert set(monitor.hosts) == {A, C}
    assert monitor.down == frozenset({A})  # B is forgotten, A still down, C starts up
    assert monitor.hosts[A].peers == ["pbx"]
    assert monitor.hosts[A].next_probe == 30.0  # the earlier of its schedule and the new one
    assert monitor.hosts[C].next_probe == 30.0
    assert probe(monitor, 30.0) == [A, C]
    monitor.result(A, True, 30.1)  # new up_after: 1
    assert monitor.down == frozenset()
    monitor.rebuild({}, 31.0)
    assert monitor.hosts == {} and monitor.next_deadline() is None and monitor.due(99.0) == []


def test_hosts_other_nodes_find_down_are_down_here_until_no_node_does() -> None:
    monitor = HealthMonitor(config().peers, 0.0)
    monitor.set_remote_down(frozenset({B}))
    assert monitor.down == {B} and not monitor.is_up(B) and monitor.is_up(A)
    # this node finds A down itself: both count; the others' verdict on B is lifted
    for t in (10.0, 20.0):
        probe(monitor, t)
        monitor.result(A, False, t)
    assert monitor.down == {A, B}
    monitor.set_remote_down(frozenset())
    assert monitor.down == {A} and monitor.local_down == {A}
