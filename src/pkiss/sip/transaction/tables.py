"""The four transaction state machines of RFC 3261 §17 (with RFC 6026's Accepted states), as data.

Rules of this file
------------------
* Everything that decides what a transaction does lives here: the states, the inputs, the
  actions, the four tables, the timer values, and the small interpreter (``Transaction``) that
  runs a table. ``client.py`` and ``server.py`` only say how each action is carried out;
  ``layer.py`` only finds the transaction a message belongs to.
* A table maps ``(state, input) -> (actions, next state)``. The actions run in order, then the
  state changes. A machine's start row gives the actions run when the transaction is created
  and its first state.
* A pair missing from a table is ignored: no action, no state change. That is how a stale timer
  or a TU response after the final one is dropped. Every input a state can receive from the
  network is listed, even when it is only absorbed, so the tables document the absorption.
* Entering Terminated stops every timer; the layer then forgets the transaction.
* Timers are deadlines. A timer fires once, when ``now >= deadline``, and is fed as its input
  (``timer A``...); timers due at the same call fire in deadline order (on a tie, in the order
  they were started), before the message that came with that call. Retransmission timers
  (A, E, G, 2xx) are restarted by an action (``restart A``: the interval doubles), and are never
  armed on a reliable transport. A timer of duration 0 (D, I, J, K on TCP/TLS) fires within the
  call that started it.
* Two inputs are refined by what the machine remembers. ``2xx (ACK sent)`` is a 2xx to an
  INVITE for which the TU already sent an ACK through ``TransactionLayer.ack`` (the layer
  re-sends that ACK instead of bothering the TU, §13.2.2.4). ``timer L, no ACK`` is timer L of
  an INVITE server transaction whose 2xx was never acknowledged (§13.3.1.4).
* Two jobs of the TU core are done here because every TU needs them the same way: retransmitting
  a 2xx to an INVITE until the ACK comes (``timer 2xx``, §13.3.1.4) and waiting for a provisional
  response before sending a CANCEL (§9.1, ``TU cancels``). Timer B is re-armed when a CANCEL is
  sent for an INVITE in Proceeding: §9.1 lets the UAC give up 64*T1 after the CANCEL if no final
  response came, and this is what keeps a transaction from living forever.
* Memory follows from the tables too. A transaction runs one retransmission timer and one
  other at most (``check_timer_slots``), so it holds two timer slots, not a dict. And it keeps
  only what a row may still send: the rows end with steps derived from the tables
  (``Transaction._cleanup``) that drop the request on reaching a state after the final
  response (``ANSWERED``) and a server's last response once no row can re-send it
  (``resent_by``). Lingering transactions (64*T1 after a call) are most of the live ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from .events import Addr, TransactionOutput
from .timers import Timers

__all__ = [
    "ANSWERED",
    "INVITE_CLIENT",
    "INVITE_SERVER",
    "MACHINES",
    "NON_INVITE_CLIENT",
    "NON_INVITE_SERVER",
    "TIMERS",
    "Action",
    "Config",
    "Input",
    "Machine",
    "State",
    "Timer",
    "TimerSpec",
    "Transaction",
    "check_timer_slots",
    "render_markdown",
    "resent_by",
    "running_timers",
    "stopped_timers",
    "timer_durations",
]


class State(StrEnum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Timer(StrEnum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    R2XX = "2xx"


class Input(StrEnum):
    # responses from the network (client transactions)
    R1XX = "1xx"
    R2XX = "2xx"
    R2XX_ACKED = "2xx (ACK sent)"
    RFINAL = "300-699"
    # requests from the network (server transactions): the request again, or an ACK
    REQUEST = "request"
    ACK = "ACK"
    # from the TU
    TU_1XX = "TU 1xx"
    TU_2XX = "TU 2xx"
    TU_FINAL = "TU 300-699"
    TU_CANCEL = "TU cancels"
    CANCEL_SENT = "CANCEL sent"
    # timers
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_L_NO_ACK = "timer L, no ACK"
    TIMER_M = "timer M"
    TIMER_2XX = "timer 2xx"


TIMER_INPUT: Mapping[Timer, Input] = {
    Timer.A: Input.TIMER_A,
    Timer.B: Input.TIMER_B,
    Timer.D: Input.TIMER_D,
    Timer.E: Input.TIMER_E,
    Timer.F: Input.TIMER_F,
    Timer.G: Input.TIMER_G,
    Timer.H: Input.TIMER_H,
    Timer.I: Input.TIMER_I,
    Timer.J: Input.TIMER_J,
    Timer.K: Input.TIMER_K,
    Timer.L: Input.TIMER_L,
    Timer.M: Input.TIMER_M,
    Timer.R2XX: Input.TIMER_2XX,
}


class Action(StrEnum):
    # messages
    SEND_REQUEST = "send request"
    RESEND_REQUEST = "re-send request"
    SEND_ACK = "send ACK"
    RESEND_TU_ACK = "re-send the TU's ACK"
    SEND_TRYING = "send 100 Trying"
    SEND_RESPONSE = "send response"
    RESEND_RESPONSE = "re-send last response"
    # to the TU
    TO_TU = "to TU"
    TIMEOUT_TO_TU = "TransactionTimedOut to TU"
    ACK_TIMEOUT_TO_TU = "AckTimedOut to TU"
    # CANCEL (§9.1)
    REMEMBER_CANCEL = "remember the CANCEL"
    SEND_CANCEL_IF_ASKED = "send CANCEL if remembered"
    # timers
    START_A = "start A"
    RESTART_A = "restart A (x2)"
    STOP_A = "stop A"
    START_B = "start B"
    STOP_B = "stop B"
    START_D = "start D"
    START_E = "start E"
    RESTART_E = "restart E (x2, max T2)"
    RESTART_E_T2 = "restart E (T2)"
    STOP_E = "stop E"
    START_F = "start F"
    STOP_F = "stop F"
    START_G = "start G"
    RESTART_G = "restart G (x2, max T2)"
    STOP_G = "stop G"
    START_H = "start H"
    STOP_H = "stop H"
    START_I = "start I"
    START_J = "start J"
    START_K = "start K"
    START_L = "start L"
    START_M = "start M"
    START_2XX = "start 2xx"
    RESTART_2XX = "restart 2xx (x2, max T2)"
    STOP_2XX = "stop 2xx (ACK came)"


# ------------------------------------------------------------------------------------ timers


@dataclass(frozen=True, slots=True)
class TimerSpec:
    """A timer: what it is for, where the RFC defines it, and its duration on UDP and on a
    reliable transport (TCP, TLS). A duration is one of ``T1``, ``T4``, ``64*T1``, ``D``
    (``Timers.timer_d``), ``0``, or None (never armed). A retransmission timer starts at its
    duration and is restarted by the table's ``restart`` actions."""

    meaning: str
    rfc: str
    udp: str | None
    reliable: str | None


