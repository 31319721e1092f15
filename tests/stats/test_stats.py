"""The dashboard's history and the per-peer metrics, from call records and a tick a second:
counted where they belong in time, percentiles read from buckets, everything bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from pkiss.cdr import CallRecord
from pkiss.health.monitor import HostHealth
from pkiss.sip.transaction import Addr
from pkiss.stats import FINE_BOUNDS, HISTORY, SETUP_BUCKETS, CallStats, percentile

T0 = 1_800_000_000.0  # a whole minute


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def record(status: int, started: float, answered: float | None, ended: float,
           source: str = "operator", dest: str | None = "pbx") -> CallRecord:  # fmt: skip
    return CallRecord(call_id="c", caller="1", called="2", source_peer=source, dest_peer=dest,
                      status=status, reason="", started_at=at(started),
                      answered_at=at(answered) if answered is not None else None,
                      ended_at=at(ended), duration=0.0, attempts=1)  # fmt: skip


def test_records_count_by_peer_and_outcome_and_setup_times_land_in_buckets() -> None:
    clock = Clock(T0 + 30)
    stats = CallStats(clock)
    stats.observe(record(200, T0, T0 + 0.3, T0 + 20))
    stats.observe(record(200, T0 + 1, T0 + 2.5, T0 + 21))
    stats.observe(record(486, T0 + 2, None, T0 + 3))
    stats.observe(record(404, T0 + 4, None, T0 + 4, dest=None), refused=True)
    assert stats.outcomes == {
        ("operator", "source", "answered"): 2, ("pbx", "destination", "answered"): 2,
        ("operator", "source", "failed"): 2, ("pbx", "destination", "failed"): 1,
    }  # fmt: skip
    assert stats.setup_count == 2 and abs(stats.setup_sum - 1.8) < 1e-9
    assert stats.setup_buckets[SETUP_BUCKETS.index(0.5)] == 1  # 0.3 s: at most 0.5
    assert stats.setup_buckets[SETUP_BUCKETS.index(2.0)] == 1  # 1.5 s: at most 2
    series = stats.series(60, 1)
    second = int(T0 + 3) - series["start"]
    assert series["failed"][second] == 1  # when the call failed
    assert series["failed"][int(T0 + 4) - series["start"]] == 1
    assert series["calls"][int(T0 + 4) - series["start"]] == 1  # the refused one, at once
    assert sum(series["calls"]) == 1  # the others come from the node's counter (the tick)


def test_the_tick_reads_the_nodes_counters_per_second() -> None:
    clock = Clock(T0)
    stats = CallStats(clock)
    node = fake_node(calls=10, answered=5)
    stats.tick(node)  # the first tick only takes the counters' values
    clock.now += 1
    node.calls.stats.update(calls=13, answered=7)
    stats.tick(node)
    clock.now += 1
    node.calls.stats.update(calls=14)
    stats.tick(node)
    series = stats.series(10, 1)
    assert series["calls"][-2:] == [3, 1]  # in the second each tick ended
    assert sum(series["calls"]) == 4 and sum(series["answered"]) == 2
    coarse = stats.series(10, 5)  # rates over 5 s: 4 calls in the last 5 s
    assert coarse["calls"][-1] == 0.8 and len(coarse["calls"]) == 2


def test_the_history_keeps_an_hour_and_forgets_what_is_older() -> None:
    clock = Clock(T0)
    stats = CallStats(clock)
    stats.observe(record(500, T0, None, T0))
    clock.now = T0 + HISTORY - 1
    assert sum(stats.series(HISTORY, 60)["failed"]) == round(1 / 60, 3)
    clock.now = T0 + HISTORY + 5
    stats.observe(record(500, clock.now, None, clock.now))  # reuses the old slot
    assert sum(stats.series(HISTORY, 1)["failed"]) == 1
    stats.observe(record(500, T0 - 10, None, T0 - 10))  # older than the ring: dropped
    assert sum(stats.series(HISTORY, 1)["failed"]) == 1


def test_setup_percentiles_over_the_last_minutes() -> None:
    clock = Clock(T0 + 10)
    stats = CallStats(clock)
    for i in range(100):  # 10 ms .. 1 s
        setup = 0.01 * (i + 1)
        stats.observe(record(200, T0, T0 + setup, T0 + 5))
    found = stats.setup_percentiles(300)
    assert found["count"] == 100
    assert 0.45 <= found["p50"] <= 0.56, found
    assert 0.82 <= found["p90"] <= 0.99, found
    assert 0.9 <= found["p99"] <= 1.1, found
    clock.now = T0 + 600  # ten minutes later: nothing in the last five
    assert stats.setup_percentiles(300) == {"window": 300, "count": 0, "p50": None, "p90": None,
                                            "p99": None}  # fmt: skip
    assert stats.setup_percentiles(3600)["count"] == 100


def test_percentile_interpolates_within_its_bucket() -> None:
    assert percentile([0, 0, 0], FINE_BOUNDS[:2], 0.5) is None
    assert percentile([10, 10], (1.0,), 0.5) == 1.0  # half of them at most 1 s
    assert percentile([4, 0], (1.0,), 0.25) == 0.25


def test_host_states_and_their_changes_are_kept_with_the_probes_time() -> None:
    clock = Clock(T0)
    stats = CallStats(clock)
    node = fake_node()
    addr = Addr("udp", "127.0.0.3", 5060)
    host = HostHealth(addr, ["pbx"], 1.0, 0.5, 2, 1, 0.0)
    node.monitor.hosts[addr] = host
    stats.tick(node)
    clock.now += 1
    host.successes, host.changed_at = 1, None  # answered: up
    stats.tick(node)
    clock.now += 1
    host.successes, host.failures = 0, 1  # one probe unanswered: still up
    stats.tick(node)
    clock.now += 9
    node.loop_now = 110.0
    host.up, host.changed_at = False, 108.0  # went down 2 s ago
    node.monitor.local_down = frozenset({addr})
    stats.tick(node)
    (row,) = stats.host_rows(3600)
    assert row["peer"] == "pbx" and row["host"] == "127.0.0.3:5060" and row["state"] == "down"
    assert [state for _, state in row["history"]] == ["pending", "up", "down"]
    assert row["history"][-1][0] == T0 + 9  # the monitor's time, not the tick's
    (row,) = stats.host_rows(5)  # the state the window began in, then the change
    assert [state for _, state in row["history"]] == ["up", "down"]
    node.monitor.hosts.clear()  # a reload: no longer probed
    stats.tick(node)
    assert stats.host_rows(3600) == []


def test_a_flapping_host_keeps_a_bounded_history() -> None:
    clock = Clock(T0)
    stats = CallStats(clock)
    node = fake_node()
    addr = Addr("udp", "127.0.0.3", 5060)
    host = HostHealth(addr, ["pbx"], 1.0, 0.5, 2, 1, 0.0, successes=1)
    node.monitor.hosts[addr] = host
    for i in range(500):
        clock.now += 1
        node.monitor.local_down = frozenset({addr}) if i % 2 else frozenset()
        stats.tick(node)
    (row,) = stats.host_rows(3600)
    assert len(row["history"]) <= 64


def fake_node(calls: int = 0, answered: int = 0) -> Any:
    node = SimpleNamespace(loop_now=100.0)
    node.calls = SimpleNamespace(stats={"calls": calls, "answered": answered})
    node.monitor = SimpleNamespace(hosts={}, local_down=frozenset(), remote_down=frozenset())
    node.engine = SimpleNamespace(now=lambda: node.loop_now)
    return node
