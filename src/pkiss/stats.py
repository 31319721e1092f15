"""What the node did over time, for ``/metrics`` and the dashboard's charts: fed by the stream
of call records (one ``observe`` per ended or refused call) and by a tick once a second, never
by a SIP message.

- Calls by outcome per peer and the setup-time histogram (since start): from each record. A
  record is answered when its status is 2xx, failed otherwise (a status of 300 or more, or 0:
  the caller got no final answer); setup time is ``answered_at - started_at``.
- The last hour, one slot a second, in fixed rings (bounded memory): calls that came in
  (offered to routing, read from the node's counter each second, plus the calls refused at
  once, from their records), calls answered (the node's counter), calls failed (records, at
  the second they end). Setup times per minute in fine logarithmic buckets, for percentiles.
- Each probed host's state, read each tick, and its last ``HOST_CHANGES`` changes with their
  times (the monitor's own time of the change when it is this node's).

Times here are Unix times (the records' clock); the node's loop clock is only converted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cdr import CallRecord
    from .node import Node

__all__ = ["HISTORY", "SETUP_BUCKETS", "CallStats", "percentile"]

log = logging.getLogger("pkiss.stats")

HISTORY = 3600
"""Seconds of per-second history kept."""

SETUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
"""Upper bounds (seconds) of the exported setup-time histogram (``pkiss_call_setup_seconds``),
+Inf besides."""

_FINE_BASE, _FINE_RATIO, _FINE_COUNT = 0.005, 1.2, 56
FINE_BOUNDS = tuple(_FINE_BASE * _FINE_RATIO**i for i in range(_FINE_COUNT))
"""Upper bounds of the buckets the percentiles are read from: 5 ms to about 135 s, each 20 %
above the last (a percentile is then within 10 % or so)."""

_MINUTES = HISTORY // 60
HOST_CHANGES = 64
"""States kept per host (an hour's strip needs a few; a flapping host is capped)."""
MAX_PEERS = 1000
"""Peers counted by name at most (names come from the config: a bound, not a filter)."""


def percentile(counts: Iterable[int], bounds: tuple[float, ...], q: float) -> float | None:
    """The ``q`` quantile (0-1) of values counted in buckets with upper ``bounds`` (the last
    count: above the last bound), interpolated inside its bucket; None when nothing counted."""
    counts = list(counts)
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            low = bounds[i - 1] if i > 0 else 0.0
            high = bounds[i] if i < len(bounds) else bounds[-1]
            return low + (high - low) * max(0.0, rank - seen) / count
        seen += count
    return bounds[-1]


@dataclass(slots=True)
class HostHistory:
    peer: str
    host: str
    state: str
    since: float
    changes: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=HOST_CHANGES))
    """(when, state) from the first time the node saw the host: its states, the latest last."""


