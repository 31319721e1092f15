"""RFC 4028 session timers, negotiated on each leg on its own (``peers.*.session_timer``).

Each leg's peer learns only the interval and refresher of its own leg: Session-Expires and
Min-SE never cross from one leg to the other. On a leg where the node is the refresher it
sends a refresh (UPDATE without a body when the peer allows UPDATE, else a re-INVITE with the
session description it last sent on that leg, unchanged) at half the interval (§10); where
the peer is the refresher and no refresh comes, the session expires ``min(32, interval/3)``
seconds before the interval ends, and the call is hung up on both legs. A re-INVITE or UPDATE
answered 2xx on a leg, in either direction, refreshes that leg.

- As UAS (the caller's INVITE, or a refresh a peer sends): an interval below the leg's
  ``min_se`` gets 422 with Min-SE from a UA that supports timers, and is raised to it for one
  that does not (RFC 4028 §9, errata 1687); a larger interval than ``expires`` is lowered to
  it, never below the request's Min-SE; a refresher the request names is kept, else the
  config chooses (``sbc``: uas; ``peer``: uac when the UA supports timers). An INVITE with no
  Session-Expires gets one in the 2xx all the same, the node as refresher for a UA without
  timer support, so every leg has a bound on its life.
- As UAC (the INVITE of an attempt, the node's refreshes): ``Supported: timer``,
  ``Session-Expires`` (``refresher=uac`` when the node refreshes) and ``Min-SE``; a 422 is
  answered once with the interval it asks for (§7.3); a 2xx without Session-Expires means no
  timer on that leg (§7.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..config import SessionTimer as Settings
from ..sip.message import Header, Message, Request, Response

__all__ = [
    "RFC_MIN_SE",
    "LegTimer",
    "Refuse",
    "answer_of",
    "expires_of",
    "negotiate",
    "offer_headers",
    "retry_interval",
]

RFC_MIN_SE = 90
"""The smallest Min-SE there is (RFC 4028 §4)."""


class Refuse(NamedTuple):
    """An interval too small for this leg: 422 with this Min-SE (RFC 4028 §9)."""

    min_se: int


@dataclass(slots=True)
class LegTimer:
    """The session timer of one leg: its interval, who refreshes it, when it is due."""

    interval: int
    ours: bool
    """The node refreshes this leg (else the peer does)."""
    supported: bool
    """The leg's peer supports timers: what it gets says ``Require: timer``."""
    min_se: int
    update: bool = False
    """The leg's peer allows UPDATE: the node's refreshes are bodiless UPDATEs."""
    due: float = 0.0
    """When the node refreshes (``ours``), or when the session expires (otherwise)."""
    refreshing: bool = False
    """A refresh of the node's is in flight on this leg."""

    def start(self, now: float) -> float:
        """Restart the interval (a refresh just succeeded); the new ``due``."""
        interval = self.interval
        self.due = now + (interval / 2 if self.ours else interval - min(32, interval / 3))
        self.refreshing = False
        return self.due

    def headers(self, uac_is_node: bool) -> list[Header]:
        """Session-Expires (and Require: timer) for a message of a transaction on this leg
        whose UAC is the node (``uac_is_node``) or the peer."""
        refresher = "uac" if self.ours == uac_is_node else "uas"
        headers: list[Header] = [("Session-Expires", f"{self.interval};refresher={refresher}")]
        if uac_is_node:
            headers += [("Supported", "timer"), ("Min-SE", str(self.min_se))]
        elif self.supported:
            headers.append(("Require", "timer"))
        return headers


def expires_of(message: Message) -> tuple[int, str | None] | None:
    """Session-Expires: (interval, refresher) or None when absent or malformed."""
    value = message.header("session-expires")
    if value is None:
        return None
    first, *params = value.split(";")
    first = first.strip()
    if not first.isdigit() or len(first) > 9:
        return None
    refresher = None
    for param in params:
        name, _, arg = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = arg.strip().lower() or None
    return int(first), refresher if refresher in ("uac", "uas") else None


def _min_se(message: Message) -> int:
    value = (message.header("min-se") or "").split(";")[0].strip()
    return int(value) if value.isdigit() and len(value) < 10 else RFC_MIN_SE


def _supports(message: Message) -> bool:
    return any(
        v.lower() == "timer" for name in ("supported", "require") for v in message.values(name)
    )


def _allows_update(message: Message) -> bool:
    return any(v.upper() == "UPDATE" for v in message.values("allow"))


def negotiate(request: Request, settings: Settings | None,
              current: LegTimer | None = None) -> LegTimer | Refuse | None:  # fmt: skip
    """The leg's timer as the node answers ``request`` (an INVITE or UPDATE it received);
    None when timers are off for that peer (or the refresh carries none and none ran)."""
    if settings is None:
        return None
    asked = expires_of(request)
    supported = _supports(request)
    floor = max(settings.min_se, RFC_MIN_SE)
    request_min = max(_min_se(request), RFC_MIN_SE)
    if asked is None:
        initial = request.method == "INVITE" and not (request.to and request.to.tag)
        if current is not None or not initial:
            return current  # a refresh that names no interval keeps the leg's
        interval, refresher = settings.expires, None
    else:
        interval, refresher = asked
        if interval < floor:
            if supported:
                return Refuse(floor)
            interval = floor
        interval = min(interval, max(settings.expires, request_min, floor))
    if refresher is None:
        refresher = "uac" if supported and settings.refresher == "peer" else "uas"
    if refresher == "uac" and not supported:
        refresher = "uas"  # a UA without timers never refreshes on purpose
    update = _allows_update(request) or (current is not None and current.update)
    return LegTimer(interval, ours=refresher == "uas", supported=supported,
                    min_se=max(floor, request_min), update=update)  # fmt: skip


def offer_headers(settings: Settings | None, interval: int | None = None) -> list[Header]:
    """Session-Expires and Min-SE of an INVITE the node sends (``interval``: a 422's)."""
    if settings is None:
        return []
    value = max(interval or settings.expires, settings.min_se)
    refresher = ";refresher=uac" if settings.refresher == "sbc" else ""
    return [("Session-Expires", f"{value}{refresher}"),
            ("Min-SE", str(max(settings.min_se, interval or 0)))]  # fmt: skip


def retry_interval(response: Response, sent: int) -> int | None:
    """The interval a 422 asks for, when it is larger than the one sent (else None)."""
    wanted = _min_se(response)
    return wanted if response.has("min-se") and wanted > sent else None


def answer_of(response: Response, settings: Settings | None,
              current: LegTimer | None = None) -> LegTimer | None:  # fmt: skip
    """The leg's timer from a 2xx to an INVITE or UPDATE the node sent (§7.2): None when
    the 2xx names no interval and none ran (a refresh's 2xx without one keeps the leg's)."""
    answer = expires_of(response)
    if answer is None:
        return current
    interval, refresher = answer
    floor = max(settings.min_se if settings is not None else RFC_MIN_SE, RFC_MIN_SE)
    update = _allows_update(response) or (current is not None and current.update)
    return LegTimer(max(interval, RFC_MIN_SE), ours=refresher != "uas",
                    supported=True, min_se=floor, update=update)  # fmt: skip
