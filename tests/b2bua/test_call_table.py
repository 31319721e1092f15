"""The call table: its rendered page is up to date, every state can end, and a Hypothesis
state machine drives calls through the node's sans-I/O core in any order of events (wire
messages from both sides, CANCELs, BYEs, re-INVITEs, time passing, shutdown): no exception
escapes, and every call ends with both legs released, its limits released, its media
released (a real relay) and exactly one record."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from peers import OPERATOR, PBX1, PBX2, Bench, answer, cancel, in_dialog, invite

from pkiss.b2bua import Call, CallState
from pkiss.b2bua.events import HungUp
from pkiss.b2bua.table import TABLE, Action, render
from pkiss.media import BuiltinRelay
from pkiss.sip.message import Request, Response
from pkiss.sip.transaction import Send

DOCS = Path(__file__).resolve().parents[2] / "docs" / "calls.md"

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
media: {mode: relay}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060], limits: {calls: 50}, health: false}
  pbx:
    role: pbx
    hosts: [{address: "127.0.0.3:5060", priority: 1}, {address: "127.0.0.4:5060", priority: 2}]
    dids: ["+331*"]
    setup_timeout: 3
    limits: {calls: 50}
    health: false
"""


def test_docs_calls_md_is_rendered_from_the_table() -> None:
    assert DOCS.read_text() == render(), "run: python -c 'from pkiss.b2bua.table import " \
        "render; print(render(), end=\"\")' > docs/calls.md"  # fmt: skip


def test_every_state_but_ended_can_be_ended_and_every_action_is_used() -> None:
    for state in CallState:
        if state in (CallState.NEW, CallState.ENDED):
            continue
        assert TABLE[(state, HungUp)][1] is CallState.ENDED
    used = {action for actions, _ in TABLE.values() for action in actions}
    assert used == set(Action)
    assert not [key for key in TABLE if key[0] is CallState.ENDED]


def _from_pbx(method: str, b_invite: Request, tag: str, cseq: int) -> bytes:
    """An in-dialog request from the PBX side of a call (the B-leg's dialog)."""
    frm = b_invite.header("from") or ""
    to = b_invite.header("to") or ""
    return (
        f"{method} sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PBX1.host}:5060;branch=z9hG4bK-{method}{cseq}{tag}\r\n"
        f"From: {to};tag={tag}\r\nTo: {frm}\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:127.0.0.3:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


CALLS = st.integers(min_value=0, max_value=3)


class CallsInAnyOrder(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.relay = BuiltinRelay("127.0.0.1", (45000, 45999))
        self.ended: list[Call] = []
        self.bench = Bench(CONFIG, media=self.relay, on_end=self.ended.append)
        self.started: set[int] = set()
        self.b_invites: dict[int, Request] = {}  # the last INVITE sent to the PBX side
        self.b_dest: dict[int, object] = {}
        self.a_tags: dict[int, str] = {}
        self.cseq = dict.fromkeys(range(4), 1)
        self.pbx_cseq = dict.fromkeys(range(4), 1)

    def _note(self, sends: list[Send]) -> None:
        for send in sends:
            message = send.message
            if isinstance(message, Request) and message.method == "INVITE":
                to = message.to
                if send.dest in (PBX1, PBX2) and to is not None and not to.tag:
                    user = message.from_.uri.user if message.from_ else ""  # type: ignore[union-attr]
                    n = int(str(user)[-1])
                    self.b_invites[n] = message
                    self.b_dest[n] = send.dest
            elif isinstance(message, Response) and send.dest == OPERATOR:
                to = message.to
                call_id = message.call_id or ""
                if to is not None and to.tag and call_id.startswith("call"):
                    self.a_tags[int(call_id[4])] = to.tag

    def _feed(self, data: bytes, source: object) -> None:
        self._note(self.bench.feed(data, source))  # type: ignore[arg-type]

    @rule(n=CALLS)
    def new_call(self, n: int) -> None:
        if n in self.started:
            return
        self.started.add(n)
        sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        sdp += b"m=audio 4000 RTP/AVP 8\r\n"
        data = invite(n).replace(b"+33999", f"+3399{n}".encode())
        head = data.split(b"\r\n\r\n", 1)[0].replace(b"Content-Length: 0", b"")
        head = head.replace(b"Content-Type: application/sdp\r\n", b"")
        lines = [x for x in head.split(b"\r\n") if x and not x.lower().startswith(b"content-")]
        lines += [b"Content-Type: application/sdp", b"Content-Length: %d" % len(sdp)]
        self._feed(b"\r\n".join(lines) + b"\r\n\r\n" + sdp, OPERATOR)

    @rule(n=CALLS, status=st.sampled_from([100, 180, 183, 200, 486, 503]))
    def pbx_answers(self, n: int, status: int) -> None:
        b_invite = self.b_invites.get(n)
        if b_invite is not None:
            data = answer(b_invite, status, f"pbx{n}", sdp=status in (183, 200))
            self._feed(data, self.b_dest[n])

    @rule(n=CALLS)
    def operator_cancels(self, n: int) -> None:
        if n in self.started:
            self._feed(cancel(n), OPERATOR)

    @rule(n=CALLS)
    def operator_acks(self, n: int) -> None:
        tag = self.a_tags.get(n)
        if tag is not None:
            self._feed(in_dialog("ACK", n, tag, 1), OPERATOR)

    @rule(n=CALLS, method=st.sampled_from(["BYE", "INVITE", "UPDATE", "INFO"]))
    def operator_requests(self, n: int, method: str) -> None:
        tag = self.a_tags.get(n)
        if tag is not None:
            self.cseq[n] += 1
            self._feed(in_dialog(method, n, tag, self.cseq[n], f"r{self.cseq[n]}"), OPERATOR)

    @rule(n=CALLS, method=st.sampled_from(["BYE", "INVITE"]))
    def pbx_requests(self, n: int, method: str) -> None:
        b_invite = self.b_invites.get(n)
        if b_invite is not None:
            self.pbx_cseq[n] += 1
            data = _from_pbx(method, b_invite, f"pbx{n}", self.pbx_cseq[n])
            self._feed(data, self.b_dest[n])

    @rule(dt=st.floats(min_value=0.05, max_value=40.0))
    def time_passes(self, dt: float) -> None:
        self._note(self.bench.advance(self.bench.now + dt))

    @invariant()
    def calls_in_progress_are_live(self) -> None:
        calls = self.bench.calls
        assert all(not call.ended for call in calls.calls)
        assert len(calls.calls) + len(self.ended) == calls.stats["calls"]
        assert len({id(c) for c in self.ended}) == len(self.ended)  # one record each
        for call, _ in calls.dialogs.values():
            assert call in calls.calls

    def teardown(self) -> None:
        bench = self.bench
        try:
            self._note(bench.core.hangup_all(bench.now))
            bench.advance(bench.now + 200.0)
            calls = bench.calls
            assert not calls.calls and not calls.dialogs and not calls.media_calls
            assert not calls.invites and not calls.clients
            assert all(c.calls == 0 for c in calls.limits.snapshot().values())
            assert self.relay.calls == {}
            assert len(self.ended) == calls.stats["calls"] == len(self.started)
            assert all(c.state is CallState.ENDED and not c.held for c in self.ended)
            assert len(bench.core.layer) == 0
        finally:
            self.relay.close()


CallsInAnyOrder.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_calls_in_any_order = pytest.mark.filterwarnings("ignore")(CallsInAnyOrder.TestCase)
