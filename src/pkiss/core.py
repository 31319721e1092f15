"""The transaction-user layer: owns the ``TransactionLayer`` and one deadline heap, and hands
every request, response, timeout and deadline to its one owner.

Requests, by what they are: an ACK, a CANCEL, a request within a dialog (a To tag) and a new
INVITE go to the calls; a REGISTER to the registrar (when a PBX registers with the node);
an OPTIONS outside a dialog is answered here with the node's capabilities; other requests
outside a dialog get 481, 405 or 501. Responses and transaction timeouts go to the owner that
started the client transaction; deadlines to the owner that set them.

Sans-I/O: ``receive(message, source, peer, now)`` and ``handle_timer(now)`` return the
``Send``s to transmit, ``next_deadline()`` says when to be called back.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import NamedTuple, TypeAlias

from .b2bua import Anchoring, Calls
from .b2bua.calls import CallEnded, CallRefused
from .b2bua.headers_policy import ALLOW, KNOWN_METHODS, capabilities
from .config import Config, Peer
from .health import HealthMonitor, Prober
from .media import MediaEngine
from .outbox import Outbox, Owner
from .registration import Bindings, Registrar, Registrations
from .routing import Limits, Router
from .security.auth import DigestAuth
from .sip.ids import new_tag
from .sip.message import Header, Message, Request, Response, make_response
from .sip.transaction import (
    AckTimedOut,
    Addr,
    RequestReceived,
    ResponseReceived,
    Send,
    Timers,
    TransactionLayer,
    TransactionOutput,
    TransactionTimedOut,
)
from .transport.listeners import LocalAddress

__all__ = ["Deadline", "TransactionUser", "assemble"]


# What an owner's deadline refers to. Named, because mypyc (setup.py) cannot build a NamedTuple
# with a field annotated ``object``: it looks the annotation up in the module's globals.
Ref: TypeAlias = object


HORIZON = 40.0
"""Seconds ahead the deadline heap looks. A deadline due later (a session refresh in 15
minutes, an answer timeout in 2) is looked at when it comes within this horizon: its owner
says whether it still wants it (``stale``), and an ended call's deadlines go then. The heap
holds at most the deadlines set in the last ``HORIZON`` seconds (the INVITE transactions' 32
seconds pass without a look), and no pass over the whole heap ever pauses the node: one over
90,000 deadlines at 700 calls/s took 100-140 ms."""


class Deadline(NamedTuple):
    wake: float  # when the heap looks at it: ``at``, or sooner when ``at`` is beyond the horizon
    seq: int  # ties keep the order deadlines were set in (an owner is never compared)
    at: float
    owner: Owner
    ref: Ref


class TransactionUser:
    """Every transaction of one node, and the owners of what they carry."""

    def __init__(
        self,
        calls: Calls,
        registrar: Registrar,
        registrations: Registrations,
        prober: Prober,
        timers: Timers | None = None,
        max_transactions: int = 400000,
    ) -> None:
        timers = timers or Timers()
        self.max_transactions = max_transactions  # the node's limits.transactions
        self.layer = TransactionLayer(timers)
        self.t1 = timers.t1
        self.calls = calls
        self.registrar = registrar
        self.registrations = registrations
        self.prober = prober
        self._clients: dict[str, Owner] = {}  # client transaction -> its owner
        self._deadlines: list[Deadline] = []
        self._now = 0.0  # the latest time a driver was called with
        self._seq = itertools.count()
        self._sends: list[Send] = []
        self._forget = _Forget(self._clients)

    # ------------------------------------------------------------------------------ driving
    def start(self, now: float) -> list[Send]:
        """The owners' first deadlines (probes, REGISTERs): due with no traffic at all."""
        self._now = now
        self.prober.start(now, self)
        self.registrations.start(now, self)
        return self._flush()

    def receive(self, message: Message, source: Addr, peer: Peer | None, now: float) -> list[Send]:
        self._now = now
        self._run(self.layer.receive(message, source, now), peer, now)
        return self._flush()

    def handle_timer(self, now: float) -> list[Send]:
        self._now = now
        self._run(self.layer.handle_timer(now), None, now)
        deadlines = self._deadlines
        horizon = now + HORIZON
        while deadlines and deadlines[0].wake <= now:
            entry = heapq.heappop(deadlines)
            if entry.at <= now:
                entry.owner.on_deadline(entry.ref, entry.at, now, self)
            elif not entry.owner.stale(entry.ref, entry.at):  # came within the horizon
                at = entry.at
                wake = at if at < horizon else horizon
                heapq.heappush(deadlines, Deadline(wake, entry.seq, at, entry.owner, entry.ref))
        return self._flush()

    def next_deadline(self) -> float | None:
        deadlines = self._deadlines
        while deadlines and deadlines[0].owner.stale(deadlines[0].ref, deadlines[0].at):
            heapq.heappop(deadlines)
        layer = self.layer.next_deadline()
        mine = deadlines[0].wake if deadlines else None
        if layer is None:
            return mine
        return layer if mine is None else min(layer, mine)

    def hangup_all(self, now: float) -> list[Send]:
        """Shutdown: end every call in progress."""
        self._now = now
        self.calls.hangup_all(now, self)
        return self._flush()

    def hangup(self, call_id: str, reason: str, now: float) -> list[Send] | None:
        """End one call in progress (by its caller's Call-ID); None: no such call."""
        self._now = now
        found = self.calls.hangup(call_id, reason, now, self)
        sends = self._flush()
        return sends if found else None

    def hangup_idle(self, now: float, timeout: float) -> list[Send]:
        """End the answered calls whose media has been silent ``timeout`` seconds."""
        self._now = now
        self.calls.hangup_idle(now, timeout, self)
        return self._flush()

    def unregister_all(self, now: float) -> list[Send]:
        """Shutdown: remove the node's bindings from the carriers' registrars."""
        self._now = now
        self.registrations.withdraw_all(now, self)
        return self._flush()

    def reschedule(self, now: float) -> list[Send]:
        """After a reload: the prober's and the registrations' new deadlines."""
        self._now = now
        self.prober.start(now, self)
        self.registrations.start(now, self)
        return self._flush()

    def _flush(self) -> list[Send]:
        sends, self._sends = self._sends, []
        return sends

    # --------------------------------------------------------------------------- the outbox
    def respond(self, key: str | None, response: Response, now: float) -> None:
        if key is not None:
            self._run(self.layer.respond(key, response, now), None, now)

    def request(self, request: Request, dest: Addr, owner: Owner, now: float) -> str:
        key, outputs = self.layer.request(request, dest, now)
        self._clients[key] = owner
        self._run(outputs, None, now)
        return key

    def ack(self, ack: Request, dest: Addr, now: float) -> None:
        self._run(self.layer.ack(ack, dest, now), None, now)

    def make_cancel(self, invite_key: str) -> Request | None:
        return self.layer.make_cancel(invite_key)

    def find_invite(self, cancel: Request) -> str | None:
        return self.layer.find_invite(cancel)

    def at(self, deadline: float, owner: Owner, ref: object) -> None:
        horizon = self._now + HORIZON
        wake = deadline if deadline < horizon else horizon
        heapq.heappush(self._deadlines, Deadline(wake, next(self._seq), deadline, owner, ref))

    # --------------------------------------------------------------------------- dispatching
    def _run(self, outputs: list[TransactionOutput], peer: Peer | None, now: float) -> None:
        # What the transaction layer sends by itself (100 Trying, the ACK of a non-2xx) leaves
        # before what an owner does about the same message (a peer may insist on that order).
        events = []
        sends = self._sends
        for o in outputs:
            if type(o) is Send:
                sends.append(o)
            else:
                events.append(o)
        for o in events:
            if isinstance(o, RequestReceived):
                self._on_request(o.request, o.source, o.key, peer, now)
            elif isinstance(o, ResponseReceived):
                key = o.key
                if key is None:
                    continue  # a stray 2xx: the layer re-sends our ACK when it has one
                owner = self._clients.get(key)
                if owner is not None:
                    status = o.response.status
                    if status >= 200:
                        cseq = o.response.cseq
                        if status < 300 and cseq is not None and cseq.method == "INVITE":
                            # 2xx from other forks may follow (RFC 6026 Accepted, 64*T1)
                            self.at(now + 64 * self.t1, self._forget, key)
                        else:
                            del self._clients[key]
                    owner.on_response(key, o.response, now, self)
            elif isinstance(o, TransactionTimedOut):
                owner = self._clients.pop(o.key, None)
                if owner is not None:
                    owner.on_timeout(o.key, now, self)
            elif isinstance(o, AckTimedOut):
                self.calls.on_ack_timeout(o.key, now, self)

    def _on_request(
        self, request: Request, source: Addr, key: str | None, peer: Peer | None, now: float
    ) -> None:
        method = request.method
        calls = self.calls
        if method == "ACK":
            calls.on_ack(request, now, self)
            return
        if method == "CANCEL":
            calls.on_cancel(request, key, now, self)
            return
        to = request.to
        if to is not None and to.tag:
            calls.in_dialog(request, key, now, self)
            return
        if len(self.layer) > self.max_transactions:
            # a new request when the node holds too many: turned away, nothing else kept for
            # it (its transaction ends with this answer); requests within dialogs go on
            self._answer(key, request, 503, now, [("Retry-After", "5")])
            return
        if method == "INVITE":
            calls.on_invite(request, source, key, peer, now, self)
        elif method == "OPTIONS":
            self._answer(key, request, 200, now, capabilities())
        elif method in ("BYE", "PRACK", "UPDATE", "INFO"):
            self._answer(key, request, 481, now)
        elif method == "REGISTER" and self.registrar.active:
            self.registrar.on_register(request, source, key, now, self)
        elif method in KNOWN_METHODS:
            self._answer(key, request, 405, now, [("Allow", ALLOW)])
        else:
            self._answer(key, request, 501, now, [("Allow", ALLOW)])

    def _answer(
        self, key: str | None, request: Request, status: int, now: float,
        headers: list[Header] | None = None,
    ) -> None:  # fmt: skip
        self.respond(key, make_response(request, status, to_tag=new_tag(), headers=headers or []),
                     now)  # fmt: skip


