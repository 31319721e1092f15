"""Server transactions (RFC 3261 §17.2): the INVITE one (with RFC 6026's Accepted state and
the 2xx retransmission of §13.3.1.4) and the non-INVITE one. What they do is in ``tables.py``;
this file says how each action is done."""

from __future__ import annotations

from ..message import Request, Response, make_response
from .events import AckTimedOut, Addr, RequestReceived, Send, TransactionOutput
from .tables import (
    INVITE_SERVER,
    NON_INVITE_SERVER,
    Action,
    Config,
    Input,
    Timer,
    Transaction,
)

__all__ = ["InviteServerTransaction", "NonInviteServerTransaction", "ServerTransaction"]


class ServerTransaction(Transaction):
    """Common part: the request, where it came from (every response goes back there: RFC 3581
    symmetric response), and the last response sent (re-sent on a retransmitted request)."""

    __slots__ = ("last", "request", "source")

    def __init__(self, key: str, request: Request, source: Addr, cfg: Config) -> None:
        super().__init__(key, cfg)
        self.request = request
        self.source = source
        self.last: Response | None = None

    def start(self, now: float) -> list[TransactionOutput]:
        return self._begin(self.request, self.source, now)

    def receive_request(
        self, request: Request, source: Addr, now: float
    ) -> list[TransactionOutput]:
        inp = Input.ACK if request.method == "ACK" else Input.REQUEST
        return self.feed(inp, request, source, now)

    def respond(self, response: Response, now: float) -> list[TransactionOutput]:
        status = response.status
        inp = Input.TU_1XX if status < 200 else Input.TU_2XX if status < 300 else Input.TU_FINAL
        return self.feed(inp, response, None, now)

    def matches_2543(self, request: Request) -> bool:
        """The To-tag part of RFC 3261 §17.2.3's matching for a request without a magic cookie
        (the rest is in the key): a retransmission has the To tag of the original request; an
        ACK has the To tag of the response it acknowledges."""
        to = request.to
        tag = to.tag if to is not None else None
        if request.method == "ACK":
            last = self.last
            last_to = last.to if last is not None else None
            return tag == (last_to.tag if last_to is not None else None)
        orig = self.request.to
        return tag == (orig.tag if orig is not None else None)


def _to_tu(
    txn: ServerTransaction, msg: Request, src: Addr, now: float, out: list[TransactionOutput]
) -> None:
    # An ACK has no transaction of its own for the TU to answer through: key None.
    out.append(RequestReceived(msg, src, None if msg.method == "ACK" else txn.key))


def _send_response(
    txn: ServerTransaction, msg: Response, src: object, now: float, out: list[TransactionOutput]
) -> None:
    txn.last = msg
    out.append(Send(msg, txn.source))


def _resend_response(
    txn: ServerTransaction, msg: object, src: object, now: float, out: list[TransactionOutput]
) -> None:
    if txn.last is not None:
        out.append(Send(txn.last, txn.source))


class NonInviteServerTransaction(ServerTransaction):
    __slots__ = ()
    machine = NON_INVITE_SERVER


NonInviteServerTransaction.compile(
    {
        Action.TO_TU: _to_tu,
        Action.SEND_RESPONSE: _send_response,
        Action.RESEND_RESPONSE: _resend_response,
    }
)


class InviteServerTransaction(ServerTransaction):
    """``acked``: the ACK for the 2xx came (stops its retransmission; timer L then ends the
    transaction quietly instead of reporting ``AckTimedOut``)."""

    __slots__ = ("acked",)
    machine = INVITE_SERVER

    def __init__(self, key: str, request: Request, source: Addr, cfg: Config) -> None:
        super().__init__(key, request, source, cfg)
        self.acked = False

    def _timer_input(self, timer: Timer) -> Input:
        if timer is Timer.L and not self.acked:
            return Input.TIMER_L_NO_ACK
        return super()._timer_input(timer)


def _send_trying(
    txn: InviteServerTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    # §17.2.1 allows waiting 200 ms for the TU; we answer at once, which stops the
    # INVITE retransmissions soonest. §8.2.6.1: no To tag on a 100.
    if txn.cfg.send_trying:
        trying = make_response(txn.request, 100)
        txn.last = trying
        out.append(Send(trying, txn.source))


def _stop_2xx(
    txn: InviteServerTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    txn.timers.pop(Timer.R2XX, None)
    txn.acked = True


def _ack_timeout_to_tu(
    txn: InviteServerTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    out.append(AckTimedOut(txn.key, txn.request.call_id or ""))


InviteServerTransaction.compile(
    {
        Action.TO_TU: _to_tu,
        Action.SEND_RESPONSE: _send_response,
        Action.RESEND_RESPONSE: _resend_response,
        Action.SEND_TRYING: _send_trying,
        Action.STOP_2XX: _stop_2xx,
        Action.ACK_TIMEOUT_TO_TU: _ack_timeout_to_tu,
    }
)
