"""The SBC as registrar for PBXs with ``hosts: registered`` (sans-I/O, explicit time).

One binding per peer: the last REGISTER wins, so the store is bounded by the number of
registered peers in the config. A binding holds the Contact URI the PBX registered, the source
address its REGISTER came from (calls to it go there: latching, as behind NAT) and when it
expires; an expired binding is gone.

With ``state: redis://...`` the nodes share their bindings (``state/redis.py``): a binding
another node took is ``learn``-ed here, and the last REGISTER wins across the nodes too. Each
peer then has at most two bindings here: the newest one another node took, and this node's
own. Calls go to the newest one this node can reach: its own, or another node's over UDP (the
node sends to the address the REGISTER came from, as the node that took it would). Over TCP
or TLS the PBX's connection ends at the node that took its REGISTER; no other node can send
on it, so a node uses its own binding of the peer then, and without one the peer is not
registered here (480). A PBX removing its binding (``Expires: 0``) at any node removes it at
every node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..sip.transaction import Addr

__all__ = ["Bindings", "RegisteredContact"]


@dataclass(frozen=True, slots=True)
class RegisteredContact:
    contact: str
    source: Addr
    expires_at: float
    node: str = ""
    """The node that took the REGISTER, empty for this one (``state: redis``)."""
    registered_at: float = 0.0
    """When the REGISTER was taken, on this node's clock: the newest binding wins."""

    @property
    def reachable(self) -> bool:
        """This node can send to it: its own, or another node's over UDP (a TCP or TLS
        connection lives at the node that took the REGISTER)."""
        return not self.node or self.source.transport == "udp"


class Bindings:
    """Peer name -> its current binding."""

    def __init__(self) -> None:
        self._own: dict[str, RegisteredContact] = {}  # taken by this node
        self._shared: dict[str, RegisteredContact] = {}  # the newest another node took
        self._by_source: dict[Addr, str] = {}
        self.names: frozenset[str] | None = None
        """The registered peers of the config (``retain``): only they are learned."""
        self.on_change: Callable[[str], None] | None = None
        """Told of each binding made or removed by a REGISTER this node took (the shared
        state writes it for the other nodes)."""

    # --------------------------------------------------------------- this node's REGISTERs
    def register(self, peer: str, contact: str, source: Addr, expires: float,
                 now: float) -> RegisteredContact:  # fmt: skip
        binding = RegisteredContact(contact, source, now + expires, "", now)
        self._put(self._own, peer, binding)
        if self.on_change is not None:
            self.on_change(peer)
        return binding

    def unregister(self, peer: str) -> None:
        """The PBX removed its binding (``Expires: 0``): the peer has none left, here or
        learned from another node."""
        self._drop(peer)
        if self.on_change is not None:
            self.on_change(peer)

    # ------------------------------------------------------------------- other nodes'
    def learn(self, peer: str, binding: RegisteredContact) -> bool:
        """A binding another node took (``binding.node`` names it); False when ignored: a
        peer that is no registered one here, or older than the one already learned."""
        if self.names is None or peer not in self.names or not binding.node:
            return False
        known = self._shared.get(peer)
        if known is not None and known.registered_at > binding.registered_at:
            return False
        self._put(self._shared, peer, binding)
        return True

    def forget(self, peer: str, at: float) -> bool:
        """The PBX removed its binding at another node at ``at`` (this node's clock): every
        binding of it made before is gone. False when there was none."""
        dropped = False
        for table in (self._own, self._shared):
            binding = table.get(peer)
            if binding is not None and binding.registered_at <= at:
                self._put(table, peer, None)
                dropped = True
        return dropped

    def own(self, peer: str, now: float) -> RegisteredContact | None:
        """This node's own live binding of ``peer``."""
        binding = self._own.get(peer)
        if binding is not None and binding.expires_at <= now:
            self._put(self._own, peer, None)
            return None
        return binding

    def mine(self, now: float) -> list[str]:
        """The peers this node holds a live binding of (to write again for the others)."""
        return [peer for peer in list(self._own) if self.own(peer, now) is not None]

    # ------------------------------------------------------------------------ lookups
    def lookup(self, peer: str, now: float) -> RegisteredContact | None:
        """Where calls to ``peer`` go: its newest binding this node can reach, or None."""
        own = self.own(peer, now)
        shared = self._shared.get(peer)
        if shared is None:
            return own
        if shared.expires_at <= now:
            self._put(self._shared, peer, None)
            return own
        if own is not None and own.registered_at >= shared.registered_at:
            return own
        return shared if shared.reachable else own

    def peer_at(self, source: Addr, now: float) -> str | None:
        """The registered peer whose current binding came from ``source``, if any (one taken
        by another node too: the PBX sends its calls to any node)."""
        peer = self._by_source.get(source)
        if peer is None:
            return None
        for binding in (self._own.get(peer), self._shared.get(peer)):
            if binding is not None and binding.source == source and binding.expires_at > now:
                return peer
        return None

    def retain(self, names: Iterable[str]) -> None:
        """Forget bindings of peers that are no longer registered ones (after a reload)."""
        self.names = frozenset(names)
        for peer in [p for p in (*self._own, *self._shared) if p not in self.names]:
            self._drop(peer)

    # ------------------------------------------------------------------------ inside
    def _drop(self, peer: str) -> None:
        self._put(self._own, peer, None)
        self._put(self._shared, peer, None)

    def _put(self, table: dict[str, RegisteredContact], peer: str,
             binding: RegisteredContact | None) -> None:  # fmt: skip
        """Set (or remove) ``peer``'s entry of ``table``, keeping the index by source."""
        old = table.pop(peer, None)
        if binding is not None:
            table[peer] = binding
            self._by_source[binding.source] = peer
        if old is None or (binding is not None and binding.source == old.source):
            return
        if self._by_source.get(old.source) != peer:
            return  # another peer registered from there since
        for other in (self._own.get(peer), self._shared.get(peer)):
            if other is not None and other.source == old.source:
                return  # the peer's other binding came from there too
        del self._by_source[old.source]