TIMERS: Mapping[Timer, TimerSpec] = {
    Timer.A: TimerSpec("INVITE retransmission, doubling", "RFC 3261 §17.1.1.2", "T1", None),
    Timer.B: TimerSpec("INVITE transaction timeout", "RFC 3261 §17.1.1.2, §9.1", "64*T1", "64*T1"),
    Timer.D: TimerSpec("wait for response retransmissions", "RFC 3261 §17.1.1.2", "D", "0"),
    Timer.E: TimerSpec(
        "non-INVITE retransmission, doubling up to T2", "RFC 3261 §17.1.2.2", "T1", None
    ),
    Timer.F: TimerSpec("non-INVITE transaction timeout", "RFC 3261 §17.1.2.2", "64*T1", "64*T1"),
    Timer.G: TimerSpec(
        "INVITE final response retransmission, doubling up to T2",
        "RFC 3261 §17.2.1",
        "T1",
        None,
    ),
    Timer.H: TimerSpec("wait for ACK", "RFC 3261 §17.2.1", "64*T1", "64*T1"),
    Timer.I: TimerSpec("wait for ACK retransmissions", "RFC 3261 §17.2.1", "T4", "0"),
    Timer.J: TimerSpec("wait for request retransmissions", "RFC 3261 §17.2.2", "64*T1", "0"),
    Timer.K: TimerSpec("wait for response retransmissions", "RFC 3261 §17.1.2.2", "T4", "0"),
    Timer.L: TimerSpec(
        "wait for INVITE retransmissions and the ACK", "RFC 6026 §8.7", "64*T1", "64*T1"
    ),
    Timer.M: TimerSpec("wait for 2xx retransmissions", "RFC 6026 §8.4", "64*T1", "64*T1"),
    Timer.R2XX: TimerSpec(
        "2xx retransmission until the ACK, doubling up to T2", "RFC 3261 §13.3.1.4", "T1", None
    ),
}

