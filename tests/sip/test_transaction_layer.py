"""The transaction layer as a whole: the tables' invariants, the generated doc, memory, the heap
of deadlines, and random sequences of messages and time (Hypothesis)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkiss.sip.message import Request, Response, make_response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import (
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
from pkiss.sip.transaction.client import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from pkiss.sip.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from pkiss.sip.transaction.tables import (
    INVITE_CLIENT,
    INVITE_SERVER,
    MACHINES,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    TIMER_INPUT,
    TIMERS,
    Config,
    Input,
    Machine,
    State,
    Transaction,
    render_markdown,
    timer_durations,
)

T = TypeVar("T")

DOC = Path(__file__).resolve().parents[2] / "docs" / "transactions.md"

CARRIER = Addr("udp", "198.51.100.7", 5060)
CARRIER_TCP = Addr("tcp", "198.51.100.7", 40000)
PBX = Addr("udp", "192.0.2.20", 5060)
PBX_TCP = Addr("tcp", "192.0.2.20", 5060)


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


def parse(data: bytes) -> Request:
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def inbound(method: str, branch: str | None, n: int, to_tag: str | None = None) -> Request:
    """A request from the carrier for call ``n``; ``branch`` None for an RFC 2543 peer."""
    via = "SIP/2.0/UDP 198.51.100.7:5060" + (f";branch={branch}" if branch else "")
    to = "<sip:+331234@203.0.113.1>" + (f";tag={to_tag}" if to_tag else "")
    return parse(
        wire(
            f"""{method} sip:+331234@203.0.113.1 SIP/2.0
Via: {via}
Max-Forwards: 70
From: <sip:+339876@198.51.100.7>;tag=from-{n}
To: {to}
Call-ID: call-{n}@198.51.100.7
CSeq: {n} {method}
Content-Length: 0

"""
        )
    )


def outbound(method: str, branch: str, n: int, to_tag: str | None = None) -> Request:
    """A request the SBC sends to the PBX."""
    to = "<sip:bob@192.0.2.20>" + (f";tag={to_tag}" if to_tag else "")
    return parse(
        wire(
            f"""{method} sip:bob@192.0.2.20 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}
Max-Forwards: 70
From: <sip:sbc@192.0.2.1>;tag=sbc-{n}
To: {to}
Call-ID: b-{n}@192.0.2.1
CSeq: {n} {method}
Content-Length: 0

