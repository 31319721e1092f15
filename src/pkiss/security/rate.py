"""Counting events per key in fixed windows, the way Kamailio's pike samples: cheap (one dict
update per event), bounded (the table is emptied at every window), and good enough to tell a
flood or a password-guessing run from a peer's normal traffic. A burst that straddles two
windows can reach twice the limit before it is caught."""

from __future__ import annotations

__all__ = ["WindowCounter"]


class WindowCounter:
    def __init__(self, window: float) -> None:
        self.window = window
        """Seconds a count lasts."""
        self._start = float("-inf")
        self._counts: dict[str, int] = {}

    def hit(self, key: str, now: float) -> int:
        """Count one event for ``key``; returns the count in the current window."""
        if now - self._start >= self.window:
            self._counts.clear()
            self._start = now
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count
