"""Per-peer limits with explicit time: calls in progress, the call-rate bucket, release."""

from __future__ import annotations

from pkiss.config.schema import Limits as LimitsConfig
from pkiss.routing import Limits, MemoryLimitStore, PeerCounters, Refusal
from pkiss.routing.limits import CALLS_RETRY_AFTER


def test_calls_limit_refuses_the_next_call_until_one_ends() -> None:
    limits = Limits()
    two = LimitsConfig(calls=2)
    assert limits.admit("pbx", two, 0.0) is None
    assert limits.admit("pbx", two, 0.0) is None
    refusal = limits.admit("pbx", two, 0.1)
    assert refusal == Refusal("pbx", "calls", CALLS_RETRY_AFTER)
    assert limits.snapshot() == {"pbx": PeerCounters(calls=2, admitted=2, refused=1)}
    limits.release("pbx")
    assert limits.admit("pbx", two, 0.2) is None
    assert limits.in_progress("pbx") == 2


def test_peers_are_counted_apart_and_no_limit_still_counts() -> None:
    limits = Limits()
    one = LimitsConfig(calls=1)
    assert limits.admit("a", one, 0.0) is None
    assert limits.admit("b", one, 0.0) is None
    for _ in range(100):
        assert limits.admit("c", None, 0.0) is None
        assert limits.admit("d", LimitsConfig(), 0.0) is None
    assert limits.admit("a", one, 0.0) is not None
    assert limits.in_progress("c") == limits.in_progress("d") == 100


def test_cps_allows_a_burst_of_cps_then_one_every_1_over_cps_seconds() -> None:
    limits = Limits()
    five = LimitsConfig(cps=5)
    for _ in range(5):
        assert limits.admit("op", five, 10.0) is None
    refusal = limits.admit("op", five, 10.0)
    assert refusal == Refusal("op", "cps", 1)
    assert limits.admit("op", five, 10.1) is not None, "half a token only"
    assert limits.admit("op", five, 10.2) is None, "one token back after 200 ms"
    assert limits.admit("op", five, 10.2) is not None
    assert limits.admit("op", five, 11.2) is None  # a second later: a full burst again
    assert limits.snapshot()["op"] == PeerCounters(calls=7, admitted=7, refused=3)


def test_fractional_cps_asks_to_retry_after_the_next_token() -> None:
    limits = Limits()
    slow = LimitsConfig(cps=0.25)  # one call every 4 s, burst of one
    assert limits.admit("op", slow, 0.0) is None
    assert limits.admit("op", slow, 1.0) == Refusal("op", "cps", 3)
    assert limits.admit("op", slow, 3.9) is not None
    assert limits.admit("op", slow, 4.0) is None


def test_a_refused_call_takes_no_token_and_counts_no_call() -> None:
    limits = Limits()
    both = LimitsConfig(calls=1, cps=1)
    assert limits.admit("op", both, 0.0) is None
    assert limits.admit("op", both, 5.0) == Refusal("op", "calls", CALLS_RETRY_AFTER)
    limits.release("op")
    assert limits.admit("op", both, 5.0) is None, "the refused call did not use the token"
    limits.release("op")
    assert limits.admit("op", both, 5.0) == Refusal("op", "cps", 1)
    assert limits.snapshot()["op"].calls == 0


def test_release_never_goes_below_zero() -> None:
    limits = Limits(MemoryLimitStore())
    limits.release("ghost")
    assert limits.admit("ghost", None, 0.0) is None
    limits.release("ghost")
    limits.release("ghost")
    assert limits.in_progress("ghost") == 0


def test_changed_limits_apply_to_new_calls_and_calls_in_progress_still_count() -> None:
    limits = Limits()
    for _ in range(3):
        assert limits.admit("pbx", LimitsConfig(calls=5), 0.0) is None
    # a reload lowers the limit: the three calls up still count against it
    assert limits.admit("pbx", LimitsConfig(calls=3), 1.0) is not None
    limits.release("pbx")
    assert limits.admit("pbx", LimitsConfig(calls=3), 1.0) is None


def test_other_nodes_calls_and_rate_count_against_the_limits() -> None:
    store = MemoryLimitStore()
    limits = Limits(store)
    store.remote_calls = {"d": 1}
    assert limits.admit("d", LimitsConfig(calls=2), 0.0) is None
    refusal = limits.admit("d", LimitsConfig(calls=2), 0.0)
    assert refusal is not None and refusal.limit == "calls"
    store.remote_calls = {}
    assert limits.admit("d", LimitsConfig(calls=2), 0.0) is None
    # other nodes admit 4 of the 5 cps: this node's bucket refills at 1 a second
    store.remote_rate = {"e": 4.0}
    five = LimitsConfig(cps=5)
    assert all(limits.admit("e", five, 0.0) is None for _ in range(5))  # the burst
    assert limits.admit("e", five, 0.5) is not None
    assert limits.admit("e", five, 1.01) is None
