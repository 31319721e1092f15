"""Drains: hosts and peers an operator takes out of service for new calls.

A drained host or peer gets no new call: routing treats its hosts exactly as hosts health
checks marked down (after every available host; left out for a ``health.strict`` peer), so a
call fails over to the next host or peer. Calls in progress, in-dialog requests and OPTIONS
probes are untouched. Drains belong to the node, not to the config: a reload keeps them, and
with ``state: redis://...`` every node shares one set of them.

A host is named by its configured address, ``host:port`` (``[v6]:port``); a bare host names
each configured host at that address whatever its port. Sans-I/O: the admin API resolves and
applies, shared state mirrors, routing reads ``peers`` and ``addrs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from ..sip.transaction import Addr

__all__ = ["Drains", "host_key"]


class _HostLike(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def transport(self) -> str: ...


class _PeerLike(Protocol):
    @property
    def hosts(self) -> tuple[_HostLike, ...]: ...
    @property
    def registered(self) -> bool: ...


def host_key(host: str, port: int) -> str:
    """A host's name in drains: ``127.0.0.3:5060``, ``[::1]:5060``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Drains:
    """The drained peers (by name) and hosts (by ``host_key``), and what routing reads of
    them: ``peers`` and ``addrs`` (the configured host addresses drained)."""

    __slots__ = ("_config", "addrs", "hosts", "peers", "version")

    def __init__(self, peers: Mapping[str, _PeerLike]) -> None:
        self.peers: frozenset[str] = frozenset()
        self.hosts: frozenset[str] = frozenset()
        self.addrs: frozenset[Addr] = frozenset()
        self.version = 0  # counts local changes (shared state applies only what is newer)
        self._config: Mapping[str, _PeerLike] = peers

    def rebuild(self, peers: Mapping[str, _PeerLike]) -> None:
        """A new config: drains stay, and name the hosts it configures."""
        self._config = peers
        self._resolve()

    def _resolve(self) -> None:
        drained = self.hosts
        addrs: set[Addr] = set()
        if drained:
            for peer in self._config.values():
                if peer.registered:
                    continue
                for h in peer.hosts:
                    if host_key(h.host, h.port) in drained:
                        addrs.add(Addr(h.transport, h.host, h.port))
        self.addrs = frozenset(addrs)

    def resolve(self, name: str) -> tuple[str, list[str]]:
        """What ``name`` names: ``("peer", [name])``, ``("host", [host_key, ...])`` (a bare
        host: every configured port of it), ``("registered", [name])`` for a PBX with
        ``hosts: registered`` (not drained: no fixed host), or ``("", [])`` when nothing
        configured."""
        peer = self._config.get(name)
        if peer is not None:
            # a PBX with ``hosts: registered`` has no host routing could skip
            return ("registered" if peer.registered else "peer"), [name]
        found: list[str] = []
        for peer in self._config.values():
            if peer.registered:
                continue
            for h in peer.hosts:
                key = host_key(h.host, h.port)
                bare = f"[{h.host}]" if ":" in h.host else h.host
                if name in (key, h.host, bare) and key not in found:
                    found.append(key)
        return ("host", found) if found else ("", [])

    def change(self, kind: str, names: Iterable[str], drained: bool) -> bool:
        """Drain (or undrain) peers (``kind`` "peer") or hosts ("host"); True when it
        changed anything."""
        current = self.peers if kind == "peer" else self.hosts
        given = frozenset(names)
        changed = current | given if drained else current - given
        if changed == current:
            return False
        if kind == "peer":
            self.peers = changed
        else:
            self.hosts = changed
            self._resolve()
        self.version += 1
        return True

    def replace(self, peers: frozenset[str], hosts: frozenset[str]) -> bool:
        """Every drain at once (from shared state); True when it changed anything."""
        if peers == self.peers and hosts == self.hosts:
            return False
        self.peers = peers
        if hosts != self.hosts:
            self.hosts = hosts
            self._resolve()
        return True

    def host_drained(self, peer: str, addr: Addr) -> bool:
        """True when new calls skip this host of ``peer``: drained itself or by its peer."""
        return peer in self.peers or addr in self.addrs
