"""Per-peer call limits, sans-I/O: calls in progress and call rate, with explicit time.

``peers.*.limits: {calls, cps}`` bound what one peer may have with the SBC, in both directions:
a call from an operator to a PBX counts against both peers. The B2BUA asks ``admit(peer,
limits, now)`` once per call per peer (the source when the INVITE arrives, each target peer when
the call is about to be sent there) and calls ``release(peer)`` exactly once for every
admission, when the call ends.

- ``calls``: calls in progress with the peer; the next one is refused while that many are up.
- ``cps``: a token bucket per peer, refilled at ``cps`` tokens a second up to ``max(cps, 1)``
  (so ``cps: 5`` allows a burst of five, then one every 200 ms); each admitted call takes one.

A refusal says which limit was hit and how long to wait (the ``Retry-After`` of the 503).
Counters are keyed by peer name, not by config object: a reload that changes a peer's limits
applies them to new calls at once, and calls in progress keep being counted until they end.

The counters live in a ``LimitStore``. ``MemoryLimitStore`` counts this node's calls and adds
what other nodes reported through the shared state (``state/``), so that a limit holds across
nodes without a network round trip on the call path.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "CALLS_RETRY_AFTER",
    "LimitSettings",
    "LimitStore",
    "Limits",
    "MemoryLimitStore",
    "PeerCounters",
    "Refusal",
]

log = logging.getLogger("pkiss.limits")

CALLS_RETRY_AFTER = 5
"""Seconds a caller is asked to wait when a peer has its ``calls`` limit of calls up."""


class LimitSettings(Protocol):
    """A peer's ``limits`` (duck-typed: the config ``Limits`` fits). None: no limit."""

    @property
    def calls(self) -> int | None: ...

    @property
    def cps(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call was refused: the peer, the limit hit, and the Retry-After in seconds."""

    peer: str
    limit: Literal["calls", "cps"]
    retry_after: int


@dataclass(frozen=True, slots=True)
class PeerCounters:
    """One peer's counters: calls in progress, calls admitted and refused since start."""

    calls: int = 0
    admitted: int = 0
    refused: int = 0


class LimitStore(Protocol):
    """Where the counters live: in memory for one node, shared (Redis) for several."""

    def acquire(
        self, peer: str, calls: int | None, cps: float | None, now: float
    ) -> Refusal | None:
        """Atomically: refuse (counting the refusal) when ``peer`` has ``calls`` calls in
        progress or no rate token left; otherwise count one more call in progress and take a
        token. None means admitted."""
        ...

    def release(self, peer: str) -> None:
        """One call in progress with ``peer`` has ended."""
        ...

    def snapshot(self) -> dict[str, PeerCounters]: ...


class _Peer:
    __slots__ = ("admitted", "calls", "refused", "stamp", "tokens")

    def __init__(self) -> None:
        self.calls = 0
        self.admitted = 0
        self.refused = 0
        self.tokens: float | None = None  # None: a full bucket
        self.stamp = 0.0


class MemoryLimitStore:
    """The counters of one node, in this object (not in a module-level dict).

    With several nodes sharing state, ``remote_calls`` and ``remote_rate`` hold what the other
    nodes last reported (``state/``): calls in progress per peer, and calls admitted per second
    per peer. A call is then admitted when this node's calls plus theirs are under ``calls``,
    and the bucket refills at what ``cps`` leaves after their rate. The figures are at most a
    sync interval old: two nodes admitting at the same instant may overshoot by a call."""

    def __init__(self) -> None:
        self._peers: dict[str, _Peer] = {}
        self.remote_calls: dict[str, int] = {}
        self.remote_rate: dict[str, float] = {}

    def acquire(
        self, peer: str, calls: int | None, cps: float | None, now: float
    ) -> Refusal | None:
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer()
        if calls is not None and state.calls + self.remote_calls.get(peer, 0) >= calls:
            state.refused += 1
            return Refusal(peer, "calls", CALLS_RETRY_AFTER)
        if cps is not None:
            burst = max(float(cps), 1.0)
            refill = max(cps - self.remote_rate.get(peer, 0.0), 0.0)
            tokens = burst if state.tokens is None else state.tokens
            tokens = min(burst, tokens + max(0.0, now - state.stamp) * refill)
            state.tokens, state.stamp = tokens, max(now, state.stamp)
            if tokens < 1.0 - 1e-9:  # float noise: 0.2 s at 5 cps is one token
                state.refused += 1
                return Refusal(peer, "cps", max(1, math.ceil((1.0 - tokens) / cps)))
            state.tokens = tokens - 1.0
        state.calls += 1
        state.admitted += 1
        return None

    def release(self, peer: str) -> None:
        state = self._peers.get(peer)
        if state is None or state.calls <= 0:  # a bug upstream: never go negative
            log.error("release without a call in progress with %r", peer)
            return
        state.calls -= 1

    def snapshot(self) -> dict[str, PeerCounters]:
        return {
            name: PeerCounters(s.calls, s.admitted, s.refused) for name, s in self._peers.items()
        }


class Limits:
    """The accounting the B2BUA talks to: ``admit``, ``release``, ``snapshot``."""

    def __init__(self, store: LimitStore | None = None) -> None:
        self.store: LimitStore = store if store is not None else MemoryLimitStore()

    def admit(self, peer: str, limits: LimitSettings | None, now: float) -> Refusal | None:
        """Count one new call with ``peer`` under its ``limits`` (None: unlimited, but still
        counted). Returns None when admitted (``release`` it when the call ends), else the
        ``Refusal`` (nothing to release)."""
        calls = limits.calls if limits is not None else None
        cps = limits.cps if limits is not None else None
        return self.store.acquire(peer, calls, cps, now)

    def release(self, peer: str) -> None:
        self.store.release(peer)

    def hold(self, held: list[str], peer: str, limits: LimitSettings | None,
             previous: str | None, source: str, now: float) -> Refusal | None:  # fmt: skip
        """Count a call against ``peer`` once (``held``: the peers it counts against); a call
        moving on from the ``previous`` target peer (not its ``source``) leaves that one's
        count. Returns the refusal when ``peer`` is full (nothing changes then)."""
        if peer in held:
            return None  # the same peer's next host: already counted
        refusal = self.admit(peer, limits, now)
        if refusal is not None:
            return refusal
        if previous is not None and previous != source and previous in held:
            held.remove(previous)
            self.release(previous)
        held.append(peer)
        return None

    def in_progress(self, peer: str) -> int:
        counters = self.store.snapshot().get(peer)
        return counters.calls if counters is not None else 0

    def snapshot(self) -> dict[str, PeerCounters]:
        return self.store.snapshot()
