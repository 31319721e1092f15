"""The OPTIONS prober: sends the health monitor's probes and reports their outcome.

An out-of-dialog OPTIONS to each due host (new Call-ID, tag and branch, R-URI
``sip:host:port``, nothing of any call or other peer in it, no User-Agent). Any final response
but 408 proves the host alive (a 401, 404 or 503 still proves it answers); a 408, or no final
response within the peer's ``health.timeout``, does not. A late response, and the
transaction's own timeout after the probe's, find no probe and are ignored. Probe responses
never reach call logic.
"""

from __future__ import annotations

from collections.abc import Callable

from ..outbox import Outbox
from ..sip.ids import new_branch, new_call_id, new_tag
from ..sip.message import Request, Response
from ..sip.transaction import Addr
from ..sip.uri import format_host
from ..transport.listeners import LocalAddress
from .monitor import HealthMonitor

__all__ = ["Prober"]


class _Round:
    """The deadline of the monitor's next round of probes."""


_ROUND = _Round()


class Prober:
    """Owner of the probes' client transactions and deadlines."""

    def __init__(self, monitor: HealthMonitor, local: Callable[[Addr], LocalAddress]) -> None:
        self.monitor = monitor
        self.local = local
        self.probes: dict[str, Addr] = {}  # OPTIONS client transaction -> host
        self._round_at: float | None = None

    def start(self, now: float, out: Outbox) -> None:
        """Plan the next round (at start, and after the monitor was rebuilt by a reload)."""
        self._plan(out)

    def _plan(self, out: Outbox) -> None:
        at = self.monitor.next_deadline()
        if at is not None and at != self._round_at:
            self._round_at = at
            out.at(at, self, _ROUND)

    # ---------------------------------------------------------------------------- owner
    def on_deadline(self, ref: object, at: float, now: float, out: Outbox) -> None:
        if ref is _ROUND:
            if at != self._round_at:
                return
            self._round_at = None
            for _, addr in self.monitor.due(now):
                self._probe(addr, now, out)
            self._plan(out)
        elif isinstance(ref, str):
            self._failed(ref, now)  # no final response in time

    def stale(self, ref: object, at: float) -> bool:
        if ref is _ROUND:
            return at != self._round_at
        return ref not in self.probes

    def on_response(self, key: str, response: Response, now: float, out: Outbox) -> None:
        if response.status >= 200:
            addr = self.probes.pop(key, None)
            if addr is not None:
                self.monitor.result(addr, response.status != 408, now)

    def on_timeout(self, key: str, now: float, out: Outbox) -> None:
        self._failed(key, now)

    # ---------------------------------------------------------------------------- probes
    def _probe(self, addr: Addr, now: float, out: Outbox) -> None:
        local = self.local(addr)
        branch = new_branch()
        via = local.via(branch)
        suffix = "" if addr.transport == "udp" else f";transport={addr.transport}"
        uri = f"sip:{format_host(addr.host)}:{addr.port}{suffix}"
        request = Request(
            "OPTIONS",
            uri,
            [
                ("Via", str(via)),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{local.hostport}>;tag={new_tag()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", new_call_id()),
                ("CSeq", "1 OPTIONS"),
                ("Accept", "application/sdp"),
            ],
        )
        request.seed_via([via])
        key = out.request(request, addr, self, now)
        self.probes[key] = addr
        out.at(now + self.monitor.timeout(addr), self, key)

    def _failed(self, key: str, now: float) -> None:
        """No final response in time (or the transaction's own timeout): a failed probe."""
        addr = self.probes.pop(key, None)
        if addr is not None:
            self.monitor.result(addr, False, now)
