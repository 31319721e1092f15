"""Overload control: when the node falls behind, new calls are turned away early and cheaply,
so that the calls in progress (their ACKs, BYEs, re-INVITEs, and every response) keep the
processor.

Falling behind is measured as the event loop's lag: a tick is scheduled every ``interval``
seconds and its lateness (the work queued ahead of it: datagrams waiting, timers due) is
smoothed. Over ``high`` the node is overloaded until the lag is back under ``low``
(hysteresis, so that it does not flap at every tick).

While overloaded, a new INVITE (no To tag) gets ``503 Service Unavailable`` with
``Retry-After`` built from its raw bytes, without parsing it, without a transaction or a call
(RFC 3261 §21.5.4: the client tries again later or elsewhere), and the ACK of that 503 is
recognised by its To tag and dropped the same way. Everything else is handled as usual. What
arrives from strangers has already been dropped before this (admission), so only peers are
told to come back later.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["Overload", "is_refusal_ack", "turn_away"]

_TAG = b"ovl"  # To tag prefix of the node's overload 503s: their ACKs are dropped unread
_LINE = re.compile(
    rb"(?im)^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*"
)
_TO = re.compile(rb"(?im)^(?:to|t)[ \t]*:([^\r\n]*)")


class Overload:
    """The node's load, as the lag of its event loop (seconds), and the verdict on it."""

    def __init__(self, high: float = 0.05, low: float = 0.015, interval: float = 0.02,
                 ticks: int = 3, retry_after: int = 2) -> None:  # fmt: skip
        if not 0 < low < high:
            raise ValueError("overload thresholds: 0 < low < high")
        self.high = high
        self.low = low
        self.interval = interval
        self.ticks = ticks  # late (or calm) ticks in a row that change the verdict
        self.retry_after = retry_after
        self.lag = 0.0  # smoothed, for the metrics
        self.active = False
        self.turned_away = 0  # new INVITEs answered 503 while overloaded
        self.episodes = 0  # times the node became overloaded
        self._streak = 0

    def tick(self, lateness: float) -> bool:
        """A tick ran ``lateness`` seconds after it was due: the verdict, updated. One stall
        (a reload, a collection) makes one late tick; overload makes every tick late."""
        lateness = max(lateness, 0.0)
        self.lag += 0.3 * (lateness - self.lag)
        changes = lateness < self.low if self.active else lateness > self.high
        self._streak = self._streak + 1 if changes else 0
        if self._streak >= self.ticks:
            self._streak = 0
            self.active = not self.active
            self.episodes += self.active
        return self.active

    def refuse(self, data: bytes) -> bytes | None:
        """While overloaded: the 503 for a new INVITE (None for anything else, or when the
        node is not overloaded)."""
        if not self.active:
            return None
        response = turn_away(data, self.retry_after)
        if response is not None:
            self.turned_away += 1
        return response


def turn_away(data: bytes, retry_after: int) -> bytes | None:
    """``503`` with ``Retry-After`` for the raw bytes of a new INVITE (None when they are not
    one, or lack a header a response needs). Only the headers a response copies are read."""
    if not data.startswith(b"INVITE "):
        return None
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else len(data)]
    to = _TO.search(head)
    if to is None or b";tag=" in to.group(1).lower().replace(b" ", b""):
        return None  # within a dialog (a re-INVITE): handled as usual
    lines = [m.group(0) for m in _LINE.finditer(head)]
    names = {line.split(b":", 1)[0].strip().lower() for line in lines}
    if not (names & {b"via", b"v"} and names & {b"from", b"f"} and names & {b"call-id", b"i"}
            and b"cseq" in names):  # fmt: skip
        return None
    out = [b"SIP/2.0 503 Service Unavailable"]
    tag = b";tag=" + _TAG + secrets.token_hex(4).encode()
    for line in lines:
        name = line.split(b":", 1)[0].strip().lower()
        out.append(line + tag if name in (b"to", b"t") else line)
    out += [b"Retry-After: " + str(retry_after).encode(), b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out)


def is_refusal_ack(data: bytes) -> bool:
    """The ACK of one of the node's overload 503s (its To tag), to drop unread."""
    if not data.startswith(b"ACK "):
        return False
    end = data.find(b"\r\n\r\n")
    to = _TO.search(data[: end if end >= 0 else len(data)])
    return to is not None and b"tag=" + _TAG in to.group(1)
