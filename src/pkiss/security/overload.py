"""Overload control: when the node falls behind, new calls are turned away early and cheaply,
so that the calls in progress (their ACKs, BYEs, re-INVITEs, and every response) keep the
processor.

Falling behind is measured at a tick scheduled every ``interval`` seconds, two ways: how late
the tick runs (the event loop's lag: work queued ahead of it), and how full the SIP UDP
sockets' receive queues are (datagrams the node has not read yet: the loop reads a few per
turn, so a queue can grow while the loop looks on time). ``ticks`` ticks in a row over
``high`` (lag) or ``backlog_high`` (queue) make the node overloaded, ``ticks`` ticks in a row
under ``low`` and ``backlog_low`` make it fine again (hysteresis, so that it does not flap,
and one stall, a reload or a collection, is no overload).

While overloaded, a new INVITE (no To tag) not admitted gets ``503 Service Unavailable`` with
``Retry-After`` built from its raw bytes, without parsing it, without a transaction or a call
(RFC 3261 §21.5.4: the client tries again later or elsewhere), and the ACK of that 503 is
recognised by its To tag and dropped the same way. Everything else is handled as usual. What
arrives from strangers has already been dropped before this (admission), so only peers are
told to come back later.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

__all__ = ["Overload", "is_refusal_ack", "server_key", "turn_away"]

_TAG = b"ovl"  # To tag prefix of the node's overload 503s: their ACKs are dropped unread
_LINE = re.compile(
    rb"(?im)^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*"
)
_TO = re.compile(rb"(?im)^(?:to|t)[ \t]*:([^\r\n]*)")
_TOP_VIA = re.compile(
    rb"(?im)^(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*\S+[ \t]+([^;,\s]+)"
    rb"[^,\r\n]*?;[ \t]*branch[ \t]*=[ \t]*(z9hG4bK[^;,\s]*)"
)


class Overload:
    """The node's load (the event loop's lag, the receive queues' fill) and what share of new
    calls it admits."""

    def __init__(self, high: float = 0.05, low: float = 0.015, interval: float = 0.02,
                 ticks: int = 5, retry_after: int = 2, backlog_high: float = 0.25,
                 backlog_low: float = 0.02) -> None:  # fmt: skip
        if not (0 < low < high and 0 < backlog_low < backlog_high):
            raise ValueError("overload thresholds: 0 < low < high")
        self.high = high
        self.low = low
        self.backlog_high = backlog_high
        self.backlog_low = backlog_low
        self.interval = interval
        self.ticks = ticks  # late ticks in a row that make the node overloaded
        self.retry_after = retry_after
        self.lag = 0.0  # smoothed, for the metrics
        self.backlog = 0.0
        self.active = False
        self.share = 1.0  # of new calls admitted while overloaded
        self.turned_away = 0  # new INVITEs answered 503 while overloaded
        self.episodes = 0  # times the node became overloaded
        self._streak = 0
        self._credit = 0.0

    def tick(self, lateness: float, backlog: float = 0.0) -> bool:
        """A tick ran ``lateness`` seconds after it was due, the receive queues ``backlog``
        full (0 to 1): the verdict, updated. Overloaded, the share of new calls admitted
        goes down by 15 % at each tick over the thresholds with the queue still growing, holds
        while it drains, and goes back up by 2 points at each tick under them (additive
        increase, multiplicative decrease: it settles where the node keeps up); back to all of
        them with the queues empty, the overload is over."""
        lateness = max(lateness, 0.0)
        self.lag += 0.3 * (lateness - self.lag)
        previous, self.backlog = self.backlog, backlog
        over = lateness > self.high or backlog > self.backlog_high
        if not self.active:
            self._streak = self._streak + 1 if over else 0
            if self._streak >= self.ticks:
                self._streak = 0
                self.active = True
                self.share = 0.95
                self.episodes += 1
        elif over:
            if backlog >= previous or lateness > self.high:
                self.share = max(0.05, self.share * 0.85)
        else:
            self.share = min(1.0, self.share + 0.02)
            calm = lateness < self.low and backlog < self.backlog_low
            self.active = self.share < 1.0 or not calm
        return self.active

    def admit(self) -> bool:
        """Whether a new call is admitted now (its share, spread evenly); counts refusals."""
        if not self.active:
            return True
        self._credit += self.share
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        self.turned_away += 1
        return False

    def refuse(self, data: bytes, known: Callable[[str], bool] | None = None) -> bytes | None:
        """While overloaded: the 503 for a new INVITE that is not admitted (None for anything
        else, or when the node is not overloaded). ``known`` tells an INVITE server
        transaction's key the node already has: a retransmission of an INVITE it admitted is
        never turned away."""
        if not self.active:
            return None
        response = turn_away(data, self.retry_after)
        if response is None:
            return None
        if known is not None:
            key = server_key(data)
            if key is not None and known(key):
                return None
        return None if self.admit() else response


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


def server_key(data: bytes) -> str | None:
    """The INVITE server transaction key of an INVITE's raw bytes, as the transaction layer
    writes it (RFC 3261 §17.2.3: branch, sent-by, method); None without an RFC 3261 branch."""
    end = data.find(b"\r\n\r\n")
    found = _TOP_VIA.search(data[: end if end >= 0 else len(data)])
    if found is None:
        return None
    sent_by, branch = found.group(1).decode("latin-1"), found.group(2).decode("latin-1")
    if sent_by.startswith("["):
        host, _, rest = sent_by.partition("]")
        host, port = host + "]", rest.lstrip(":")
    else:
        host, _, port = sent_by.partition(":")
    return f"{branch}|{host.lower()}:{port}|INVITE"


def is_refusal_ack(data: bytes) -> bool:
    """The ACK of one of the node's overload 503s (its To tag), to drop unread."""
    if not data.startswith(b"ACK "):
        return False
    end = data.find(b"\r\n\r\n")
    to = _TO.search(data[: end if end >= 0 else len(data)])
    return to is not None and b"tag=" + _TAG in to.group(1)