_DURATION: Mapping[str, Callable[[Timers], float]] = {
    "T1": lambda t: t.t1,
    "T4": lambda t: t.t4,
    "64*T1": lambda t: t.timeout_64t1,
    "D": lambda t: t.timer_d,
    "0": lambda t: 0.0,
}


def timer_durations(timers: Timers, reliable: bool) -> dict[Timer, float | None]:
    """Each timer's duration in seconds on one kind of transport (None: never armed)."""
    out: dict[Timer, float | None] = {}
    for timer, spec in TIMERS.items():
        expr = spec.reliable if reliable else spec.udp
        out[timer] = None if expr is None else _DURATION[expr](timers)
    return out


# ------------------------------------------------------------------------------------ tables

Transition = tuple[tuple[Action, ...], State]
Table = Mapping[tuple[State, Input], Transition]


@dataclass(frozen=True)
class Machine:
    """One state machine: its name, where the RFC draws it, its start row and its table."""

    name: str
    rfc: str
    start: Transition
    table: Table


def _table(*rows: tuple[State, Input | tuple[Input, ...], tuple[Action, ...], State]) -> Table:
    out: dict[tuple[State, Input], Transition] = {}
    for state, inputs, actions, next_state in rows:
        for inp in inputs if isinstance(inputs, tuple) else (inputs,):
            assert (state, inp) not in out, (state, inp)
            out[(state, inp)] = (actions, next_state)
    return out


S, IN, A = State, Input, Action

INVITE_CLIENT = Machine(
    "INVITE client transaction",
    "RFC 3261 §17.1.1, RFC 6026 §7.2, §9.1",
    ((A.SEND_REQUEST, A.START_A, A.START_B), S.CALLING),
    _table(
        (S.CALLING, IN.R1XX, (A.TO_TU, A.STOP_A, A.STOP_B, A.SEND_CANCEL_IF_ASKED), S.PROCEEDING),
        (S.CALLING, (IN.R2XX, IN.R2XX_ACKED), (A.TO_TU, A.STOP_A, A.STOP_B, A.START_M), S.ACCEPTED),
        (S.CALLING, IN.RFINAL, (A.TO_TU, A.STOP_A, A.STOP_B, A.SEND_ACK, A.START_D), S.COMPLETED),
        (S.CALLING, IN.TU_CANCEL, (A.REMEMBER_CANCEL,), S.CALLING),
        (S.CALLING, IN.TIMER_A, (A.RESEND_REQUEST, A.RESTART_A), S.CALLING),
        (S.CALLING, IN.TIMER_B, (A.TIMEOUT_TO_TU,), S.TERMINATED),
        (S.PROCEEDING, IN.R1XX, (A.TO_TU,), S.PROCEEDING),
        (S.PROCEEDING, (IN.R2XX, IN.R2XX_ACKED), (A.TO_TU, A.STOP_B, A.START_M), S.ACCEPTED),
        (S.PROCEEDING, IN.RFINAL, (A.TO_TU, A.STOP_B, A.SEND_ACK, A.START_D), S.COMPLETED),
        (S.PROCEEDING, IN.CANCEL_SENT, (A.START_B,), S.PROCEEDING),
        (S.PROCEEDING, IN.TIMER_B, (A.TIMEOUT_TO_TU,), S.TERMINATED),
        (S.COMPLETED, IN.R1XX, (), S.COMPLETED),
        (S.COMPLETED, (IN.R2XX, IN.R2XX_ACKED), (), S.COMPLETED),
        (S.COMPLETED, IN.RFINAL, (A.SEND_ACK,), S.COMPLETED),
        (S.COMPLETED, IN.TIMER_D, (), S.TERMINATED),
        (S.ACCEPTED, IN.R1XX, (), S.ACCEPTED),
        (S.ACCEPTED, IN.R2XX, (A.TO_TU,), S.ACCEPTED),
        (S.ACCEPTED, IN.R2XX_ACKED, (A.RESEND_TU_ACK,), S.ACCEPTED),
        (S.ACCEPTED, IN.RFINAL, (), S.ACCEPTED),
        (S.ACCEPTED, IN.TIMER_M, (), S.TERMINATED),
    ),
)