"""
        )
    )


def reply(req: Request, status: int, to_tag: str | None = "callee") -> Response:
    resp = parse_datagram(bytes(make_response(req, status, to_tag=to_tag)))
    assert isinstance(resp, Response)
    return resp


def drain(layer: TransactionLayer, limit: int = 100_000) -> list[TransactionOutput]:
    out: list[TransactionOutput] = []
    for _ in range(limit):
        at = layer.next_deadline()
        if at is None:
            return out
        out += layer.handle_timer(at)
    raise AssertionError("timers never ran out")


# ------------------------------------------------------------------------------- tables

NETWORK_INPUTS = {
    INVITE_CLIENT.name: {Input.R1XX, Input.R2XX, Input.R2XX_ACKED, Input.RFINAL},
    NON_INVITE_CLIENT.name: {Input.R1XX, Input.R2XX, Input.RFINAL},
    INVITE_SERVER.name: {Input.REQUEST, Input.ACK},
    NON_INVITE_SERVER.name: {Input.REQUEST},
}


def states(machine: Machine) -> set[State]:
    found = {machine.start[1]}
    for (state, _), (_, next_state) in machine.table.items():
        found |= {state, next_state}
    return found


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_table_invariants(machine: Machine) -> None:
    live = states(machine) - {State.TERMINATED}
    # Nothing leaves Terminated.
    assert not any(state is State.TERMINATED for state, _ in machine.table)
    # Every message the network can send is listed in every live state (absorbed or not).
    for state in live:
        for inp in NETWORK_INPUTS[machine.name]:
            assert (state, inp) in machine.table, (state, inp)
    # A timer input appears only if that timer is started by the machine.
    started = {a for acts, _ in [machine.start, *machine.table.values()] for a in acts}
    for _, inp in machine.table:
        for timer, timer_input in TIMER_INPUT.items():
            if inp in (timer_input, Input.TIMER_L_NO_ACK) and inp.startswith(f"timer {timer}"):
                assert f"start {timer}" in started, (inp, timer)
    # Every state is reachable and can reach Terminated.
    reach = {machine.start[1]}
    while True:
        more = {n for (s, _), (_, n) in machine.table.items() if s in reach} - reach
        if not more:
            break
        reach |= more
    assert reach == states(machine)
    for state in live:
        seen, todo = {state}, [state]
        while todo:
            s = todo.pop()
            for (s2, _), (_, n) in machine.table.items():
                if s2 is s and n not in seen:
                    seen.add(n)
                    todo.append(n)
        assert State.TERMINATED in seen, state


def test_every_timer_has_a_duration_rule() -> None:
    assert set(TIMERS) == set(TIMER_INPUT)
    udp = timer_durations(Timers(), reliable=False)
    tcp = timer_durations(Timers(), reliable=True)
    assert udp == {
        "A": 0.5, "B": 32.0, "D": 32.0, "E": 0.5, "F": 32.0, "G": 0.5, "H": 32.0,
        "I": 5.0, "J": 32.0, "K": 5.0, "L": 32.0, "M": 32.0, "2xx": 0.5,
    }  # fmt: skip
    assert tcp == {
        "A": None, "B": 32.0, "D": 0.0, "E": None, "F": 32.0, "G": None, "H": 32.0,
        "I": 0.0, "J": 0.0, "K": 0.0, "L": 32.0, "M": 32.0, "2xx": None,
    }  # fmt: skip


CLASSES: list[type[Transaction]] = [
    InviteClientTransaction,
    NonInviteClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
]


def _fresh(cls: type[Transaction], cfg: Config) -> Transaction:
    txn: ClientTransaction | ServerTransaction
    if cls is InviteClientTransaction:
        txn = InviteClientTransaction("k|INVITE", outbound("INVITE", "z9hG4bKw", 1), PBX, cfg)
    elif cls is NonInviteClientTransaction:
        txn = NonInviteClientTransaction("k|OPTIONS", outbound("OPTIONS", "z9hG4bKw", 1), PBX, cfg)
    elif cls is InviteServerTransaction:
        txn = InviteServerTransaction("k", inbound("INVITE", "z9hG4bKw", 1), CARRIER, cfg)
    else:
        txn = NonInviteServerTransaction("k", inbound("OPTIONS", "z9hG4bKw", 1), CARRIER, cfg)
    txn.start(0.0)
    return txn


def _message_for(txn: Transaction, inp: Input) -> object:
    assert isinstance(txn, ClientTransaction | ServerTransaction)
    req = txn.request
    return {
        Input.R1XX: reply(req, 180),
        Input.R2XX: reply(req, 200),
        Input.R2XX_ACKED: reply(req, 200),
        Input.RFINAL: reply(req, 486),
        Input.TU_1XX: reply(req, 180),
        Input.TU_2XX: reply(req, 200),
        Input.TU_FINAL: reply(req, 486),
        Input.REQUEST: req,
        Input.ACK: inbound("ACK", "z9hG4bKw", 1, "callee"),
    }.get(inp)


@pytest.mark.parametrize("reliable", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_walk_every_state_input_pair(cls: type[Transaction], reliable: bool) -> None:
    """h2's test: put a transaction in every state, feed it every input; it never raises, and
    it ends in the table's next state (or stays, for a pair the table does not list)."""
    cfg = Config(timer_durations(Timers(), reliable), 4.0, reliable, True)
    for state in states(cls.machine) - {State.TERMINATED}:
        for inp in Input:
            txn = _fresh(cls, cfg)
            txn.state = state
            txn.timers.clear()
            txn.interval = 0.5
            if isinstance(txn, InviteClientTransaction) and inp is Input.R2XX_ACKED:
                txn.tu_ack = (outbound("ACK", "z9hG4bKack", 1, "callee"), PBX)
            out = txn.feed(inp, _message_for(txn, inp), PBX, 1.0)
            assert all(
                isinstance(
                    o, Send | RequestReceived | ResponseReceived | TransactionTimedOut | AckTimedOut
                )
                for o in out
            )
            entry = cls.machine.table.get((state, inp))
            expected = state if entry is None else entry[1]
            if txn.state is not expected:
                # A timer of duration 0 (TCP) fired within the call and ended it.
                assert reliable and txn.state is State.TERMINATED, (state, inp, txn.state)
            if txn.state is State.TERMINATED:
                assert txn.done and not txn.timers
            else:
                assert all(at > 1.0 for at in txn.timers.values())


def test_doc_matches_tables() -> None:
    """docs/transactions.md is generated from tables.py; regenerate it when this fails:
    python -c "from pkiss.sip.transaction.tables import render_markdown;
    print(render_markdown(), end='')" > docs/transactions.md"""
    assert DOC.read_text(encoding="utf-8") == render_markdown()