class _Forget:
    """Drops an answered INVITE's owner once its transaction is over (its deadline ref is the
    transaction's key)."""

    def __init__(self, clients: dict[str, Owner]) -> None:
        self.clients = clients

    def on_response(self, key: str, response: Response, now: float, out: Outbox) -> None:
        pass

    def on_timeout(self, key: str, now: float, out: Outbox) -> None:
        pass

    def on_deadline(self, ref: object, at: float, now: float, out: Outbox) -> None:
        if isinstance(ref, str):
            self.clients.pop(ref, None)

    def stale(self, ref: object, at: float) -> bool:
        return ref not in self.clients


def assemble(
    config: Config,
    local: Callable[[Addr], LocalAddress],
    now: float,
    *,
    media: MediaEngine | None = None,
    limits: Limits | None = None,
    bindings: Bindings | None = None,
    on_auth_failure: Callable[[Addr, float], None] | None = None,
    on_end: CallEnded | None = None,
    on_refused: CallRefused | None = None,
    timers: Timers | None = None,
) -> TransactionUser:
    """The sans-I/O core of a node and its owners, from a config: calls, registrar,
    outbound registrations, OPTIONS prober (``local``: the node's own address toward a
    destination)."""
    bindings = bindings if bindings is not None else Bindings()
    auth = DigestAuth(lambda source: local(source).host, on_auth_failure)
    monitor = HealthMonitor(config.peers, now)
    calls = Calls(
        Router(config.peers, config.routes), config.peers, local, auth, limits=limits,
        monitor=monitor, bindings=bindings, anchoring=Anchoring(media, config.media.mode),
        on_end=on_end, on_refused=on_refused, max_calls=config.limits.calls,
    )  # fmt: skip
    return TransactionUser(
        calls,
        Registrar(config.peers, auth, bindings),
        Registrations(config.peers, now, local),
        Prober(monitor, local),
        timers,
        max_transactions=config.limits.transactions,
    )