NON_INVITE_CLIENT = Machine(
    "non-INVITE client transaction",
    "RFC 3261 §17.1.2",
    ((A.SEND_REQUEST, A.START_E, A.START_F), S.TRYING),
    _table(
        (S.TRYING, IN.R1XX, (A.TO_TU,), S.PROCEEDING),
        (
            S.TRYING,
            (IN.R2XX, IN.RFINAL),
            (A.TO_TU, A.STOP_E, A.STOP_F, A.START_K),
            S.COMPLETED,
        ),
        (S.TRYING, IN.TIMER_E, (A.RESEND_REQUEST, A.RESTART_E), S.TRYING),
        (S.TRYING, IN.TIMER_F, (A.TIMEOUT_TO_TU,), S.TERMINATED),
        (S.PROCEEDING, IN.R1XX, (A.TO_TU,), S.PROCEEDING),
        (
            S.PROCEEDING,
            (IN.R2XX, IN.RFINAL),
            (A.TO_TU, A.STOP_E, A.STOP_F, A.START_K),
            S.COMPLETED,
        ),
        (S.PROCEEDING, IN.TIMER_E, (A.RESEND_REQUEST, A.RESTART_E_T2), S.PROCEEDING),
        (S.PROCEEDING, IN.TIMER_F, (A.TIMEOUT_TO_TU,), S.TERMINATED),
        (S.COMPLETED, (IN.R1XX, IN.R2XX, IN.RFINAL), (), S.COMPLETED),
        (S.COMPLETED, IN.TIMER_K, (), S.TERMINATED),
    ),
)

