"""Server transactions (RFC 3261 §17.2): the INVITE one (with RFC 6026's Accepted state and
the 2xx retransmission of §13.3.1.4) and the non-INVITE one. What they do is in ``tables.py``;
this file says how each action is done."""

from __future__ import annotations

from ..message import Request, Response, make_response
from .events import AckTimedOut, Addr, RequestReceived, Send, TransactionOutput
from .tables import (
    ANSWERED,
    INVITE_SERVER,
    NON_INVITE_SERVER,
    Action,
    ActionFn,
    Config,
    Input,
    State,
    Timer,
    Transaction,
    resent_by,
    stopped_timers,
)

__all__ = ["InviteServerTransaction", "NonInviteServerTransaction", "ServerTransaction"]

# Enum members are slow to look up on their class: the hot path uses these.
_ACK, _REQUEST = Input.ACK, Input.REQUEST
_TU_1XX, _TU_2XX, _TU_FINAL = Input.TU_1XX, Input.TU_2XX, Input.TU_FINAL
_TIMER_L_NO_ACK, _L, _R2XX = Input.TIMER_L_NO_ACK, Timer.L, Timer.R2XX
_TERMINATED = State.TERMINATED


class ServerTransaction(Transaction):
    """Common part: the request, where it came from (every response goes back there: RFC 3581
    symmetric response), and the last response sent (re-sent on a retransmitted request).

    What it keeps, and for how long (a transaction lingers up to 64*T1 after its final
    response, so it keeps only what it may still have to send):

    * ``request`` until the final response (the layer needs it for 100 Trying; the TU
      answers from the copy it was given); None after.
    * ``last``, the TU's response object itself (so a retransmission is the same object),
      only while a row of the table may still re-send it: forgotten in a state without a
      ``re-send last response`` row (Confirmed), or whose only such rows are timers that are
      not running (Accepted once the ACK came, or on TCP/TLS).
    * ``legacy`` (matched the RFC 2543 way): keeps both, whose To tags matching needs.
    """

    __slots__ = ("last", "legacy", "request", "source")

    def __init__(
        self, key: str, request: Request, source: Addr, cfg: Config, legacy: bool = False
    ) -> None:
        super().__init__(key, cfg)
        self.request: Request | None = request
        self.source = source
        self.last: Response | None = None
        self.legacy = legacy

    @classmethod
    def _cleanup(
        cls, state: State | None, actions: tuple[Action, ...], next_state: State
    ) -> tuple[ActionFn, ...]:
        if next_state is _TERMINATED:
            return (_forget_all,)
        out: list[ActionFn] = []
        if next_state in ANSWERED and state not in ANSWERED:
            out.append(_forget_request)
        # The last response, once no row can re-send it: checked where that may change (a
        # new state, or a row stopping a timer whose row re-sends it).
        keep = resent_by(cls.machine, Action.RESEND_RESPONSE)[next_state]
        if keep is not None and (next_state is not state or stopped_timers(actions) & keep):
            out.append(_forget_last_unless(keep))
        return tuple(out)

    def start(self, now: float) -> list[TransactionOutput]:
        return self._begin(self.request, self.source, now)

    def receive_request(
        self, request: Request, source: Addr, now: float
    ) -> list[TransactionOutput]:
        inp = _ACK if request.method == "ACK" else _REQUEST
        return self.feed(inp, request, source, now)

    def respond(self, response: Response, now: float) -> list[TransactionOutput]:
        status = response.status
        inp = _TU_1XX if status < 200 else _TU_2XX if status < 300 else _TU_FINAL
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
        orig = self.request
        orig_to = orig.to if orig is not None else None
        return tag == (orig_to.tag if orig_to is not None else None)


def _forget_all(txn: ServerTransaction, msg: object, src: object, now: float, out: object) -> None:
    txn.request = txn.last = None


def _forget_request(
    txn: ServerTransaction, msg: object, src: object, now: float, out: object
) -> None:
    if not txn.legacy:
        txn.request = None


def _forget_last_unless(timers: frozenset[Timer]) -> ActionFn:
    """Forget the last response unless one of ``timers`` (whose rows re-send it) runs."""

    def forget(txn: ServerTransaction, msg: object, src: object, now: float, out: object) -> None:
        if txn.retx not in timers and txn.wait not in timers and not txn.legacy:
            txn.last = None

    return forget


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
    transaction quietly instead of reporting ``AckTimedOut``). ``ack_key``: the INVITE's
    (Call-ID, CSeq number), where the layer files it to match the ACK for its 2xx."""

    __slots__ = ("ack_key", "acked")
    machine = INVITE_SERVER

    def __init__(
        self, key: str, request: Request, source: Addr, cfg: Config, legacy: bool = False
    ) -> None:
        super().__init__(key, request, source, cfg, legacy)
        self.acked = False
        cseq = request.cseq
        self.ack_key: tuple[str, int] | None = (
            None if cseq is None else (request.call_id or "", cseq.seq)
        )

    def _timer_input(self, timer: Timer) -> Input:
        if timer is _L and not self.acked:
            return _TIMER_L_NO_ACK
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
    request = txn.request
    if txn.cfg.send_trying and request is not None:
        trying = make_response(request, 100)
        txn.last = trying
        out.append(Send(trying, txn.source))


def _stop_2xx(
    txn: InviteServerTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    txn.stop_timer(_R2XX)
    txn.acked = True  # the 2xx is forgotten (no row re-sends it now: see ServerTransaction)


def _ack_timeout_to_tu(
    txn: InviteServerTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    out.append(AckTimedOut(txn.key, txn.ack_key[0] if txn.ack_key is not None else ""))


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