def test_doc_lists_every_row() -> None:
    text = render_markdown()
    for machine in MACHINES:
        for (state, inp), (actions, next_state) in machine.table.items():
            acts = ", ".join(actions) if actions else "—"
            assert f"| {state} | {inp} | {acts} | {next_state} |" in text


# ------------------------------------------------------------------------------ memory


def test_memory_returns_to_zero_after_many_calls() -> None:
    layer = TransactionLayer()
    now = 0.0
    for n in range(300):
        now += 0.01
        # inbound call answered and acknowledged
        inv = inbound("INVITE", f"z9hG4bKin{n}", n)
        [_, received] = layer.receive(inv, CARRIER, now)
        assert isinstance(received, RequestReceived) and received.key is not None
        layer.respond(received.key, make_response(inv, 200, to_tag="sbc"), now)
        layer.receive(inbound("ACK", f"z9hG4bKack{n}", n, "sbc"), CARRIER, now)
        # outbound call rejected, and one answered and acked by the TU
        out_inv = outbound("INVITE", f"z9hG4bKout{n}", n)
        layer.request(out_inv, PBX, now)
        layer.receive(reply(out_inv, 180), PBX, now)
        layer.receive(reply(out_inv, 486), PBX, now)
        out_ok = outbound("INVITE", f"z9hG4bKok{n}", 10_000 + n)
        layer.request(out_ok, PBX_TCP, now)
        layer.receive(reply(out_ok, 200), PBX_TCP, now)
        layer.ack(outbound("ACK", f"z9hG4bKok-ack{n}", 10_000 + n, "callee"), PBX_TCP, now)
        # a probe
        opt = outbound("OPTIONS", f"z9hG4bKopt{n}", n)
        layer.request(opt, PBX, now)
        layer.receive(reply(opt, 200), PBX, now)
        layer.handle_timer(now)
    assert len(layer) == 300 * 4
    out = drain(layer)
    assert not [o for o in out if not isinstance(o, Send)]  # nothing for the TU
    assert len(layer) == 0
    assert layer.next_deadline() is None
    assert not layer._heap and not layer._acks and not layer._awaiting_ack


def test_heap_stays_bounded_with_rescheduling() -> None:
    """Stale deadlines (stopped timers) are dropped lazily; the heap never grows far beyond
    the live transactions."""
    layer = TransactionLayer()
    for n in range(5000):
        inv = outbound("INVITE", f"z9hG4bKh{n}", n)
        layer.request(inv, PBX, 0.0)
        layer.receive(reply(inv, 180), PBX, 0.1)  # stops A and B: stale entries
    assert len(layer) == 5000
    assert layer.next_deadline() is None
    assert len(layer._heap) <= 2 * len(layer) + 256


def test_heap_is_compacted_when_stale_entries_pile_up() -> None:
    """Transactions that end at once (TCP, D = 0) leave their timer B entries behind; the
    heap is rebuilt before they outnumber the live ones."""
    layer = TransactionLayer()
    for n in range(5000):
        inv = outbound("INVITE", f"z9hG4bKc{n}", n)
        layer.request(inv, PBX_TCP, 0.0)
        layer.receive(reply(inv, 503), PBX_TCP, 0.0)
        assert len(layer._heap) <= 258  # without compaction: n + 1
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_next_deadline_skips_stale_entries() -> None:
    layer = TransactionLayer()
    inv = outbound("INVITE", "z9hG4bKs", 1)
    layer.request(inv, PBX, 0.0)
    assert layer.next_deadline() == 0.5
    layer.receive(reply(inv, 486), PBX, 0.1)
    assert layer.next_deadline() == pytest.approx(32.1)  # A and B stopped; D


# ---------------------------------------------------------------------------- Hypothesis

KINDS = [
    "in_invite",
    "in_invite_2543",
    "in_options",
    "in_cancel",
    "in_ack",
    "in_ack_2xx",
    "tu_respond",
    "tu_invite",
    "tu_options",
    "in_response",
    "in_stray",
    "tu_ack",
    "tu_cancel",
    "tick",
]
TU_STATUSES = [100, 180, 183, 200, 200, 486, 487, 503]
PEER_STATUSES = [100, 180, 200, 200, 487, 486, 503, 603]

# Time steps: mostly within a retransmission interval, sometimes past timers D/F/H/L/M.
advances = st.one_of(
    st.sampled_from([0.0] * 6 + [0.1, 0.5, 1.0, 2.0, 4.0, 5.0, 32.0, 33.0]),
    st.floats(0.0, 40.0, allow_nan=False),
)
steps = st.lists(
    st.tuples(st.sampled_from(KINDS), advances, st.integers(0, 7), st.integers(0, 7)),
    min_size=15,  # Hypothesis' lists average ~6 steps otherwise: too short for CANCEL races
    max_size=80,
)


