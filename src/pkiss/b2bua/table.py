"""Everything that moves a call from one state to another lives in this file.

A call is in one ``CallState``. The legs translate SIP into call events (``events.py``); for
each ``(state, type of event)`` the table gives the actions to take, in order, and the next
state. A pair that is not in the table is ignored: the event changes nothing in that state
(a provisional after the answer, a CANCEL after the final response...). The state is set
before the actions run; an action may feed the call a follow-up event (``TRY_NEXT`` with no
candidate left feeds ``Failed``), and the remaining actions of the first row are then
skipped. ``docs/calls.md`` is rendered from this table by ``render()``; a test keeps them
equal.
"""

from __future__ import annotations

import ast
from enum import Enum
from pathlib import Path

from .events import (
    Acked,
    Answered,
    Cancelled,
    Disconnected,
    Failed,
    FailedOver,
    HungUp,
    Info,
    NoAnswer,
    Offered,
    Pracked,
    Refused,
    Ringing,
    Trying,
    Updated,
)

__all__ = ["TABLE", "Action", "CallState", "render"]


class CallState(Enum):
    NEW = "new"
    ROUTING = "routing"
    EARLY = "early"
    ANSWERED = "answered"
    ENDED = "ended"


class Action(Enum):
    ANCHOR_OFFER = "rewrite the caller's SDP offer toward the media relay (if relayed)"
    TRY_NEXT = "send the INVITE to the next candidate with room (none left: Failed)"
    ABANDON_ATTEMPT = "give up the current candidate (CANCEL once it answers)"
    RELAY_PROVISIONAL = "relay the 18x to the caller (100rel: reliably, or PRACK it here)"
    ANSWER = "ACK the callee side (late offer: when the caller ACKs), send the 2xx to the caller"
    FAIL_CALLER = "send the caller the final failure"
    REFUSE_CALLER = "send the caller the node's refusal"
    ANSWER_487 = "send the caller 487 Request Terminated"
    CANCEL_ATTEMPT = "CANCEL the callee side's INVITE"
    HANG_UP_OTHERS = "end every other leg: final response, CANCEL or BYE as its state needs"
    RELAY_REQUEST = "relay the request to the other leg; its final response comes back"
    RELAY_ACK = "send the other leg's ACK that waited for this one (with its SDP answer)"
    RELEASE = "release dialogs, limits and media; write the call's record"


_S = CallState
_A = Action
_Rows = dict[type, tuple[tuple[Action, ...], CallState | None]]
_RELAYED: _Rows = {cls: ((_A.RELAY_REQUEST,), None) for cls in (Updated, Info, Pracked)}
_ENDINGS: _Rows = {
    Failed: ((_A.FAIL_CALLER, _A.RELEASE), _S.ENDED),
    Refused: ((_A.REFUSE_CALLER, _A.RELEASE), _S.ENDED),
    Cancelled: ((_A.ANSWER_487, _A.CANCEL_ATTEMPT, _A.RELEASE), _S.ENDED),
    Disconnected: ((_A.HANG_UP_OTHERS, _A.RELEASE), _S.ENDED),
    HungUp: ((_A.HANG_UP_OTHERS, _A.RELEASE), _S.ENDED),
}
_SETTING_UP: _Rows = {
    Ringing: ((_A.RELAY_PROVISIONAL,), _S.EARLY),
    Answered: ((_A.ANSWER,), _S.ANSWERED),
    FailedOver: ((_A.TRY_NEXT,), _S.ROUTING),
    NoAnswer: ((_A.ABANDON_ATTEMPT, _A.TRY_NEXT), _S.ROUTING),
    **_ENDINGS,
}


def _rows(
    state: CallState, rows: _Rows
) -> dict[tuple[CallState, type], tuple[tuple[Action, ...], CallState]]:
    # next state None: the state does not change
    return {(state, event): (actions, nxt or state) for event, (actions, nxt) in rows.items()}


TABLE: dict[tuple[CallState, type], tuple[tuple[Action, ...], CallState]] = {
    (_S.NEW, Offered): ((_A.ANCHOR_OFFER, _A.TRY_NEXT), _S.ROUTING),
    **_rows(_S.ROUTING, {Trying: ((), _S.EARLY), **_SETTING_UP, **_RELAYED}),
    **_rows(_S.EARLY, {**_SETTING_UP, **_RELAYED}),
    **_rows(
        _S.ANSWERED,
        {
            Disconnected: _ENDINGS[Disconnected],
            HungUp: _ENDINGS[HungUp],
            Acked: ((_A.RELAY_ACK,), None),
            **_RELAYED,
        },
    ),
}


def render() -> str:
    """The table as Markdown: ``docs/calls.md``."""
    lines = [
        "# Calls: states and transitions",
        "",
        "Rendered from `src/pkiss/b2bua/table.py` by `pkiss.b2bua.table.render()`; a test",
        "fails when this page and the table differ. An event not listed for a state is",
        "ignored in that state.",
        "",
        "## States",
        "",
    ]
    for state in CallState:
        doc = _STATE_DOCS[state]
        lines.append(f"- **{state.value}**: {doc}")
    lines += ["", "## Events", ""]
    from . import events

    # The docstrings are read from the source: a class compiled by mypyc (setup.py) has none.
    tree = ast.parse(Path(events.__file__ or "").with_name("events.py").read_text())
    docs = {n.name: ast.get_docstring(n) for n in tree.body if isinstance(n, ast.ClassDef)}
    for name in events.__all__:
        if name in docs:
            doc = " ".join((docs[name] or "").split())
            lines.append(f"- **{name}**: {doc}")
    lines += ["", "## Transitions", "", "| state | event | actions | next state |",
              "|---|---|---|---|"]  # fmt: skip
    for (state, event), (actions, nxt) in TABLE.items():
        done = "; ".join(a.value for a in actions) or "(none)"
        lines.append(f"| {state.value} | {event.__name__} | {done} | {nxt.value} |")
    return "\n".join(lines) + "\n"


_STATE_DOCS = {
    CallState.NEW: "admitted and routed; nothing sent toward the callee side yet.",
    CallState.ROUTING: "an INVITE is out to a candidate, which has not answered at all yet.",
    CallState.EARLY: "the current candidate answered with a provisional (100, 18x).",
    CallState.ANSWERED: "both legs are confirmed dialogs.",
    CallState.ENDED: "both legs released, with the call's limits and media; its record written.",
}