INVITE_SERVER = Machine(
    "INVITE server transaction",
    "RFC 3261 §17.2.1, §13.3.1.4, RFC 6026 §7.1",
    ((A.SEND_TRYING, A.TO_TU), S.PROCEEDING),
    _table(
        (S.PROCEEDING, IN.REQUEST, (A.RESEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, IN.ACK, (), S.PROCEEDING),
        (S.PROCEEDING, IN.TU_1XX, (A.SEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, IN.TU_2XX, (A.SEND_RESPONSE, A.START_2XX, A.START_L), S.ACCEPTED),
        (S.PROCEEDING, IN.TU_FINAL, (A.SEND_RESPONSE, A.START_G, A.START_H), S.COMPLETED),
        (S.COMPLETED, IN.REQUEST, (A.RESEND_RESPONSE,), S.COMPLETED),
        (S.COMPLETED, IN.ACK, (A.STOP_G, A.STOP_H, A.START_I), S.CONFIRMED),
        (S.COMPLETED, IN.TIMER_G, (A.RESEND_RESPONSE, A.RESTART_G), S.COMPLETED),
        (S.COMPLETED, IN.TIMER_H, (), S.TERMINATED),
        (S.CONFIRMED, (IN.REQUEST, IN.ACK), (), S.CONFIRMED),
        (S.CONFIRMED, IN.TIMER_I, (), S.TERMINATED),
        (S.ACCEPTED, IN.REQUEST, (), S.ACCEPTED),
        (S.ACCEPTED, IN.ACK, (A.TO_TU, A.STOP_2XX), S.ACCEPTED),
        (S.ACCEPTED, IN.TU_2XX, (A.SEND_RESPONSE,), S.ACCEPTED),
        (S.ACCEPTED, IN.TIMER_2XX, (A.RESEND_RESPONSE, A.RESTART_2XX), S.ACCEPTED),
        (S.ACCEPTED, IN.TIMER_L, (), S.TERMINATED),
        (S.ACCEPTED, IN.TIMER_L_NO_ACK, (A.ACK_TIMEOUT_TO_TU,), S.TERMINATED),
    ),
)

NON_INVITE_SERVER = Machine(
    "non-INVITE server transaction",
    "RFC 3261 §17.2.2",
    ((A.TO_TU,), S.TRYING),
    _table(
        (S.TRYING, IN.REQUEST, (), S.TRYING),
        (S.TRYING, IN.TU_1XX, (A.SEND_RESPONSE,), S.PROCEEDING),
        (S.TRYING, (IN.TU_2XX, IN.TU_FINAL), (A.SEND_RESPONSE, A.START_J), S.COMPLETED),
        (S.PROCEEDING, IN.REQUEST, (A.RESEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, IN.TU_1XX, (A.SEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, (IN.TU_2XX, IN.TU_FINAL), (A.SEND_RESPONSE, A.START_J), S.COMPLETED),
        (S.COMPLETED, IN.REQUEST, (A.RESEND_RESPONSE,), S.COMPLETED),
        (S.COMPLETED, IN.TIMER_J, (), S.TERMINATED),
    ),
)

del S, IN, A

MACHINES: tuple[Machine, ...] = (INVITE_CLIENT, NON_INVITE_CLIENT, INVITE_SERVER, NON_INVITE_SERVER)


# ------------------------------------------------------------------------------- interpreter


@dataclass(frozen=True, slots=True)
class Config:
    """What every transaction on one kind of transport shares (one object per layer and kind,
    so a transaction costs one reference)."""

    durations: Mapping[Timer, float | None]
    t2: float
    reliable: bool
    send_trying: bool


ActionFn = Callable[[Any, Any, Any, float, "list[TransactionOutput]"], None]
"""``fn(transaction, message or None, source or None, now, out)``."""

Row = tuple[tuple[ActionFn, ...], State]
_Rows = dict[State, dict[Input, Row]]

_RETRANSMIT_TIMERS = frozenset({Timer.A, Timer.E, Timer.G, Timer.R2XX})
_TERMINATED = State.TERMINATED  # an enum member is slow to look up on its class

# What each timer action does to the running timers: start, restart (with the interval rule:
# double, double-max-t2, t2) or stop. STOP_2XX is carried out in server.py (it also records
# that the ACK came) but is listed here for ``running_timers``.
_TIMER_OPS: Mapping[Action, tuple[str, Timer, str | None]] = {
    Action.START_A: ("start", Timer.A, None),
    Action.RESTART_A: ("restart", Timer.A, "double"),
    Action.STOP_A: ("stop", Timer.A, None),
    Action.START_B: ("start", Timer.B, None),
    Action.STOP_B: ("stop", Timer.B, None),
    Action.START_D: ("start", Timer.D, None),
    Action.START_E: ("start", Timer.E, None),
    Action.RESTART_E: ("restart", Timer.E, "double-max-t2"),
    Action.RESTART_E_T2: ("restart", Timer.E, "t2"),
    Action.STOP_E: ("stop", Timer.E, None),
    Action.START_F: ("start", Timer.F, None),
    Action.STOP_F: ("stop", Timer.F, None),
    Action.START_G: ("start", Timer.G, None),
    Action.RESTART_G: ("restart", Timer.G, "double-max-t2"),
    Action.STOP_G: ("stop", Timer.G, None),
    Action.START_H: ("start", Timer.H, None),
    Action.STOP_H: ("stop", Timer.H, None),
    Action.START_I: ("start", Timer.I, None),
    Action.START_J: ("start", Timer.J, None),
    Action.START_K: ("start", Timer.K, None),
    Action.START_L: ("start", Timer.L, None),
    Action.START_M: ("start", Timer.M, None),
    Action.START_2XX: ("start", Timer.R2XX, None),
    Action.RESTART_2XX: ("restart", Timer.R2XX, "double-max-t2"),
    Action.STOP_2XX: ("stop", Timer.R2XX, None),
}

_INPUT_TIMER: Mapping[Input, Timer] = {
    **{inp: timer for timer, inp in TIMER_INPUT.items()},
    Input.TIMER_L_NO_ACK: Timer.L,
}


def running_timers(machine: Machine) -> set[tuple[State, frozenset[Timer]]]:
    """Every (state, timers running) a machine can be in, walking its table from the start
    row: an input may come in any state, a timer input only while its timer runs (it stops
    when it fires), and entering Terminated stops them all. On a reliable transport a
    retransmission timer is never armed and a timer of duration 0 fires at once: subsets of
    the same walk."""

    def run(timers: frozenset[Timer], actions: tuple[Action, ...]) -> frozenset[Timer]:
        out = set(timers)
        for action in actions:
            op = _TIMER_OPS.get(action)
            if op is None:
                continue
            if op[0] == "stop":
                out.discard(op[1])
            else:
                out.add(op[1])
        return frozenset(out)

    first = (machine.start[1], run(frozenset(), machine.start[0]))
    seen = {first}
    todo = [first]
    while todo:
        state, timers = todo.pop()
        for (row_state, inp), (actions, next_state) in machine.table.items():
            if row_state is not state:
                continue
            timer = _INPUT_TIMER.get(inp)
            if timer is not None:
                if timer not in timers:
                    continue
                after = timers - {timer}
            else:
                after = timers
            after = frozenset() if next_state is State.TERMINATED else run(after, actions)
            if (next_state, after) not in seen:
                seen.add((next_state, after))
                todo.append((next_state, after))
    return seen


def stopped_timers(actions: tuple[Action, ...]) -> frozenset[Timer]:
    """The timers a row's actions stop."""
    return frozenset(op[1] for a in actions if (op := _TIMER_OPS.get(a)) and op[0] == "stop")


def check_timer_slots(machine: Machine) -> None:
    """A transaction holds two timers at most: one retransmission timer (A, E, G, 2xx) and
    one other. Raises ``ValueError`` if the table could ever need more."""
    for state, timers in running_timers(machine):
        retransmit = timers & _RETRANSMIT_TIMERS
        if len(retransmit) > 1 or len(timers - retransmit) > 1:
            raise ValueError(f"{machine.name}: {sorted(timers)} run at once in {state}")


ANSWERED = frozenset({State.COMPLETED, State.CONFIRMED, State.ACCEPTED, State.TERMINATED})
"""The states after a final response: a transaction there no longer needs its request (a client
has built its ACK on entering Completed; a server only re-sends its response)."""


def resent_by(machine: Machine, action: Action) -> dict[State, frozenset[Timer] | None]:
    """For each state, what may still carry out ``action`` there: None if an input that is
    not a timer may (keep what it sends), else the timers whose rows do (keep it while one
    of them runs; empty: never)."""
    out: dict[State, frozenset[Timer] | None] = {state: frozenset() for state in State}
    for (state, inp), (actions, _) in machine.table.items():
        found = out[state]
        if action in actions and found is not None:
            timer = _INPUT_TIMER.get(inp)
            out[state] = None if timer is None else found | {timer}
    return out


def _start_timer(timer: Timer) -> ActionFn:
    if timer in _RETRANSMIT_TIMERS:

        def start_retransmit(
            txn: Transaction, msg: object, src: object, now: float, out: object
        ) -> None:
            duration = txn.cfg.durations[timer]
            if duration is None:
                return
            txn.interval = duration
            if txn.retx is not timer:
                txn.retx = timer
                txn.wait_first = txn.wait is not None
            txn.retx_at = now + duration

        return start_retransmit

    def start(txn: Transaction, msg: object, src: object, now: float, out: object) -> None:
        duration = txn.cfg.durations[timer]
        if duration is None:
            return
        if txn.wait is not timer:
            txn.wait = timer
            txn.wait_first = txn.retx is None
        txn.wait_at = now + duration

    return start


def _stop_timer(timer: Timer) -> ActionFn:
    def stop(txn: Transaction, msg: object, src: object, now: float, out: object) -> None:
        txn.stop_timer(timer)

    return stop


def _restart_timer(timer: Timer, rule: str | None) -> ActionFn:
    def restart(txn: Transaction, msg: object, src: object, now: float, out: object) -> None:
        if rule == "double":
            txn.interval *= 2
        elif rule == "double-max-t2":
            txn.interval = min(txn.interval * 2, txn.cfg.t2)
        else:  # "t2"
            txn.interval = txn.cfg.t2
        # From now, not from the missed deadline: a late wake-up sends one retransmission,
        # not a burst.
        if txn.retx is not timer:
            txn.retx = timer
            txn.wait_first = txn.wait is not None
        txn.retx_at = now + txn.interval

    return restart


def _timer_action(kind: str, timer: Timer, rule: str | None) -> ActionFn:
    if kind == "start":
        return _start_timer(timer)
    if kind == "stop":
        return _stop_timer(timer)
    assert timer in _RETRANSMIT_TIMERS, timer
    return _restart_timer(timer, rule)


_TIMER_ACTIONS: Mapping[Action, ActionFn] = {
    action: _timer_action(*op) for action, op in _TIMER_OPS.items() if action is not Action.STOP_2XX
}


class Transaction:
    """Runs one machine's table. Subclasses set ``machine`` and call ``compile`` with the
    functions that carry out their message actions (timer actions are common).

    Timers: ``check_timer_slots`` proves from the tables that at most one retransmission
    timer and one other timer run at once, so a transaction holds them in four slots (which
    timer, its deadline) rather than a dict: ``retx``/``retx_at`` and ``wait``/``wait_at``
    (None: not running). Timers due at the same deadline fire in the order they were
    started (a restart after firing is a new start): ``wait_first`` says which came first
    when both run. ``at`` and ``done`` are the layer's (see ``TransactionLayer._settle``)."""

    __slots__ = (
        "at",
        "cfg",
        "done",
        "interval",
        "key",
        "retx",
        "retx_at",
        "state",
        "wait",
        "wait_at",
        "wait_first",
    )

    machine: ClassVar[Machine]
    _rows: ClassVar[_Rows]
    _start: ClassVar[Row]

    def __init__(self, key: str, cfg: Config) -> None:
        self.key = key
        self.cfg = cfg
        self.state = _TERMINATED  # until start()
        self.retx: Timer | None = None
        self.retx_at = 0.0
        self.wait: Timer | None = None
        self.wait_at = 0.0
        self.wait_first = False
        self.interval = 0.0
        self.done = False
        self.at: float | None = None
        """The deadline the layer last queued for this transaction (lazy heap deletion)."""

    @classmethod
    def compile(cls, actions: Mapping[Action, ActionFn]) -> None:
        """Turn the machine's table into functions, per state then input (a lookup hashes
        two strings whose hashes are cached, and builds no tuple). Each row ends with the
        steps ``_cleanup`` derives from it."""
        check_timer_slots(cls.machine)

        def fns(names: tuple[Action, ...]) -> tuple[ActionFn, ...]:
            return tuple(_TIMER_ACTIONS.get(a) or actions[a] for a in names)

        start_actions, start_state = cls.machine.start
        cls._start = (
            fns(start_actions) + cls._cleanup(None, start_actions, start_state),
            start_state,
        )
        rows: _Rows = {state: {} for state in State}
        for (state, inp), (acts, nxt) in cls.machine.table.items():
            rows[state][inp] = (fns(acts) + cls._cleanup(state, acts, nxt), nxt)
        cls._rows = rows

    @classmethod
    def _cleanup(
        cls, state: State | None, actions: tuple[Action, ...], next_state: State
    ) -> tuple[ActionFn, ...]:
        """Steps to run after the actions of the row ``state -> next_state`` (None: the start
        row): a subclass drops there what the transaction no longer needs, so that a
        lingering transaction keeps only what it may still send."""
        return ()

    # ------------------------------------------------------------------------------- timers

    @property
    def timers(self) -> dict[Timer, float]:
        """The running timers and their deadlines, in the order they fire on a tie (a copy,
        for tests and debugging)."""
        out: dict[Timer, float] = {}
        first, second = (
            ((self.wait, self.wait_at), (self.retx, self.retx_at))
            if self.wait_first
            else ((self.retx, self.retx_at), (self.wait, self.wait_at))
        )
        for timer, at in (first, second):
            if timer is not None:
                out[timer] = at
        return out

    def stop_timer(self, timer: Timer) -> None:
        if self.retx is timer:
            self.retx = None
        elif self.wait is timer:
            self.wait = None

    def stop_timers(self) -> None:
        self.retx = self.wait = None

    def next_deadline(self) -> float | None:
        if self.retx is None:
            return None if self.wait is None else self.wait_at
        if self.wait is None or self.retx_at < self.wait_at:
            return self.retx_at
        return self.wait_at

    # ------------------------------------------------------------------------------- inputs

    def _begin(self, msg: object, src: Addr | None, now: float) -> list[TransactionOutput]:
        out: list[TransactionOutput] = []
        fns, self.state = self._start
        for fn in fns:
            fn(self, msg, src, now, out)
        self._run_due(now, out)
        return out

    def feed(
        self, inp: Input, msg: object, src: Addr | None, now: float
    ) -> list[TransactionOutput]:
        """Feed one input at ``now``, after any timer already due."""
        out: list[TransactionOutput] = []
        if (self.retx is not None and self.retx_at <= now) or (
            self.wait is not None and self.wait_at <= now
        ):
            self._run_due(now, out)
        if not self.done:
            self._apply(inp, msg, src, now, out)
            if (self.retx is not None and self.retx_at <= now) or (
                self.wait is not None and self.wait_at <= now
            ):
                self._run_due(now, out)
        return out

    def _apply(
        self,
        inp: Input,
        msg: object,
        src: Addr | None,
        now: float,
        out: list[TransactionOutput],
    ) -> None:
        entry = self._rows[self.state].get(inp)
        if entry is None:
            return
        fns, next_state = entry
        for fn in fns:
            fn(self, msg, src, now, out)
        self.state = next_state
        if next_state is _TERMINATED:
            self.retx = self.wait = None
            self.done = True

    def _timer_input(self, timer: Timer) -> Input:
        return TIMER_INPUT[timer]

    def _run_due(self, now: float, out: list[TransactionOutput]) -> None:
        """Fire every timer due at ``now``, earliest first."""
        while True:
            retx = self.retx
            wait = self.wait
            if retx is not None and (
                wait is None
                or self.retx_at < self.wait_at
                or (self.retx_at == self.wait_at and not self.wait_first)
            ):
                if self.retx_at > now:
                    return
                self.retx = None
                timer = retx
            elif wait is not None:
                if self.wait_at > now:
                    return
                self.wait = None
                timer = wait
            else:
                return
            self._apply(self._timer_input(timer), None, None, now, out)

    def fire(self, now: float, out: list[TransactionOutput]) -> None:
        """Fire every timer due at ``now``, adding the outputs to ``out`` (for the layer)."""
        self._run_due(now, out)

    def handle_timer(self, now: float) -> list[TransactionOutput]:
        out: list[TransactionOutput] = []
        self._run_due(now, out)
        return out


# ---------------------------------------------------------------------------------- rendering

_DURATION_TEXT = {"T1": "T1", "T4": "T4", "64*T1": "64*T1", "D": "32 s", "0": "0"}


def _mermaid(machine: Machine) -> list[str]:
    lines = ["```mermaid", "stateDiagram-v2"]
    lines.append(f"    [*] --> {machine.start[1]}")
    edges: dict[tuple[State, State], list[str]] = {}
    for (state, inp), (_, next_state) in machine.table.items():
        if next_state != state:
            edges.setdefault((state, next_state), []).append(str(inp))
    for (state, next_state), inputs in edges.items():
        target = "[*]" if next_state is State.TERMINATED else str(next_state)
        lines.append(f"    {state} --> {target}: {', '.join(inputs)}")
    lines.append("```")
    return lines


def render_markdown() -> str:
    """``docs/transactions.md``, drawn from the tables above (a test keeps the two equal).

    Regenerate with ``python -c "from pkiss.sip.transaction.tables import render_markdown;
    print(render_markdown(), end='')" > docs/transactions.md``."""
    t = Timers()
    lines = [
        "# Transaction state machines",
        "",
        "<!-- Generated from src/pkiss/sip/transaction/tables.py by render_markdown(); "
        "do not edit. -->",
        "",
        "The transaction layer (RFC 3261 §17, RFC 6026) is four tables keyed by "
        "`(state, input)`. The actions of a row run in order, then the state changes. A pair "
        "that is not listed is ignored (no action, same state): a stale timer, or a TU "
        "response after the final one. A row with no action (—) absorbs its input. Entering "
        "Terminated stops every timer and the layer forgets the transaction.",
        "",
        "Inputs: `1xx`, `2xx`, `300-699` are responses from the network; `2xx (ACK sent)` is a "
        "2xx to an INVITE the TU has already acknowledged through `TransactionLayer.ack()`; "
        "`request` is the request that created a server transaction, received again; `TU ...` "
        "come from the transaction user; `timer X` is timer X firing; `timer L, no ACK` is "
        "timer L when the 2xx was never acknowledged.",
        "",
        "## Timers",
        "",
        f"T1 = {t.t1:g} s, T2 = {t.t2:g} s, T4 = {t.t4:g} s. Retransmission timers exist on "
        "UDP only; a duration of 0 fires at once.",
        "",
        "| Timer | Meaning | UDP | TCP/TLS | Defined in |",
        "|---|---|---|---|---|",
    ]
    for timer, spec in TIMERS.items():
        udp = "—" if spec.udp is None else _DURATION_TEXT[spec.udp]
        rel = "—" if spec.reliable is None else _DURATION_TEXT[spec.reliable]
        lines.append(f"| {timer} | {spec.meaning} | {udp} | {rel} | {spec.rfc} |")
    for machine in MACHINES:
        lines += ["", f"## {machine.name[0].upper()}{machine.name[1:]}", ""]
        lines += [f"{machine.rfc}.", ""]
        lines += ["| State | Input | Actions | Next state |", "|---|---|---|---|"]
        start_actions, start_state = machine.start
        lines.append(f"| (start) | | {', '.join(start_actions)} | {start_state} |")
        for (state, inp), (actions, next_state) in machine.table.items():
            acts = ", ".join(actions) if actions else "—"
            lines.append(f"| {state} | {inp} | {acts} | {next_state} |")
        lines += ["", *_mermaid(machine)]
    return "\n".join(lines) + "\n"
