"""RFC 3261 §17 timer values (Table 4). Durations in seconds."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Timers"]


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    """RTT estimate; the base of retransmission intervals (seconds)."""
    t2: float = 4.0
    """Maximum retransmission interval for non-INVITE requests and INVITE responses (seconds)."""
    t4: float = 5.0
    """Maximum time a message stays in the network (seconds)."""
    timer_d: float = 32.0
    """Wait time for response retransmissions after a non-2xx final to INVITE, UDP (seconds)."""

    @property
    def timeout_64t1(self) -> float:
        """Timers B, F, H, J (UDP), L, M: 64*T1."""
        return 64 * self.t1
