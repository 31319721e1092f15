"""Which outcome of an attempt moves a call to the next candidate, and what the caller hears
when none is left (pure decisions; the calls act on them)."""

from __future__ import annotations

__all__ = ["caller_status", "exhausted_status", "fails_over"]


def fails_over(status: int, failover_on: tuple[int, ...], more: bool) -> bool:
    """A final failure from a candidate: try the next one (``failover_on`` names the statuses
    that mean "this host cannot take the call", not "the callee refuses it")."""
    return more and status in failover_on


def exhausted_status(attempts: int) -> int:
    """No candidate left to try: 408 when some were tried (none answered in time or each
    failed over), 404 when none could be (all skipped)."""
    return 408 if attempts else 404


def caller_status(status: int) -> int:
    """What the caller hears for the callee side's failure: redirections are not followed
    across the border (their Contact would reveal the other side), authentication challenges
    are the node's business with that peer, not the caller's."""
    if 300 <= status < 400:
        return 480
    if status in (401, 407):
        return 403
    return status
