"""The SBC as registrar for PBXs with ``hosts: registered`` (sans-I/O, explicit time).

One binding per peer: the last REGISTER wins, so the store is bounded by the number of
registered peers in the config. A binding holds the Contact URI the PBX registered, the source
address its REGISTER came from (calls to it go there: latching, as behind NAT) and when it
expires; an expired binding is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip.transaction import Addr

__all__ = ["Bindings", "RegisteredContact"]


@dataclass(frozen=True, slots=True)
class RegisteredContact:
    contact: str
    source: Addr
    expires_at: float


class Bindings:
    """Peer name -> its current binding."""

    def __init__(self) -> None:
        self._bindings: dict[str, RegisteredContact] = {}
        self._by_source: dict[Addr, str] = {}

    def register(self, peer: str, contact: str, source: Addr, expires: float,
                 now: float) -> RegisteredContact:  # fmt: skip
        self.unregister(peer)
        binding = RegisteredContact(contact, source, now + expires)
        self._bindings[peer] = binding
        self._by_source[source] = peer
        return binding

    def unregister(self, peer: str) -> None:
        old = self._bindings.pop(peer, None)
        if old is not None and self._by_source.get(old.source) == peer:
            del self._by_source[old.source]

    def lookup(self, peer: str, now: float) -> RegisteredContact | None:
        binding = self._bindings.get(peer)
        if binding is not None and binding.expires_at <= now:
            self.unregister(peer)
            return None
        return binding

    def peer_at(self, source: Addr, now: float) -> str | None:
        """The registered peer whose current binding came from ``source``, if any."""
        peer = self._by_source.get(source)
        if peer is None or self.lookup(peer, now) is None:
            return None
        return peer

    def retain(self, names: set[str]) -> None:
        """Forget bindings of peers that are no longer registered ones (after a reload)."""
        for peer in [p for p in self._bindings if p not in names]:
            self.unregister(peer)
