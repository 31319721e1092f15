"""The security filters of one node, cheapest first (``security`` in the config).

Before parsing, per packet: a banned source is dropped; a source that matches no peer is
counted, and banned when it sends more than ``flood.max`` messages in ``flood.window``.
After parsing, for a source that matches no peer: a scanner's fingerprint bans it at once.
From the B2BUA: each refused digest credential counts against its source; ``auth_failures.max``
of them within ``auth_failures.window`` ban it.

Every ban drops the source's packets silently for its duration: no answer tells a scanner that
a SIP server is there (a 403 makes password crackers loop as fast as they can). A peer's own
addresses and ``never_ban`` are never banned: a configured peer is not a stranger, and its
failures are only logged.
"""

from __future__ import annotations

import logging

from ..config import Security as SecurityConfig
from ..sip.message import Request
from .bans import Ban, BanList
from .rate import WindowCounter
from .scanners import ScannerSignatures

__all__ = ["Security"]

log = logging.getLogger("pkiss.security")


class Security:
    def __init__(self, config: SecurityConfig) -> None:
        self.bans = BanList(config.never_ban)
        self.stats = {"banned": 0, "flood": 0, "scanner": 0, "auth_failures": 0}
        self._apply(config)

    def reconfigure(self, config: SecurityConfig) -> None:
        """New thresholds; bans in force are kept."""
        self.bans.never_ban = tuple(config.never_ban)
        self._apply(config)

    def _apply(self, config: SecurityConfig) -> None:
        self.config = config
        self.methods = frozenset(config.methods)
        self.scanners = ScannerSignatures(config.scanners.user_agents)
        self._flood = WindowCounter(config.flood.window)
        self._auth = WindowCounter(config.auth_failures.window)

    # --------------------------------------------------------------------------- per packet
    def banned(self, host: str, now: float) -> bool:
        return self.bans.banned(host, now)

    def stranger_packet(self, host: str, now: float) -> bool:
        """Count a packet from a source no peer matches; True when it is now banned."""
        flood = self.config.flood
        count = self._flood.hit(host, now)
        if count <= flood.max:
            return False
        if count > flood.max + 1:  # told once per window (a never_ban source goes on)
            return self.bans.banned(host, now)
        self.stats["flood"] += 1
        return self._ban(host, flood.ban, f"more than {flood.max} messages in {flood.window:g} s",
                         now)  # fmt: skip

    def stranger_request(self, request: Request, host: str, now: float) -> bool:
        """Inspect a parsed request from a source no peer matches; True when it is a
        scanner's (the source is then banned, the request dropped)."""
        reason = self.scanners.match(request)
        if reason is None:
            return False
        self.stats["scanner"] += 1
        self._ban(host, self.config.scanners.ban, reason, now)
        return True

    def auth_failed(self, host: str, now: float) -> bool:
        """One refused credential from a source no peer matches; True when it is now banned."""
        self.stats["auth_failures"] += 1
        limit = self.config.auth_failures
        count = self._auth.hit(host, now)
        if count < limit.max:
            return False
        if count > limit.max:  # told once per window (a never_ban source goes on)
            return self.bans.banned(host, now)
        return self._ban(host, limit.ban, f"{limit.max} failed authentications in "
                         f"{limit.window:g} s", now)  # fmt: skip

    def _ban(self, host: str, duration: float, reason: str, now: float) -> bool:
        already = self.bans.banned(host, now)
        ban: Ban | None = self.bans.ban(host, duration, reason, now)
        if ban is None:
            log.info("%s not banned (never_ban): %s", host, reason)
            return False
        if not already:
            self.stats["banned"] += 1
            log.warning("banned %s for %g s: %s", host, duration, reason)
        return True
