"""Client transactions (RFC 3261 §17.1): the INVITE one (with RFC 6026's Accepted state) and
the non-INVITE one. What they do is in ``tables.py``; this file says how each action is done."""

from __future__ import annotations

from ..message import Header, Request, Response
from .events import Addr, ResponseReceived, Send, TransactionOutput, TransactionTimedOut
from .tables import (
    ANSWERED,
    INVITE_CLIENT,
    NON_INVITE_CLIENT,
    Action,
    ActionFn,
    Config,
    Input,
    State,
    Transaction,
)

__all__ = ["ClientTransaction", "InviteClientTransaction", "NonInviteClientTransaction"]

# Enum members are slow to look up on their class: the hot path uses these.
_R1XX, _R2XX, _R2XX_ACKED, _RFINAL = Input.R1XX, Input.R2XX, Input.R2XX_ACKED, Input.RFINAL
_TERMINATED = State.TERMINATED


class ClientTransaction(Transaction):
    """Common part: the request, where it goes, and whether the TU hears of it (``silent``
    is set for a CANCEL the layer sent on its own, §9.1). The request is forgotten once a
    final response came (``ANSWERED``): nothing re-sends it or derives from it after that
    (the ACK for a non-2xx is built on entering Completed)."""

    __slots__ = ("dest", "request", "silent")

    def __init__(self, key: str, request: Request, dest: Addr, cfg: Config) -> None:
        super().__init__(key, cfg)
        self.request: Request | None = request
        self.dest = dest
        self.silent = False

    @classmethod
    def _cleanup(
        cls, state: State | None, actions: tuple[Action, ...], next_state: State
    ) -> tuple[ActionFn, ...]:
        if next_state in ANSWERED and state not in ANSWERED:
            return (_forget_request,)
        return ()

    def start(self, now: float) -> list[TransactionOutput]:
        return self._begin(None, None, now)

    def receive_response(
        self, response: Response, source: Addr, now: float
    ) -> list[TransactionOutput]:
        status = response.status
        inp = _R1XX if status < 200 else _R2XX if status < 300 else _RFINAL
        return self.feed(inp, response, source, now)


def _forget_request(
    txn: ClientTransaction, msg: object, src: object, now: float, out: object
) -> None:
    txn.request = None


def _send_request(
    txn: ClientTransaction, msg: object, src: object, now: float, out: list[TransactionOutput]
) -> None:
    if txn.request is not None:  # always, before the final response
        out.append(Send(txn.request, txn.dest))


def _to_tu(
    txn: ClientTransaction, msg: Response, src: Addr, now: float, out: list[TransactionOutput]
) -> None:
    if not txn.silent:
        out.append(ResponseReceived(msg, src, txn.key))


def _timeout_to_tu(
    txn: ClientTransaction, msg: object, src: object, now: float, out: list[TransactionOutput]
) -> None:
    if not txn.silent:
        out.append(TransactionTimedOut(txn.key))


class NonInviteClientTransaction(ClientTransaction):
    __slots__ = ()
    machine = NON_INVITE_CLIENT


NonInviteClientTransaction.compile(
    {
        Action.SEND_REQUEST: _send_request,
        Action.RESEND_REQUEST: _send_request,
        Action.TO_TU: _to_tu,
        Action.TIMEOUT_TO_TU: _timeout_to_tu,
    }
)


def _top_via_line(request: Request) -> str:
    return request.values("via")[0]


