"""The ban list: source addresses whose every packet is dropped, until a deadline.

Time comes in as ``now`` (seconds on the caller's clock), so expiry is tested without sleeps.
Addresses in ``never_ban`` are never added, whatever the filter that asks. Whoever must act
on a new ban (the inbound connections of its source are closed) ``watch``es the list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Ban", "BanList"]

_PRUNE_EVERY = 1024
"""Bans added between two sweeps of the expired ones (keeps the table bounded)."""


@dataclass(frozen=True, slots=True)
class Ban:
    host: str
    until: float
    """Absolute time on the caller's clock when the ban ends."""
    reason: str


class BanList:
    def __init__(self, never_ban: Iterable[Any] = ()) -> None:
        self._bans: dict[str, Ban] = {}
        self._added = 0
        self.never_ban: tuple[Any, ...] = tuple(never_ban)
        # told of each ban and unban made here (the shared state passes them to other nodes)
        self.on_ban: Callable[[Ban, float], None] | None = None
        self.on_unban: Callable[[str], None] | None = None
        self._watchers: list[Callable[[Ban], None]] = []

    def watch(self, callback: Callable[[Ban], None]) -> None:
        """``callback`` is told of every ban that takes effect, whoever made it (a filter,
        another node, the admin API): what the banned source holds can be closed at once."""
        self._watchers.append(callback)

    def protected(self, host: str) -> bool:
        """True for an address ``never_ban`` covers."""
        if not self.never_ban:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.never_ban)

    def banned(self, host: str, now: float) -> bool:
        ban = self._bans.get(host)
        if ban is None:
            return False
        if ban.until <= now:
            del self._bans[host]
            return False
        return True

    def ban(self, host: str, duration: float, reason: str, now: float, *,
            shared: bool = True) -> Ban | None:  # fmt: skip
        """Ban ``host`` for ``duration`` seconds; None when it is protected. A longer ban
        already in place is kept. ``shared``: tell ``on_ban`` (false for a ban that came from
        another node)."""
        if self.protected(host):
            return None
        current = self._bans.get(host)
        until = now + duration
        if current is not None and current.until >= until:
            return current
        ban = self._bans[host] = Ban(host, until, reason)
        self._added += 1
        if self._added % _PRUNE_EVERY == 0:
            self._bans = {h: b for h, b in self._bans.items() if b.until > now}
        if shared and self.on_ban is not None:
            self.on_ban(ban, now)
        for callback in self._watchers:
            callback(ban)
        return ban

    def unban(self, host: str, *, shared: bool = True) -> bool:
        found = self._bans.pop(host, None) is not None
        if found and shared and self.on_unban is not None:
            self.on_unban(host)
        return found

    def active(self, now: float) -> list[Ban]:
        """The bans in force, soonest to end first."""
        return sorted((b for b in self._bans.values() if b.until > now), key=lambda b: b.until)
