"""Where a call goes: a pure function of the request, the peer it came from and the config.

- From a carrier: the PBX peer that owns the called number (``dids``); none: 404. A PBX with
  ``hosts: registered`` is named in ``Decision.registered``: its address is the B2BUA's to know.
- From a PBX: its own ``routes`` or the global table, longest prefix first; ``via`` carriers in
  order, or ``reject`` with a status; no matching route: 404. A PBX never reaches a PBX.
Each peer's hosts are ordered by its strategy: ``failover`` by ascending ``priority``;
``balance`` rotated by the caller-supplied turn, so equal weights get equal shares.

Health comes in as an argument (``down``: the host addresses health checks marked down): down
hosts move after every host that is up, each group keeping its order, so a call still tries
them when nothing else is left (a health check can be wrong). A peer with ``health.strict``
loses its down hosts instead; when that leaves no candidate at all the call gets 503.

Drains (``routing.steering``) come in the same way: the hosts of a drained peer
(``drained``: peer names) and drained hosts (in ``down``, which the caller unites with the
drained addresses) are treated exactly as hosts marked down.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..sip.message import Request
from ..sip.transaction import Addr
from .numbers import DidTable, RuleLike, called_number, calling_numbers, rewrite

__all__ = ["Decision", "Router", "Target"]


class HostLike(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def transport(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def weight(self) -> int: ...


class RouteLike(Protocol):
    @property
    def prefix(self) -> str: ...
    @property
    def via(self) -> tuple[str, ...]: ...
    @property
    def reject(self) -> int | None: ...


class RewritesLike(Protocol):
    @property
    def inbound(self) -> tuple[RuleLike, ...]: ...
    @property
    def outbound(self) -> tuple[RuleLike, ...]: ...


class HealthLike(Protocol):
    @property
    def strict(self) -> bool: ...


class PeerLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def hosts(self) -> tuple[HostLike, ...]: ...
    @property
    def strategy(self) -> str: ...
    @property
    def dids(self) -> tuple[str, ...]: ...
    @property
    def routes(self) -> tuple[RouteLike, ...] | None: ...
    @property
    def rewrite(self) -> RewritesLike: ...
    @property
    def health(self) -> HealthLike | None: ...
    @property
    def registered(self) -> bool: ...
    @property
    def caller_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Target:
    """One candidate destination: a host of a peer (``uri``: the Request-URI to send it, when
    not the called number at that host: the Contact a PBX registered)."""

    peer: str
    addr: Addr
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Ordered candidates, or a status to reject the call with (``reject``)."""

    targets: tuple[Target, ...] = ()
    reject: int | None = None
    reason: str | None = None
    number: str = ""
    # a PBX with ``hosts: registered`` owns the number: the B2BUA sends the call to the
    # source address of its current registration (none: 480)
    registered: str | None = None


class _PeerTargets:
    """A peer's hosts as targets, precomputed once per config version."""

    __slots__ = ("by_priority", "weighted")

    def __init__(self, peer: PeerLike) -> None:
        name = peer.name
        hosts = sorted(peer.hosts, key=lambda h: h.priority)
        self.by_priority = [Target(name, Addr(h.transport, h.host, h.port)) for h in hosts]
        self.weighted: list[Target] = []
        if peer.strategy == "balance":
            for h, t in zip(hosts, self.by_priority, strict=True):
                self.weighted.extend([t] * max(h.weight, 0))

    def ordered(self, turn: int) -> list[Target]:
        if not self.weighted:
            return list(self.by_priority)
        first = self.weighted[turn % len(self.weighted)]
        return [first] + [t for t in self.by_priority if t is not first]


class Router:
    """Built once per config version; ``route()`` is pure apart from its arguments."""

    def __init__(self, peers: Mapping[str, PeerLike], routes: Sequence[RouteLike]) -> None:
        self._peers = peers
        self._routes = sorted(routes, key=lambda r: -len(r.prefix))
        self._dids = DidTable((p.name, p.dids) for p in peers.values() if p.role == "pbx")
        self._targets = {name: _PeerTargets(peer) for name, peer in peers.items()}
        self._strict = frozenset(
            name for name, peer in peers.items() if peer.health is not None and peer.health.strict
        )

    def targets(self, peer_name: str, turn: int = 0, down: Container[Addr] = (),
                drained: Container[str] = ()) -> list[Target]:  # fmt: skip
        """The peer's hosts in the order its strategy gives for this turn, down (or drained)
        hosts last (or left out for a strict peer)."""
        return self._by_health(self._targets[peer_name].ordered(turn), down, drained)

    def _by_health(self, targets: list[Target], down: Container[Addr],
                   drained: Container[str]) -> list[Target]:  # fmt: skip
        if not down and not drained:
            return targets
        up: list[Target] = []
        later: list[Target] = []
        strict = self._strict
        for target in targets:
            if target.addr not in down and target.peer not in drained:
                up.append(target)
            elif target.peer not in strict:
                later.append(target)
        return up + later if later else up

    def route(
        self, request: Request, source: PeerLike, turn: int = 0, down: Container[Addr] = (),
        drained: Container[str] = (),
    ) -> Decision:  # fmt: skip
        """Where a request from ``source`` goes; ``down``: host addresses marked down (or
        drained), ``drained``: names of drained peers."""
        number = rewrite(source.rewrite.inbound, called_number(request))
        if source.role == "carrier":
            owner = self._dids.owner(number)
            if owner is None:
                return Decision(reject=404, reason="Not Found", number=number)
            if self._peers[owner].registered:
                return Decision(number=number, registered=owner)
            everyone = self._targets[owner].ordered(turn)
            targets = self._by_health(everyone, down, drained)
            if everyone and not targets:
                return _unavailable(number)
            return Decision(tuple(targets), number=number)
        if source.caller_id == "enforce":
            for caller in calling_numbers(request):
                if self._dids.owner(rewrite(source.rewrite.inbound, caller)) != source.name:
                    # the PBX presents a number that is not one of its own
                    return Decision(reject=403, reason="Forbidden", number=number)
        table = (
            self._routes
            if source.routes is None
            else sorted(source.routes, key=lambda r: -len(r.prefix))
        )
        for entry in table:
            if number.startswith(entry.prefix):
                if entry.reject is not None:
                    return Decision(reject=entry.reject, number=number)
                candidates: list[Target] = []
                for name in entry.via:
                    peer = self._peers.get(name)
                    if peer is not None and peer.role == "carrier":
                        candidates.extend(self._targets[name].ordered(turn))
                if not candidates:
                    return Decision(reject=404, reason="Not Found", number=number)
                candidates = self._by_health(candidates, down, drained)
                if not candidates:
                    return _unavailable(number)
                return Decision(tuple(candidates), number=number)
        return Decision(reject=404, reason="Not Found", number=number)


def _unavailable(number: str) -> Decision:
    """Every host the call could go to is down (or drained) and its peer is strict."""
    return Decision(reject=503, reason="Service Unavailable", number=number)