def _hop_headers(invite: Request, to_value: str, method: str) -> list[Header]:
    """Via, Max-Forwards, Route, From, To, Call-ID, CSeq of an ACK or CANCEL derived from
    ``invite`` (§17.1.1.3, §9.1): one Via, the top one of the INVITE; the INVITE's Route."""
    headers: list[Header] = [("Via", _top_via_line(invite)), ("Max-Forwards", "70")]
    headers += [("Route", v) for v in invite.header_lines("route")]
    from_value = invite.header("from")
    if from_value is not None:
        headers.append(("From", from_value))
    headers.append(("To", to_value))
    call_id = invite.header("call-id")
    if call_id is not None:
        headers.append(("Call-ID", call_id))
    cseq = invite.cseq
    seq = cseq.seq if cseq is not None else 0
    headers.append(("CSeq", f"{seq} {method}"))
    return headers


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (§17.1.1.3): the INVITE's Request-URI, top Via,
    Call-ID, From, CSeq number and Route; the To of the response (with its tag)."""
    to_value = response.header("to") or invite.header("to") or ""
    return Request("ACK", invite.uri_text, _hop_headers(invite, to_value, "ACK"))


def build_cancel(invite: Request) -> Request:
    """The CANCEL for ``invite`` (§9.1): the same Request-URI, top Via, Call-ID, From, To
    (no tag), CSeq number and Route."""
    to_value = invite.header("to") or ""
    return Request("CANCEL", invite.uri_text, _hop_headers(invite, to_value, "CANCEL"))


class InviteClientTransaction(ClientTransaction):
    """``tu_ack`` is the ACK (and its destination) the TU sent for a 2xx of this INVITE, set by
    the layer for the time a 2xx is fed. ``cancel_wanted``: the TU asked to cancel before any
    provisional response; ``pending_cancel``: the CANCEL built when the first provisional came,
    for the layer to send; ``cancel_sent``: a CANCEL for this INVITE went out. ``ack``: the
    ACK built for a non-2xx final response, re-sent for each retransmission of it (the only
    message an INVITE client transaction keeps after its final response)."""

    __slots__ = ("ack", "cancel_sent", "cancel_wanted", "pending_cancel", "tu_ack")
    machine = INVITE_CLIENT

    def __init__(self, key: str, request: Request, dest: Addr, cfg: Config) -> None:
        super().__init__(key, request, dest, cfg)
        self.ack: Request | None = None
        self.tu_ack: tuple[Request, Addr] | None = None
        self.cancel_wanted = False
        self.cancel_sent = False
        self.pending_cancel: Request | None = None

    def receive_response(
        self, response: Response, source: Addr, now: float
    ) -> list[TransactionOutput]:
        status = response.status
        if status < 200:
            inp = _R1XX
        elif status < 300:
            inp = _R2XX if self.tu_ack is None else _R2XX_ACKED
        else:
            inp = _RFINAL
        return self.feed(inp, response, source, now)

    @classmethod
    def _cleanup(
        cls, state: State | None, actions: tuple[Action, ...], next_state: State
    ) -> tuple[ActionFn, ...]:
        if next_state is _TERMINATED:
            return (_forget_all,)
        return super()._cleanup(state, actions, next_state)

    def build_cancel(self) -> Request | None:
        """The CANCEL for this INVITE; None once it is answered (the request is gone)."""
        return None if self.request is None else build_cancel(self.request)

    def remember_cancel(self) -> None:
        """The TU wants to cancel (``TU cancels``): an input that neither sends nor needs the
        time, so it is applied without running due timers."""
        self._apply(Input.TU_CANCEL, None, None, 0.0, [])


def _forget_all(
    txn: InviteClientTransaction, msg: object, src: object, now: float, out: object
) -> None:
    txn.request = txn.ack = txn.tu_ack = txn.pending_cancel = None


def _send_ack(
    txn: InviteClientTransaction,
    msg: Response,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    # Built once, from the first final response (before the request is forgotten on entering
    # Completed); retransmitted finals get the same ACK.
    if txn.ack is None and txn.request is not None:
        txn.ack = build_ack(txn.request, msg)
    if txn.ack is not None:
        out.append(Send(txn.ack, txn.dest))


def _resend_tu_ack(
    txn: InviteClientTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    if txn.tu_ack is not None:
        ack, dest = txn.tu_ack
        out.append(Send(ack, dest))


def _remember_cancel(
    txn: InviteClientTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    txn.cancel_wanted = True


def _send_cancel_if_asked(
    txn: InviteClientTransaction,
    msg: object,
    src: object,
    now: float,
    out: list[TransactionOutput],
) -> None:
    # §9.1: the CANCEL waits for a provisional response. The layer starts its own client
    # transaction (it cannot be done from inside this one).
    if txn.cancel_wanted and not txn.cancel_sent:
        txn.pending_cancel = txn.build_cancel()


InviteClientTransaction.compile(
    {
        Action.SEND_REQUEST: _send_request,
        Action.RESEND_REQUEST: _send_request,
        Action.TO_TU: _to_tu,
        Action.TIMEOUT_TO_TU: _timeout_to_tu,
        Action.SEND_ACK: _send_ack,
        Action.RESEND_TU_ACK: _resend_tu_ack,
        Action.REMEMBER_CANCEL: _remember_cancel,
        Action.SEND_CANCEL_IF_ASKED: _send_cancel_if_asked,
    }
)
