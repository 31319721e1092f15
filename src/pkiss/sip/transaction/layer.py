"""The transaction layer: finds the transaction each message belongs to, starts new ones, and
keeps every deadline in one heap. Sans-I/O: ``receive``/``request``/``respond``/``ack`` and
``handle_timer`` return what to send and what to tell the TU; ``next_deadline`` says when to
call ``handle_timer`` next (a late or duplicate call is harmless).

Matching (RFC 3261 §17.1.3, §17.2.3)
    A response belongs to the client transaction of its top Via branch and CSeq method. A
    request belongs to the server transaction of its top Via branch, sent-by and method (an
    ACK to its INVITE; a CANCEL has its own). A request whose branch lacks the magic cookie is
    matched the RFC 2543 way: Request-URI, From tag, Call-ID, CSeq number, top Via, and the To
    tag (of the request for a retransmission, of our response for an ACK).

What the layer does on its own
    * sends 100 Trying for a new INVITE (``send_trying``);
    * builds and sends the ACK for a non-2xx final response to an INVITE (§17.1.1.3);
    * retransmits a 2xx to an INVITE until the ACK comes (§13.3.1.4; UDP only) and reports
      ``AckTimedOut`` after 64*T1 without one;
    * re-sends the TU's ACK when a 2xx it acknowledged with ``ack()`` comes again (§13.2.2.4),
      so such retransmissions never reach the TU;
    * holds a CANCEL until the first provisional response (§9.1, see ``make_cancel``).

What it counts (``/metrics``)
    ``retransmitted``: messages sent again, by a timer (A, E, G, 2xx) or in answer to a
    request that came again; ``retransmissions``: requests that came again for a transaction
    in progress, and 2xx that came again after the ACK was sent.

What it keeps (memory)
    A call leaves several transactions lingering for up to 64*T1 after it ended, as the RFCs
    require; each keeps only what it may still have to send (see the transaction classes):
    a server transaction its last response while a row may re-send it, an INVITE client
    transaction the ACK it built for a non-2xx; requests are forgotten at the final
    response. Side tables empty themselves: a remembered ACK leaves ``_acks`` after 64*T1,
    an INVITE server transaction leaves ``_awaiting_ack`` when it ends, the shared source
    addresses start over past a bound, and the heap of deadlines is compacted when stale
    entries outnumber the live ones.

The TU's side of the contract
    A server transaction in Trying or Proceeding lives until the TU answers it: the TU must
    answer every request it is given (a key from ``RequestReceived``). An INVITE client
    transaction in Proceeding waits for its final response as long as it takes (there is no
    timer B there, §17.1.1.2): the TU must cancel what it no longer wants (after a CANCEL,
    timer B runs again and ends the transaction 64*T1 later, §9.1). A cancelled INVITE may
    still be answered 2xx (the CANCEL lost the race, or no provisional ever came): that 2xx
    reaches the TU like any other, and the TU must ACK it and send BYE.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from ..errors import ParseError
from ..headers import Via
from ..ids import MAGIC_COOKIE
from ..message import Message, Request, Response
from .client import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction
from .events import Addr, RequestReceived, ResponseReceived, Send, TransactionOutput
from .server import InviteServerTransaction, NonInviteServerTransaction, ServerTransaction
from .tables import Config, Input, State, Transaction, timer_durations
from .timers import Timers

__all__ = ["TransactionLayer"]

_AckKey = tuple[str, int, str]

# Enum members are slow to look up on their class: the hot path uses these.
_ACCEPTED, _PROCEEDING, _CALLING = State.ACCEPTED, State.PROCEEDING, State.CALLING

_ADDR_CACHE = 4096
"""Distinct source addresses shared between transactions (then the cache starts over)."""


class _SentAck:
    """An ACK the TU sent for a 2xx (§13.2.2.4), kept for 64*T1 to answer retransmissions."""

    __slots__ = ("ack", "at", "dest", "done", "expires", "key")

    def __init__(self, key: _AckKey, ack: Request, dest: Addr, expires: float) -> None:
        self.key = key
        self.ack = ack
        self.dest = dest
        self.expires = expires
        self.done = False
        self.at: float | None = None

    def next_deadline(self) -> float | None:
        return None if self.done else self.expires

    def fire(self, now: float, out: list[TransactionOutput]) -> None:
        if now >= self.expires:
            self.done = True


_Timed = Transaction | _SentAck


def _ack_key(msg: Message, seq: int) -> _AckKey:
    to = msg.to
    tag = to.tag if to is not None else None
    return (msg.call_id or "", seq, tag or "")


def _sends(out: list[TransactionOutput]) -> int:
    count = 0
    for item in out:
        if type(item) is Send:
            count += 1
    return count


def _branch(via: Via) -> str | None:
    """``via.branch``, sooner: the parameter is nearly always spelled ``branch``."""
    for name, value in via.params:
        if name == "branch" or name.lower() == "branch":
            return "" if value is None else value
    return None


def _server_key(msg: Request, via: Via, seq: int, method: str) -> tuple[str, bool]:
    """The key of the server transaction ``msg`` belongs to (for ``method``: INVITE for an ACK
    or when looking for the INVITE a CANCEL cancels), and whether it is an RFC 3261 key."""
    branch = _branch(via)
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        port = via.port
        return f"{branch}|{via.host.lower()}:{'' if port is None else port}|{method}", True
    # RFC 2543 fallback (§17.2.3); the To tag is checked by the transaction (matches_2543).
    from_ = msg.from_
    tag = from_.tag if from_ is not None else None
    return f"2543|{msg.call_id}|{tag}|{seq}|{method}|{msg.uri_text}|{via}", False


class TransactionLayer:
    """Every client and server transaction of one SIP endpoint. See the module docstring."""

    __slots__ = (
        "_ack_lifetime",
        "_acks",
        "_addrs",
        "_awaiting_ack",
        "_clients",
        "_counter",
        "_heap",
        "_heap_limit",
        "_reliable",
        "_servers",
        "_udp",
        "retransmissions",
        "retransmitted",
    )

    def __init__(self, timers: Timers = Timers(), *, send_trying: bool = True) -> None:  # noqa: B008
        if not (0 < timers.t1 <= timers.t2) or timers.t4 < 0 or timers.timer_d < 0:
            raise ValueError(f"bad timer values: {timers}")
        self._udp = Config(timer_durations(timers, False), timers.t2, False, send_trying)
        self._reliable = Config(timer_durations(timers, True), timers.t2, True, send_trying)
        self._ack_lifetime = timers.timeout_64t1
        self._clients: dict[str, ClientTransaction] = {}
        self._servers: dict[str, ServerTransaction] = {}
        self._acks: dict[_AckKey, _SentAck] = {}
        # INVITE server transactions in Accepted, by (Call-ID, CSeq number): where an ACK for
        # a 2xx (a new transaction, §17.1.1.3) stops the 2xx retransmission.
        self._awaiting_ack: dict[tuple[str, int], InviteServerTransaction] = {}
        self._heap: list[tuple[float, int, _Timed]] = []
        self._heap_limit = 256
        self._counter: Iterator[int] = itertools.count()
        # The transports make an Addr per datagram: a lingering server transaction shares
        # one per peer instead of keeping its own.
        self._addrs: dict[Addr, Addr] = {}
        self.retransmitted = 0
        self.retransmissions = 0

    def has_server(self, key: str) -> bool:
        """Whether a server transaction with this key (see ``_server_key``) is in progress."""
        return key in self._servers

    def __len__(self) -> int:
        """Live transactions (client and server)."""
        return len(self._clients) + len(self._servers)

    def _config(self, addr: Addr) -> Config:
        transport = addr.transport
        if transport == "udp" or transport.lower() == "udp":
            return self._udp
        return self._reliable

    def _shared(self, addr: Addr) -> Addr:
        addrs = self._addrs
        found = addrs.get(addr)
        if found is None:
            if len(addrs) >= _ADDR_CACHE:
                addrs.clear()
            addrs[addr] = found = addr
        return found

    # ------------------------------------------------------------------------ from the network

    def receive(self, msg: Message, source: Addr, now: float) -> list[TransactionOutput]:
        """A parsed message arrived from ``source``."""
        try:
            if isinstance(msg, Request):
                return self._receive_request(msg, source, now)
            if isinstance(msg, Response):
                return self._receive_response(msg, source, now)
        except ParseError:  # a header only parsed on use; the parser validates them all
            pass
        return []

    def _receive_request(self, msg: Request, source: Addr, now: float) -> list[TransactionOutput]:
        via = msg.top_via
        cseq = msg.cseq
        if via is None or cseq is None or msg.call_id is None:
            return []
        method = msg.method
        key, rfc3261 = _server_key(msg, via, cseq.seq, "INVITE" if method == "ACK" else method)
        txn = self._servers.get(key)
        if txn is not None:
            if rfc3261 or txn.matches_2543(msg):
                out = txn.receive_request(msg, source, now)
                self._settle(txn)
                if method != "ACK":  # came again: answered again, or absorbed
                    self.retransmissions += 1
                    self.retransmitted += _sends(out)
                return out
            if method != "ACK":
                return []  # an RFC 2543 look-alike with another To tag: neither new nor ours
        if method == "ACK":
            return self._stray_ack(msg, source, now, cseq.seq)
        cfg = self._config(source)
        source = self._shared(source)
        if method == "INVITE":
            txn = InviteServerTransaction(key, msg, source, cfg, not rfc3261)
        else:  # CANCEL too: its own transaction; the TU decides (find_invite)
            txn = NonInviteServerTransaction(key, msg, source, cfg, not rfc3261)
        out = txn.start(now)
        self._servers[key] = txn
        self._settle(txn)
        return out

    def _stray_ack(
        self, ack: Request, source: Addr, now: float, seq: int
    ) -> list[TransactionOutput]:
        # An ACK for a 2xx (§17.2.3: it matches no transaction). It stops the retransmission of
        # that 2xx (§13.3.1.4) and goes to the TU.
        txn = self._awaiting_ack.get((ack.call_id or "", seq))
        if txn is None:
            return [RequestReceived(ack, source, None)]
        out = txn.receive_request(ack, source, now)
        self._settle(txn)
        if not out or not isinstance(out[-1], RequestReceived):
            out.append(RequestReceived(ack, source, None))  # timer L ran out just before
        return out

    def _receive_response(self, msg: Response, source: Addr, now: float) -> list[TransactionOutput]:
        via = msg.top_via
        cseq = msg.cseq
        if via is None or cseq is None:
            return []
        branch = _branch(via)
        method = cseq.method
        txn = self._clients.get(f"{branch}|{method}") if branch is not None else None
        status = msg.status
        is_2xx_invite = 200 <= status < 300 and method == "INVITE"
        if txn is None:
            if is_2xx_invite:
                # A 2xx retransmission after timer M, or from another fork (§13.2.2.4).
                sent = self._acks.get(_ack_key(msg, cseq.seq))
                if sent is not None:
                    self.retransmissions += 1
                    self.retransmitted += 1
                    return [Send(sent.ack, sent.dest)]
                return [ResponseReceived(msg, source, None)]
            return []  # a stray response is dropped (§17.1.3, §18.1.2)
        if isinstance(txn, InviteClientTransaction):
            if is_2xx_invite:
                sent = self._acks.get(_ack_key(msg, cseq.seq))
                txn.tu_ack = None if sent is None else (sent.ack, sent.dest)
                out = txn.receive_response(msg, source, now)
                txn.tu_ack = None
            else:
                out = txn.receive_response(msg, source, now)
            if txn.pending_cancel is not None:
                cancel = txn.pending_cancel
                txn.pending_cancel = None
                self._send_cancel(txn, cancel, now, out)
        else:
            out = txn.receive_response(msg, source, now)
        self._settle(txn)
        return out

    # ---------------------------------------------------------------------------- from the TU

    def request(
        self, request: Request, dest: Addr, now: float
    ) -> tuple[str, list[TransactionOutput]]:
        """Start a client transaction for ``request`` (any method but ACK), sent to ``dest``.
        The request carries a top Via with a fresh branch; its CSeq method is its method.
        Returns the transaction's key and the outputs (the first ``Send``). Raises
        ``ValueError`` for an ACK, a request without a branch, or a branch already in use."""
        method = request.method
        if method == "ACK":
            raise ValueError("an ACK has no client transaction: use ack()")
        via = request.top_via
        branch = _branch(via) if via is not None else None
        if not branch:
            raise ValueError("the request has no top Via with a branch")
        key = f"{branch}|{method}"
        if key in self._clients:
            raise ValueError(f"client transaction {key!r} exists: use a fresh branch")
        txn: ClientTransaction
        if method == "INVITE":
            txn = InviteClientTransaction(key, request, dest, self._config(dest))
        else:
            txn = NonInviteClientTransaction(key, request, dest, self._config(dest))
        out = txn.start(now)
        self._clients[key] = txn
        self._settle(txn)
        if method == "CANCEL":
            invite = self._clients.get(f"{branch}|INVITE")
            if isinstance(invite, InviteClientTransaction):
                self._cancel_sent(invite, now, out)
        return key, out

    def ack(self, ack: Request, dest: Addr, now: float) -> list[TransactionOutput]:
        """Send the TU's ACK for a 2xx (§13.2.2.4: no transaction) and remember it for 64*T1,
        by Call-ID, CSeq number and To tag, so that a retransmitted 2xx of that dialog is
        answered with it and never reaches the TU again."""
        cseq = ack.cseq
        if cseq is not None and ack.call_id is not None:
            key = _ack_key(ack, cseq.seq)
            old = self._acks.get(key)
            if old is not None:
                old.done = True
            record = _SentAck(key, ack, dest, now + self._ack_lifetime)
            self._acks[key] = record
            self._settle(record)
        return [Send(ack, dest)]

    def respond(self, key: str, response: Response, now: float) -> list[TransactionOutput]:
        """Send ``response`` through server transaction ``key``, to where the request came from
        (RFC 3581 symmetric response). A 2xx to an INVITE is retransmitted until its ACK comes
        (UDP), and ``AckTimedOut`` is reported after 64*T1 without one. An unknown or finished
        key, or a response the state does not allow (after the final one), sends nothing."""
        txn = self._servers.get(key)
        if txn is None:
            return []
        out = txn.respond(response, now)
        if (
            txn.state is _ACCEPTED
            and isinstance(txn, InviteServerTransaction)
            and txn.ack_key is not None
        ):
            self._awaiting_ack[txn.ack_key] = txn
        self._settle(txn)
        return out

    def make_cancel(self, key: str) -> Request | None:
        """The CANCEL for INVITE client transaction ``key`` (§9.1), for the TU to send with
        ``request()`` to the INVITE's destination; None when there is nothing to build.

        §9.1 forbids sending a CANCEL before a provisional response. Asked while the INVITE
        has had none (Calling), this returns None and remembers the wish: the layer then sends
        the CANCEL itself when the first provisional arrives (the responses to that CANCEL do
        not reach the TU; the INVITE's 487 does). None too after a final response, or when a
        CANCEL was already sent. Once a CANCEL is sent, the INVITE transaction ends 64*T1
        later if no final response came (timer B, §9.1)."""
        txn = self._clients.get(key)
        if not isinstance(txn, InviteClientTransaction) or txn.cancel_sent:
            return None
        if txn.state is _PROCEEDING:
            return txn.build_cancel()
        if txn.state is _CALLING:
            txn.remember_cancel()
        return None

    def find_invite(self, cancel: Request) -> str | None:
        """The key of the INVITE server transaction ``cancel`` cancels (§9.2), if that
        transaction is still in Proceeding (no final response sent yet)."""
        try:
            via = cancel.top_via
            cseq = cancel.cseq
            if via is None or cseq is None:
                return None
            key, rfc3261 = _server_key(cancel, via, cseq.seq, "INVITE")
            txn = self._servers.get(key)
            if (
                isinstance(txn, InviteServerTransaction)
                and txn.state is _PROCEEDING
                and (rfc3261 or txn.matches_2543(cancel))
            ):
                return key
        except ParseError:
            pass
        return None

    def _send_cancel(
        self,
        invite: InviteClientTransaction,
        cancel: Request,
        now: float,
        out: list[TransactionOutput],
    ) -> None:
        """Send the CANCEL the TU asked for before the first provisional response."""
        via = cancel.top_via
        key = f"{via.branch if via is not None else ''}|CANCEL"
        if key in self._clients:
            return
        txn = NonInviteClientTransaction(key, cancel, invite.dest, invite.cfg)
        txn.silent = True
        out += txn.start(now)
        self._clients[key] = txn
        self._settle(txn)
        self._cancel_sent(invite, now, out)

    def _cancel_sent(
        self, invite: InviteClientTransaction, now: float, out: list[TransactionOutput]
    ) -> None:
        invite.cancel_sent = True
        out += invite.feed(Input.CANCEL_SENT, None, None, now)
        self._settle(invite)

    # --------------------------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` should be called next, or None when nothing waits."""
        heap = self._heap
        while heap:
            at, _, obj = heap[0]
            if obj.at == at and not obj.done:
                return at
            heapq.heappop(heap)  # lazy deletion of a stopped or rescheduled deadline
        return None

    def handle_timer(self, now: float) -> list[TransactionOutput]:
        """Fire every deadline ``<= now``."""
        out: list[TransactionOutput] = []
        heap = self._heap
        heappop = heapq.heappop
        while heap and heap[0][0] <= now:
            at, _, obj = heappop(heap)
            if obj.at != at or obj.done:
                continue
            obj.at = None
            obj.fire(now, out)
            self._settle(obj)
        if out:
            self.retransmitted += _sends(out)  # a timer's only messages are retransmissions
        return out

    def _compact(self) -> None:
        """Drop the stale entries when they outnumber the live ones (bounded memory)."""
        heap = [e for e in self._heap if e[2].at == e[0] and not e[2].done]
        heapq.heapify(heap)
        self._heap = heap

    def _settle(self, obj: _Timed) -> None:
        """After an object ran: forget it if it has ended, else queue its next deadline."""
        if obj.done:
            obj.at = None
            self._forget(obj)
            return
        at = obj.next_deadline()
        if at != obj.at:
            obj.at = at
            if at is not None:
                heap = self._heap
                heapq.heappush(heap, (at, next(self._counter), obj))
                if len(heap) > self._heap_limit:
                    # Stale entries (stopped or rescheduled deadlines) are dropped when they
                    # outnumber the live ones; the limit is re-checked only when passed.
                    live = len(self._clients) + len(self._servers) + len(self._acks)
                    if len(heap) > 2 * live + 256:
                        self._compact()
                    self._heap_limit = 2 * live + 256

    def _forget(self, obj: _Timed) -> None:
        if isinstance(obj, ClientTransaction):
            if self._clients.get(obj.key) is obj:
                del self._clients[obj.key]
        elif isinstance(obj, ServerTransaction):
            if self._servers.get(obj.key) is obj:
                del self._servers[obj.key]
            if isinstance(obj, InviteServerTransaction):
                key = obj.ack_key
                if key is not None and self._awaiting_ack.get(key) is obj:
                    del self._awaiting_ack[key]
        elif isinstance(obj, _SentAck) and self._acks.get(obj.key) is obj:
            del self._acks[obj.key]