class CallStats:
    """See the module docstring. ``clock``: Unix time (tests give their own)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        # since start
        self.outcomes: dict[tuple[str, str, str], int] = {}
        """(peer, side, outcome) -> calls: side ``source`` (the peer called) or
        ``destination`` (the call went to the peer), outcome ``answered`` or ``failed``."""
        self.setup_buckets = [0] * (len(SETUP_BUCKETS) + 1)
        self.setup_sum = 0.0
        self.setup_count = 0
        # the last hour, a slot a second (slot = second % HISTORY, stamped with its second)
        self._second = array("q", [-1]) * HISTORY
        self._calls = array("l", [0]) * HISTORY
        self._answered = array("l", [0]) * HISTORY
        self._failed = array("l", [0]) * HISTORY
        # setup times a minute, in fine buckets
        self._minute = array("q", [-1]) * _MINUTES
        self._fine = [array("l", [0]) * (_FINE_COUNT + 1) for _ in range(_MINUTES)]
        self._last: tuple[int, int] | None = None  # the node's (calls, answered) at the last tick
        self.hosts: dict[tuple[str, str], HostHistory] = {}

    # ------------------------------------------------------------------------ the stream
    def observe(self, record: CallRecord, refused: bool = False) -> None:
        """One call record: an ended call, or (``refused``) a call refused before it was set
        up (no route, over a limit...), which the node's counter of calls offered missed."""
        answered = 200 <= record.status < 300
        outcome = "answered" if answered else "failed"
        outcomes = self.outcomes
        for peer, side in ((record.source_peer, "source"), (record.dest_peer, "destination")):
            if peer:
                key = (peer, side, outcome)
                if key in outcomes or len(outcomes) < 4 * MAX_PEERS:
                    outcomes[key] = outcomes.get(key, 0) + 1
        if refused:
            self._add(self._calls, int(record.started_at.timestamp()), 1)
        if not answered:
            self._add(self._failed, int(record.ended_at.timestamp()), 1)
        elif record.answered_at is not None:
            setup = max(0.0, (record.answered_at - record.started_at).total_seconds())
            self.setup_buckets[bisect_left(SETUP_BUCKETS, setup)] += 1
            self.setup_sum += setup
            self.setup_count += 1
            at = int(record.answered_at.timestamp())
            minute = at // 60
            slot = minute % _MINUTES
            if self._minute[slot] != minute:
                if minute < self._minute[slot]:
                    return  # older than the ring
                self._minute[slot] = minute
                self._fine[slot] = array("l", [0]) * (_FINE_COUNT + 1)
            self._fine[slot][bisect_left(FINE_BOUNDS, setup)] += 1

    def _add(self, series: array[int], second: int, count: int) -> None:
        slot = second % HISTORY
        stamp = self._second[slot]
        if stamp != second:
            if stamp > second:
                return  # older than the ring
            self._clear(slot, second)
        series[slot] += count

    def _clear(self, slot: int, second: int) -> None:
        self._second[slot] = second
        self._calls[slot] = self._answered[slot] = self._failed[slot] = 0

    # ------------------------------------------------------------------------ the tick
    def tick(self, node: Node) -> None:
        """Once a second: the node's counters of calls offered and answered, its hosts."""
        now = self.clock()
        second = int(now)
        stats = node.calls.stats
        offered, answered = stats.get("calls", 0), stats.get("answered", 0)
        last = self._last
        self._last = (offered, answered)
        if last is not None:
            if offered > last[0]:
                self._add(self._calls, second, offered - last[0])
            if answered > last[1]:
                self._add(self._answered, second, answered - last[1])
        self._hosts(node, now)

    def _hosts(self, node: Node, now: float) -> None:
        monitor = node.monitor
        loop_now = node.engine.now()
        seen: set[tuple[str, str]] = set()
        for addr, host in monitor.hosts.items():
            key = (host.name, f"{addr.host}:{addr.port}")
            seen.add(key)
            found = self.hosts.get(key)
            if addr in monitor.local_down or addr in monitor.remote_down:
                state = "down"
            elif host.successes == 0 and host.failures == 0 and host.changed_at is None:
                state = "pending"  # no probe came back yet
            else:
                state = "up"
            if found is None:
                self.hosts[key] = found = HostHistory(key[0], key[1], state, now)
                found.changes.append((now, state))
                continue
            if found.state == state:
                continue
            at = now
            if host.changed_at is not None and addr not in monitor.remote_down:
                at = min(now, now - (loop_now - host.changed_at))  # the probes' own time
            at = max(at, found.since)
            found.changes.append((at, state))
            found.state, found.since = state, at
        for key in list(self.hosts):
            if key not in seen:
                del self.hosts[key]  # no longer probed (a reload)

    async def run(self, node: Node, interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds, just after each second starts, until cancelled."""
        while True:
            try:
                self.tick(node)
            except Exception:  # a defect here must cost the charts a second, not the node
                log.exception("internal error in the statistics tick")
            now = self.clock()
            await asyncio.sleep(interval - now % interval + 0.01)

    # ------------------------------------------------------------------------ reads
    def series(self, window: int, step: int) -> dict[str, Any]:
        """The last ``window`` seconds (up to ``HISTORY``) in ``step``-second points, oldest
        first: calls in, answered, failed, each as a rate a second over its step. The last
        point ends with the current second (which is still counting)."""
        window = max(step, min(window, HISTORY))
        points = window // step
        end = int(self.clock()) + 1  # exclusive
        start = end - points * step
        stamps, calls, answered, failed = self._second, self._calls, self._answered, self._failed
        out: dict[str, list[float]] = {"calls": [], "answered": [], "failed": []}
        for p in range(points):
            c = a = f = 0
            for second in range(start + p * step, start + (p + 1) * step):
                slot = second % HISTORY
                if stamps[slot] == second:
                    c += calls[slot]
                    a += answered[slot]
                    f += failed[slot]
            out["calls"].append(round(c / step, 3))
            out["answered"].append(round(a / step, 3))
            out["failed"].append(round(f / step, 3))
        return {"start": start, "end": end, "step": step, **out}

    def setup_percentiles(self, window: int) -> dict[str, Any]:
        """Setup-time percentiles (seconds) of the calls answered in the last ``window``
        seconds (whole minutes, the current one included)."""
        minutes = max(1, min(_MINUTES, math.ceil(window / 60)))
        current = int(self.clock()) // 60
        merged = [0] * (_FINE_COUNT + 1)
        for minute in range(current - minutes + 1, current + 1):
            slot = minute % _MINUTES
            if self._minute[slot] == minute:
                for i, count in enumerate(self._fine[slot]):
                    merged[i] += count
        out: dict[str, Any] = {"window": minutes * 60, "count": sum(merged)}
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            value = percentile(merged, FINE_BOUNDS, q)
            out[name] = None if value is None else round(value, 4)
        return out

    def host_rows(self, window: int) -> list[dict[str, Any]]:
        """Each probed host: its state now, and its states over the last ``window`` seconds as
        ``[at, state]`` from oldest (the first one may begin before the window: the state the
        host was in when it began; none before the node first saw the host)."""
        start = self.clock() - window
        rows: list[dict[str, Any]] = []
        for (peer, host), h in sorted(self.hosts.items()):
            kept = list(h.changes)
            first = 0
            while first + 1 < len(kept) and kept[first + 1][0] <= start:
                first += 1
            history = [[round(at, 3), state] for at, state in kept[first:]]
            rows.append({"peer": peer, "host": host, "state": h.state,
                         "since": round(h.since, 3), "history": history})  # fmt: skip
        return rows