def recent(items: list[T], i: int) -> T:
    """One of the last three items (what just happened is what a peer answers)."""
    return items[-1 - i % min(3, len(items))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, send_trying=st.booleans())
def test_random_sequences_never_raise_and_memory_returns_to_zero(
    steps: list[tuple[str, float, int, int]], send_trying: bool
) -> None:
    """Any sequence of messages, TU calls and time jumps: the layer never raises, hands out
    only output events, and once the TU has done its part (answered every request, cancelled
    every INVITE left waiting) all timers run out and nothing is left."""
    layer = TransactionLayer(send_trying=send_trying)
    now = 0.0
    server_keys: list[str] = []
    client_requests: list[tuple[str, Request, Addr]] = []
    fresh = 0

    def collect(out: list[TransactionOutput]) -> None:
        for o in out:
            assert isinstance(
                o, Send | RequestReceived | ResponseReceived | TransactionTimedOut | AckTimedOut
            )
            if isinstance(o, RequestReceived) and o.key is not None:
                server_keys.append(o.key)

    for kind, advance, i, choice in steps:
        now += advance
        if i % 2:
            collect(layer.handle_timer(now))
        src = CARRIER if choice < 6 else CARRIER_TCP
        if kind == "in_invite":
            collect(layer.receive(inbound("INVITE", f"z9hG4bK-{i % 3}", i % 3), src, now))
        elif kind == "in_invite_2543":
            collect(layer.receive(inbound("INVITE", None, i % 3), src, now))
        elif kind == "in_options":
            collect(layer.receive(inbound("OPTIONS", f"z9hG4bK-o{i % 3}", i % 3), src, now))
        elif kind == "in_cancel":
            branch = f"z9hG4bK-{i % 3}" if choice < 5 else None
            cancel = inbound("CANCEL", branch, i % 3)
            layer.find_invite(cancel)
            collect(layer.receive(cancel, src, now))
        elif kind == "in_ack":
            branch = f"z9hG4bK-{i % 3}" if choice < 5 else None
            collect(layer.receive(inbound("ACK", branch, i % 3, "sbc"), src, now))
        elif kind == "in_ack_2xx":
            ack = inbound("ACK", f"z9hG4bK-a{fresh}", i % 3, "sbc")
            fresh += 1
            collect(layer.receive(ack, src, now))
        elif kind == "tu_respond" and server_keys:
            key = recent(server_keys, i)
            txn = layer._servers.get(key)
            if txn is not None:
                status = TU_STATUSES[choice]
                resp = make_response(txn.request, status, to_tag="sbc")
                collect(layer.respond(key, resp, now))
        elif kind in ("tu_invite", "tu_options"):
            method = "INVITE" if kind == "tu_invite" else "OPTIONS"
            dest = PBX if choice < 5 else PBX_TCP
            req = outbound(method, f"z9hG4bK-c{fresh}", fresh)
            fresh += 1
            key, out = layer.request(req, dest, now)
            collect(out)
            client_requests.append((key, req, dest))
        elif kind == "in_response" and client_requests:
            _key, req, dest = recent(client_requests, i)
            collect(layer.receive(reply(req, PEER_STATUSES[choice]), dest, now))
        elif kind == "in_stray":
            collect(layer.receive(reply(outbound("INVITE", "z9hG4bKnone", 99), 200), PBX, now))
        elif kind == "tu_ack" and client_requests:
            _key, req, dest = recent(client_requests, i)
            if req.method == "INVITE":
                cseq = req.cseq
                assert cseq is not None
                ack = outbound("ACK", f"z9hG4bK-k{fresh}", cseq.seq, "callee")
                fresh += 1
                collect(layer.ack(ack, dest, now))
        elif kind == "tu_cancel" and client_requests:
            key, req, dest = recent(client_requests, i)
            made = layer.make_cancel(key)
            if made is not None:
                collect(layer.request(made, dest, now)[1])
        elif kind == "tick":
            collect(layer.handle_timer(now))
            collect(layer.handle_timer(now))  # a duplicate wake-up is harmless

    # A well-behaved TU answers every request and cancels every INVITE it still waits for.
    for key in server_keys:
        txn = layer._servers.get(key)
        if txn is not None:
            collect(layer.respond(key, make_response(txn.request, 486, to_tag="sbc"), now))
    for key, _req, dest in client_requests:
        made = layer.make_cancel(key)
        if made is not None:
            collect(layer.request(made, dest, now)[1])
    collect(drain(layer))
    assert len(layer) == 0
    assert layer.next_deadline() is None
    assert not layer._acks and not layer._awaiting_ack
