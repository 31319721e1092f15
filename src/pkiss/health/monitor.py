"""Up/down state of every probed peer host, with hysteresis.

Sans-I/O: the monitor never sends anything and never reads a clock. The B2BUA asks it which
hosts are ``due(now)`` for a probe, sends an OPTIONS to each, and reports ``result(addr, alive,
now)`` (any final response but 408 is alive; 408 or no answer within ``timeout`` is not).
``down`` is the snapshot routing takes as an argument.

- Hosts start up: a new node routes as if no health check existed until probes say otherwise.
- The first probe of a host goes one ``interval`` after it appears (start or reload), then
  every ``interval``; ``timeout`` is below ``interval`` (the config checks it), so one probe of
  a host is in flight at a time.
- ``down_after`` consecutive failures mark an up host down; ``up_after`` consecutive successes
  mark a down host up. A success resets the failure count and the other way round.
- A host shared by several peers (tenants of one IPBX) is probed once, with the settings of
  the first peer that lists it.
- ``rebuild(peers, now)`` after a reload keeps the state of hosts still configured.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..config import Health, Peer
from ..sip.transaction import Addr

__all__ = ["HealthMonitor", "HostHealth"]

log = logging.getLogger("pkiss.health")


@dataclass(slots=True)
class HostHealth:
    """One probed host: its settings (from the peer config) and its state."""

    addr: Addr
    peers: list[str]
    interval: float
    timeout: float
    down_after: int
    up_after: int
    next_probe: float
    up: bool = True
    failures: int = 0
    successes: int = 0
    in_flight: bool = False
    changed_at: float | None = None

    @property
    def name(self) -> str:
        return ", ".join(self.peers)


def _probed_hosts(peers: Mapping[str, Peer]) -> Iterable[tuple[str, Health, Addr]]:
    for name, peer in peers.items():
        health = peer.health
        if health is None:
            continue
        for host in peer.hosts:
            yield name, health, Addr(host.transport, host.host, host.port)


class HealthMonitor:
    """Every probed host of one node, by address."""

    def __init__(self, peers: Mapping[str, Peer], now: float) -> None:
        self.hosts: dict[Addr, HostHealth] = {}
        # down by this node's probes, down according to other nodes (shared state), and
        # both: what routing skips
        self.local_down: frozenset[Addr] = frozenset()
        self.remote_down: frozenset[Addr] = frozenset()
        self.down: frozenset[Addr] = frozenset()
        self._next: float | None = None
        self.rebuild(peers, now)

    # ---------------------------------------------------------------------------- config
    def rebuild(self, peers: Mapping[str, Peer], now: float) -> None:
        """Follow a new config: hosts still probed keep their state (new settings apply from
        their next probe), new hosts start up, hosts no longer probed are forgotten."""
        old = self.hosts
        hosts: dict[Addr, HostHealth] = {}
        for name, health, addr in _probed_hosts(peers):
            found = hosts.get(addr)
            if found is not None:
                if name not in found.peers:
                    found.peers.append(name)
                continue
            interval = float(health.interval)
            previous = old.get(addr)
            if previous is None:
                hosts[addr] = HostHealth(
                    addr, [name], interval, float(health.timeout), int(health.down_after),
                    int(health.up_after), now + interval,
                )  # fmt: skip
                continue
            previous.peers = [name]
            previous.interval = interval
            previous.timeout = float(health.timeout)
            previous.down_after = int(health.down_after)
            previous.up_after = int(health.up_after)
            previous.next_probe = min(previous.next_probe, now + interval)
            hosts[addr] = previous
        self.hosts = hosts
        self.local_down = frozenset(a for a, h in hosts.items() if not h.up)
        self.down = self.local_down | self.remote_down
        self._reschedule()

    def _reschedule(self) -> None:
        self._next = min((h.next_probe for h in self.hosts.values()), default=None)

    # ---------------------------------------------------------------------------- probing
    def next_deadline(self) -> float | None:
        """When the next probe is due (None: nothing is probed)."""
        return self._next

    def due(self, now: float) -> list[tuple[str, Addr]]:
        """The hosts to probe now, as (first peer name, address); each is marked in flight
        and its next probe scheduled one interval later. A host still in flight (its result
        never came) counts that probe as failed first."""
        if self._next is None or self._next > now:
            return []
        out: list[tuple[str, Addr]] = []
        for host in self.hosts.values():
            if host.next_probe > now:
                continue
            if host.in_flight:
                self.result(host.addr, False, now)
            host.in_flight = True
            host.next_probe = now + host.interval
            out.append((host.peers[0], host.addr))
        self._reschedule()
        return out

    def timeout(self, addr: Addr) -> float:
        """Seconds a probe of ``addr`` waits for a final response."""
        host = self.hosts.get(addr)
        return host.timeout if host is not None else 2.0

    def result(self, addr: Addr, alive: bool, now: float) -> None:
        """The outcome of the probe in flight to ``addr`` (ignored when none is)."""
        host = self.hosts.get(addr)
        if host is None or not host.in_flight:
            return
        host.in_flight = False
        if alive:
            host.failures = 0
            host.successes += 1
            if not host.up and host.successes >= host.up_after:
                self._set(host, True, now)
        else:
            host.successes = 0
            host.failures += 1
            if host.up and host.failures >= host.down_after:
                self._set(host, False, now)

    def _set(self, host: HostHealth, up: bool, now: float) -> None:
        host.up = up
        host.changed_at = now
        if up:
            self.local_down = self.local_down - {host.addr}
            log.info("host %s of %s is up again", host.addr, host.name)
        else:
            self.local_down = self.local_down | {host.addr}
            log.info("host %s of %s is down (%d probes unanswered)", host.addr, host.name,
                     host.failures)  # fmt: skip
        self.down = self.local_down | self.remote_down

    def set_remote_down(self, addrs: frozenset[Addr]) -> None:
        """The hosts other nodes find down (``state: redis``): routing skips them here too,
        before this node's own probes notice; they count again when no node finds them
        down."""
        if addrs == self.remote_down:
            return
        for addr in addrs - self.remote_down - self.local_down:
            log.info("host %s is down according to another node", addr)
        for addr in self.remote_down - addrs - self.local_down:
            log.info("host %s is no longer down according to other nodes", addr)
        self.remote_down = addrs
        self.down = self.local_down | self.remote_down

    # ----------------------------------------------------------------------------- state
    def is_up(self, addr: Addr) -> bool:
        """False only for a probed host marked down; unknown hosts are up."""
        return addr not in self.down
