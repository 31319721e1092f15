"""The transaction layer as a whole: the tables' invariants, the generated doc, memory, the heap
of deadlines, and random sequences of messages and time (Hypothesis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import wire

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
from pkiss.sip.transaction.layer import _ADDR_CACHE
from pkiss.sip.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from pkiss.sip.transaction.tables import (
    _INPUT_TIMER,
    _RETRANSMIT_TIMERS,
    _TIMER_OPS,
    ANSWERED,
    INVITE_CLIENT,
    INVITE_SERVER,
    MACHINES,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    TIMER_INPUT,
    TIMERS,
    Action,
    Config,
    Input,
    Machine,
    State,
    Timer,
    Transaction,
    check_timer_slots,
    render_markdown,
    running_timers,
    timer_durations,
)

T = TypeVar("T")

DOC = Path(__file__).resolve().parents[2] / "docs" / "transactions.md"

CARRIER = Addr("udp", "198.51.100.7", 5060)
CARRIER_TCP = Addr("tcp", "198.51.100.7", 40000)
PBX = Addr("udp", "192.0.2.20", 5060)
PBX_TCP = Addr("tcp", "192.0.2.20", 5060)


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
            txn.stop_timers()
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


# ---------------------------------------------------------------- timers and what is kept


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_two_timer_slots_are_enough(machine: Machine) -> None:
    """A transaction holds one retransmission timer and one other: the tables never need
    more at once (checked again when the classes compile their tables)."""
    check_timer_slots(machine)
    if machine is not NON_INVITE_SERVER:
        assert any(len(timers) == 2 for _, timers in running_timers(machine))


def test_a_table_needing_a_third_timer_is_refused() -> None:
    bad = Machine(
        "bad",
        "",
        ((Action.START_B, Action.START_D), State.CALLING),
        {(State.CALLING, Input.TIMER_B): ((), State.TERMINATED)},
    )
    with pytest.raises(ValueError, match="run at once"):
        check_timer_slots(bad)


def _configs(machine: Machine) -> dict[tuple[State, frozenset[Timer]], list[tuple[Any, ...]]]:
    """Every (state, running timers) and its rows: (input, actions, next configuration). A
    retransmission timer may be left unarmed (reliable transports)."""

    def run(timers: frozenset[Timer], actions: tuple[Action, ...]) -> list[frozenset[Timer]]:
        outs = [set(timers)]
        for action in actions:
            op = _TIMER_OPS.get(action)
            if op is None:
                continue
            kind, timer, _ = op
            if kind == "stop":
                for t in outs:
                    t.discard(timer)
            elif kind == "start" and timer in _RETRANSMIT_TIMERS:
                outs += [set(t) for t in outs]
                for t in outs[: len(outs) // 2]:
                    t.add(timer)
            else:
                for t in outs:
                    t.add(timer)
        return [frozenset(t) for t in outs]

    graph: dict[tuple[State, frozenset[Timer]], list[tuple[Any, ...]]] = {}
    todo = [(machine.start[1], t) for t in run(frozenset(), machine.start[0])]
    while todo:
        config = todo.pop()
        if config in graph:
            continue
        state, timers = config
        graph[config] = []
        for (row_state, inp), (actions, nxt) in machine.table.items():
            if row_state is not state:
                continue
            timer = _INPUT_TIMER.get(inp)
            if timer is not None and timer not in timers:
                continue
            before = timers - {timer} if timer is not None else timers
            for after in run(before, actions):
                target = (nxt, frozenset() if nxt is State.TERMINATED else after)
                graph[config].append((inp, actions, target))
                todo.append(target)
    return graph


def _may_still_use(
    machine: Machine, uses: set[Action], renews: set[Action]
) -> set[tuple[State, frozenset[Timer]]]:
    """The configurations from which a row doing one of ``uses`` can be reached before a row
    doing one of ``renews`` (which replaces what is used)."""
    graph = _configs(machine)
    found: set[tuple[State, frozenset[Timer]]] = set()
    changed = True
    while changed:
        changed = False
        for config, rows in graph.items():
            if config in found:
                continue
            for _, actions, target in rows:
                first = next((a for a in actions if a in uses | renews), None)
                if (first is not None and first in uses) or (first is None and target in found):
                    found.add(config)
                    changed = True
                    break
    return found


@pytest.mark.parametrize("cls", [InviteServerTransaction, NonInviteServerTransaction])
def test_a_server_forgets_its_response_only_when_nothing_can_resend_it(
    cls: type[ServerTransaction],
) -> None:
    """Walk every configuration: where the compiled rows drop the last response, no row
    can re-send it any more before a new response replaces it."""
    machine = cls.machine
    needed = _may_still_use(
        machine, {Action.RESEND_RESPONSE}, {Action.SEND_RESPONSE, Action.SEND_TRYING}
    )
    cfg = Config(timer_durations(Timers(), False), 4.0, False, True)
    checked = 0
    for (state, timers), rows in _configs(machine).items():
        for inp, _, (nxt, after) in rows:
            if (nxt, after) not in needed:
                continue
            # The steps the row ends with, on a transaction holding the timers that run
            # after the row: the last response must survive.
            txn = cls("k", inbound("INVITE", "z9hG4bKw", 1), CARRIER, cfg)
            txn.last = make_response(inbound("INVITE", "z9hG4bKw", 1), 180)
            for timer in after:
                slot = "retx" if timer in _RETRANSMIT_TIMERS else "wait"
                setattr(txn, slot, timer)
                setattr(txn, f"{slot}_at", 9.0)
            for fn in cls._cleanup(state, machine.table[(state, inp)][0], nxt):
                fn(txn, None, None, 1.0, [])
            assert txn.last is not None, (state, sorted(timers), inp, nxt, sorted(after))
            checked += 1
    assert checked


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_no_row_after_the_final_response_needs_the_request(machine: Machine) -> None:
    """Transactions forget their request on reaching ``ANSWERED``: no row there re-sends it
    or derives from it, and an INVITE client builds its ACK before entering Completed."""
    needs_request = {
        Action.SEND_REQUEST,
        Action.RESEND_REQUEST,
        Action.SEND_TRYING,
        Action.SEND_CANCEL_IF_ASKED,
    }
    for (state, _), (actions, nxt) in machine.table.items():
        if state in ANSWERED:
            assert not needs_request & set(actions), (state, actions)
        elif nxt in ANSWERED and any(
            Action.SEND_ACK in acts for (s, _), (acts, _) in machine.table.items() if s is nxt
        ):
            assert Action.SEND_ACK in actions, (state, nxt)


def test_timers_due_together_fire_in_the_order_they_were_started() -> None:
    """T2 = T1: timer E is restarted every 0.5 s and meets timer F at 32 s. F was started
    first (E is restarted, a new start, each time it fires): the transaction times out
    without a last retransmission."""
    layer = TransactionLayer(Timers(t1=0.5, t2=0.5))
    opt = outbound("OPTIONS", "z9hG4bKtie", 1)
    key, _ = layer.request(opt, PBX, 0.0)
    fired = []
    while (at := layer.next_deadline()) is not None:
        fired.append((at, layer.handle_timer(at)))
    assert fired[-2] == (31.5, [Send(opt, PBX)])
    assert fired[-1] == (32.0, [TransactionTimedOut(key)])
    # Started together, E (first in the start row) fires first.
    layer = TransactionLayer(Timers(t1=0.5, t2=0.5))
    key, _ = layer.request(outbound("OPTIONS", "z9hG4bKlate", 2), PBX, 0.0)
    assert [type(o) for o in layer.handle_timer(40.0)] == [Send, TransactionTimedOut]


def test_remembered_acks_are_forgotten_after_64t1() -> None:
    layer = TransactionLayer()
    for n in range(3000):
        # The same dialog acknowledged again and again (re-INVITEs): one record per dialog.
        ack = outbound("ACK", f"z9hG4bKa{n}", n % 3, "callee")
        layer.ack(ack, PBX, n * 0.001)
    assert len(layer._acks) == 3
    assert len(layer._heap) <= 2 * len(layer._acks) + 256
    assert layer.next_deadline() == pytest.approx(2.997 + 32.0)
    drain(layer)
    assert not layer._acks and not layer._heap


def test_server_transactions_share_their_source_address() -> None:
    """The transports make an Addr per datagram; lingering transactions share one."""
    layer = TransactionLayer()
    for n in range(3):
        source = Addr("udp", "".join(["198.51.100.", "7"]), int("5060"))
        [received] = layer.receive(inbound("OPTIONS", f"z9hG4bKs{n}", n), source, 0.0)
        assert received.source == CARRIER
    first, *others = (t.source for t in layer._servers.values())
    assert all(o is first for o in others)
    for n in range(_ADDR_CACHE + 10):
        layer.receive(inbound("OPTIONS", f"z9hG4bKt{n}", n), Addr("udp", "192.0.2.9", n), 0.0)
    assert len(layer._addrs) <= _ADDR_CACHE


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
    # What lingers keeps no request: only what it may still send.
    assert all(t.request is None for t in (*layer._servers.values(), *layer._clients.values()))
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
    server_requests: dict[str, Request] = {}  # the TU answers from the request it was given
    client_requests: list[tuple[str, Request, Addr]] = []
    fresh = 0

    def collect(out: list[TransactionOutput]) -> None:
        for o in out:
            assert isinstance(
                o, Send | RequestReceived | ResponseReceived | TransactionTimedOut | AckTimedOut
            )
            if isinstance(o, RequestReceived) and o.key is not None:
                server_keys.append(o.key)
                server_requests[o.key] = o.request

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
            status = TU_STATUSES[choice]
            resp = make_response(server_requests[key], status, to_tag="sbc")
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
        if key in layer._servers:
            collect(layer.respond(key, make_response(server_requests[key], 486, to_tag="sbc"), now))
    for key, _req, dest in client_requests:
        made = layer.make_cancel(key)
        if made is not None:
            collect(layer.request(made, dest, now)[1])
    collect(drain(layer))
    assert len(layer) == 0
    assert layer.next_deadline() is None
    assert not layer._acks and not layer._awaiting_ack


# --------------------------------------------------------------------------- counters


def test_retransmissions_are_counted_both_ways() -> None:
    layer = TransactionLayer()
    invite = inbound("INVITE", "z9hG4bKretx", 1)
    layer.receive(invite, CARRIER, 0.0)  # 100 Trying, once
    assert (layer.retransmissions, layer.retransmitted) == (0, 0)
    out = layer.receive(invite, CARRIER, 0.1)  # the caller sent it again: 100 again
    assert [type(o) for o in out] == [Send]
    assert (layer.retransmissions, layer.retransmitted) == (1, 1)
    # a request to the PBX, unanswered over UDP: timer E re-sends it, each one counted
    _, out = layer.request(outbound("OPTIONS", "z9hG4bKopt", 2), PBX, 0.0)
    sent = [o for o in drain(layer) if isinstance(o, Send)]
    assert len(sent) == 10  # timer E until timer F (T1 = 0.5 s, 32 s)
    assert layer.retransmitted == 1 + len(sent)
    assert layer.retransmissions == 1
    # over TCP nothing is re-sent
    tcp = TransactionLayer()
    tcp.request(outbound("OPTIONS", "z9hG4bKtcp", 3), PBX_TCP, 0.0)
    drain(tcp)
    assert tcp.retransmitted == 0
