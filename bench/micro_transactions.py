"""Micro benchmark of the transaction layer (``pkiss.sip.transaction``), without the B2BUA.

Drives one ``TransactionLayer`` with the transactions of N calls through the SBC, as the B2BUA
does over UDP (7 messages in, 7 out per answered call), on a fake clock advancing at
``--cps`` calls per second:

    A-leg (carrier -> SBC, server side)      B-leg (SBC -> PBX, client side)
    INVITE in (100 Trying sent by the layer)  request(INVITE)
                                              100, 180 in
    respond(180)                              200 in
    respond(200)                              ack()
    ACK in
    BYE in, respond(200)                      request(BYE), 200 in

``--reject`` of the calls are refused by the PBX instead (486: the layer ACKs it), and the
refusal passes to the carrier (486, its ACK on the INVITE's branch).

Inbound messages are built as bytes and parsed by ``parse_datagram`` (as the transports do);
what the SBC sends is built as ``Request`` objects and with ``make_response`` (as the B2BUA
does). The bench keeps no reference to any message once a call is over, so what is still
allocated after the last call is what the layer keeps.

It prints:
  * CPU: microseconds per layer call (``time.perf_counter`` around each call, minus the cost
    of the measurement itself), per API and overall, for the calls, and for the drain (the
    timers of the lingering transactions running out);
  * memory: bytes (tracemalloc) and GC-tracked objects per lingering transaction, measured
    after every call has ended but before the lingering transactions' timers (32 s) expire;
    and the time of one full ``gc.collect()`` with them all alive;
  * that everything drains: ``len(layer) == 0`` and no side table left.

Run: ``.venv/bin/python bench/micro_transactions.py`` (``--calls 20000``; ``--profile`` for a
cProfile of the layer's functions; ``--top 15`` for the allocation sites still alive).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import pstats
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from pkiss.sip.message import Request, make_response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import (
    Addr,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionOutput,
)

CARRIER = Addr("udp", "198.51.100.7", 5060)
PBX = Addr("udp", "192.0.2.20", 5060)


def source(addr: Addr) -> Addr:
    """A new ``Addr`` with its own host string and port, as the UDP transport makes one for
    each datagram (from what the socket returns)."""
    return Addr(addr.transport, addr.host.encode().decode(), int(str(addr.port)))


SDP = (
    "v=0\r\n"
    "o=- 3867395210 3867395210 IN IP4 {ip}\r\n"
    "s=-\r\n"
    "c=IN IP4 {ip}\r\n"
    "t=0 0\r\n"
    "m=audio {port} RTP/AVP 8 0 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)


def _wire(head: str, body: str = "") -> bytes:
    head = head.strip("\n").replace("\n", "\r\n")
    return f"{head}\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode("latin-1")


def _parse(data: bytes) -> Any:
    msg = parse_datagram(data)
    assert msg is not None
    return msg


# ---------------------------------------------------------------- A-leg: from the carrier


def a_invite(n: int) -> Any:
    return _parse(
        _wire(
            f"""
INVITE sip:+33123456789@203.0.113.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-a{n}-inv;rport
Max-Forwards: 69
From: "+33987654321" <sip:+33987654321@198.51.100.7;user=phone>;tag=ca-{n}
To: <sip:+33123456789@203.0.113.1;user=phone>
Call-ID: {n}-8f2a1c@198.51.100.7
CSeq: 1 INVITE
Contact: <sip:+33987654321@198.51.100.7:5060>
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE
Supported: timer, 100rel
Session-Expires: 1800
P-Asserted-Identity: <sip:+33987654321@198.51.100.7;user=phone>
User-Agent: Carrier-SBC/4.2
Content-Type: application/sdp
""",
            SDP.format(ip="198.51.100.70", port=20000 + n % 10000 * 2),
        )
    )


def a_in_dialog(method: str, n: int, seq: int, branch: str) -> Any:
    return _parse(
        _wire(
            f"""
{method} sip:sbc@203.0.113.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch={branch};rport
Max-Forwards: 69
From: "+33987654321" <sip:+33987654321@198.51.100.7;user=phone>;tag=ca-{n}
To: <sip:+33123456789@203.0.113.1;user=phone>;tag=sa-{n}
Call-ID: {n}-8f2a1c@198.51.100.7
CSeq: {seq} {method}
User-Agent: Carrier-SBC/4.2
"""
        )
    )


def a_ack_non2xx(n: int) -> Any:
    """The ACK of a non-2xx final: the INVITE's branch and Request-URI (§17.1.1.3)."""
    return _parse(
        _wire(
            f"""
ACK sip:+33123456789@203.0.113.1:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-a{n}-inv;rport
Max-Forwards: 69
From: "+33987654321" <sip:+33987654321@198.51.100.7;user=phone>;tag=ca-{n}
To: <sip:+33123456789@203.0.113.1;user=phone>;tag=sa-{n}
Call-ID: {n}-8f2a1c@198.51.100.7
CSeq: 1 ACK
"""
        )
    )


def a_response(inv: Request, status: int, n: int) -> Any:
    if status == 200:
        return make_response(
            inv,
            200,
            to_tag=f"sa-{n}",
            headers=[
                ("Contact", "<sip:203.0.113.1:5060>"),
                ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
                ("Content-Type", "application/sdp"),
            ],
            body=SDP.format(ip="203.0.113.1", port=30000 + n % 10000 * 2).encode(),
        )
    if status == 180:
        return make_response(inv, 180, to_tag=f"sa-{n}", headers=[("Contact", "<sip:203.0.113.1>")])
    return make_response(inv, status, to_tag=f"sa-{n}")


# ---------------------------------------------------------------- B-leg: towards the PBX

B_FROM = '"+33987654321" <sip:+33987654321@192.0.2.1>'
B_TO = "<sip:1234@192.0.2.20>"


def b_request(method: str, n: int, seq: int, branch: str, to_tag: str | None = None) -> Request:
    to = B_TO if to_tag is None else f"{B_TO};tag={to_tag}"
    headers = [
        ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport"),
        ("Max-Forwards", "70"),
        ("From", f"{B_FROM};tag=sb-{n}"),
        ("To", to),
        ("Call-ID", f"b{n}-4c1d9e0a@192.0.2.1"),
        ("CSeq", f"{seq} {method}"),
    ]
    body = b""
    if method == "INVITE":
        headers += [
            ("Contact", "<sip:192.0.2.1:5060>"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
            ("Content-Type", "application/sdp"),
        ]
        body = SDP.format(ip="192.0.2.1", port=40000 + n % 10000 * 2).encode()
    return Request(
        method,
        "sip:1234@192.0.2.20" if to_tag is None else "sip:1234@192.0.2.20:5060",
        headers,
        body,
    )


def b_response(n: int, status: int, method: str, seq: int, branch: str) -> Any:
    to = B_TO if status == 100 else f"{B_TO};tag=pbx-{n}"
    reason = {100: "Trying", 180: "Ringing", 200: "OK", 486: "Busy Here"}[status]
    head = f"""
SIP/2.0 {status} {reason}
Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport=5060;received=192.0.2.1
From: {B_FROM};tag=sb-{n}
To: {to}
Call-ID: b{n}-4c1d9e0a@192.0.2.1
CSeq: {seq} {method}
Server: PBX/13.2
"""
    body = ""
    if method == "INVITE" and status in (180, 200):
        head += "Contact: <sip:1234@192.0.2.20:5060>\n"
    if method == "INVITE" and status == 200:
        head += "Content-Type: application/sdp\n"
        body = SDP.format(ip="192.0.2.20", port=50000 + n % 10000 * 2)
    return _parse(_wire(head, body))


# ---------------------------------------------------------------- the driver


def clear_parse_caches() -> None:
    """Empty the parser's caches of parsed header values (bounded LRUs): what they hold is
    not the layer's (what a kept message references stays alive, and counted)."""
    import pkiss.sip.headers
    import pkiss.sip.message
    import pkiss.sip.parser
    import pkiss.sip.uri

    for module in (pkiss.sip.headers, pkiss.sip.message, pkiss.sip.parser, pkiss.sip.uri):
        for obj in vars(module).values():
            clear = getattr(obj, "cache_clear", None)
            if callable(clear):
                clear()


class Driver:
    """Calls the layer, timing each call (``perf_counter``, the measurement cost subtracted)."""

    def __init__(self, layer: TransactionLayer, timed: bool) -> None:
        self.layer = layer
        self.timed = timed
        self.now = 0.0
        self.spent: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.timed:
            return fn(*args)
        t0 = time.perf_counter()
        out = fn(*args)
        dt = time.perf_counter() - t0
        self.spent[name] = self.spent.get(name, 0.0) + dt
        self.count[name] = self.count.get(name, 0) + 1
        return out

    def advance(self, now: float) -> None:
        """The event loop wakes up for each deadline due before ``now``."""
        layer = self.layer
        while True:
            at = self.call("next_deadline", layer.next_deadline)
            if at is None or at > now:
                break
            self.now = max(self.now, at)
            self.call("handle_timer", layer.handle_timer, self.now)
        self.now = max(self.now, now)

    def receive(self, msg: Any, addr: Addr) -> list[TransactionOutput]:
        out: list[TransactionOutput] = self.call(
            "receive", self.layer.receive, msg, source(addr), self.now
        )
        return out

    def server_key(self, out: list[TransactionOutput]) -> str:
        for o in out:
            if isinstance(o, RequestReceived) and o.key is not None:
                return o.key
        raise AssertionError(f"no new request in {out}")


def call_flow(d: Driver, n: int, reject: bool) -> Iterator[float]:
    """One call; yields the delay before its next step."""
    inv = a_invite(n)
    a_key = d.server_key(d.receive(inv, CARRIER))
    b_inv = b_request("INVITE", n, 1, f"z9hG4bK-b{n}-inv")
    b_key, _ = d.call("request", d.layer.request, b_inv, PBX, d.now)
    del b_inv
    yield 0.005
    d.receive(b_response(n, 100, "INVITE", 1, f"z9hG4bK-b{n}-inv"), PBX)
    yield 0.5
    if reject:
        out = d.receive(b_response(n, 486, "INVITE", 1, f"z9hG4bK-b{n}-inv"), PBX)
        assert any(isinstance(o, ResponseReceived) for o in out)
        d.call("respond", d.layer.respond, a_key, a_response(inv, 486, n), d.now)
        del inv
        yield 0.03
        d.receive(a_ack_non2xx(n), CARRIER)
        return
    d.receive(b_response(n, 180, "INVITE", 1, f"z9hG4bK-b{n}-inv"), PBX)
    d.call("respond", d.layer.respond, a_key, a_response(inv, 180, n), d.now)
    yield 2.0
    out = d.receive(b_response(n, 200, "INVITE", 1, f"z9hG4bK-b{n}-inv"), PBX)
    assert any(isinstance(o, ResponseReceived) and o.key == b_key for o in out)
    d.call("respond", d.layer.respond, a_key, a_response(inv, 200, n), d.now)
    del inv
    ack = b_request("ACK", n, 1, f"z9hG4bK-b{n}-ack", f"pbx-{n}")
    d.call("ack", d.layer.ack, ack, PBX, d.now)
    del ack
    yield 0.03
    d.receive(a_in_dialog("ACK", n, 1, f"z9hG4bK-a{n}-ack"), CARRIER)
    yield 3.0
    a_bye = a_in_dialog("BYE", n, 2, f"z9hG4bK-a{n}-bye")
    bye_key = d.server_key(d.receive(a_bye, CARRIER))
    d.call("respond", d.layer.respond, bye_key, make_response(a_bye, 200), d.now)
    del a_bye
    bye = b_request("BYE", n, 2, f"z9hG4bK-b{n}-bye", f"pbx-{n}")
    d.call("request", d.layer.request, bye, PBX, d.now)
    del bye
    yield 0.02
    d.receive(b_response(n, 200, "BYE", 2, f"z9hG4bK-b{n}-bye"), PBX)


def run(
    calls: int, cps: float, reject: float, timed: bool, traced: bool, top: int
) -> dict[str, Any]:
    """``calls`` calls, one every 1/``cps`` s; ``timed``: time each layer call; ``traced``:
    measure memory once every call has ended (``top``: keep that many allocation sites)."""
    layer = TransactionLayer()
    d = Driver(layer, timed)
    events: list[tuple[float, int, Iterator[float]]] = []
    every = round(1 / reject) if reject > 0 else 0
    report: dict[str, Any] = {}
    for n in range(calls):
        flow = call_flow(d, n, bool(every) and n % every == every - 1)
        heapq.heappush(events, (n / cps, n, flow))
    t_wall = time.perf_counter()
    while events:
        at, n, step = heapq.heappop(events)
        d.advance(at)
        delay = next(step, None)
        if delay is not None:
            heapq.heappush(events, (at + delay, n, step))
    report["wall_calls"] = time.perf_counter() - t_wall
    report["spent_calls"] = dict(d.spent)
    report["count_calls"] = dict(d.count)
    report["live"] = len(layer)
    report["clients"] = len(layer._clients)
    report["servers"] = len(layer._servers)
    report["acks"] = len(layer._acks)
    report["heap"] = len(layer._heap)
    report["now"] = d.now
    if traced:
        clear_parse_caches()
        gc.collect()
        report["traced"] = tracemalloc.get_traced_memory()[0]
        report["gc_objects"] = len(gc.get_objects())
        t = time.perf_counter()
        gc.collect()
        report["gc_full"] = time.perf_counter() - t
        if top:
            snap = tracemalloc.take_snapshot()
            stats = snap.filter_traces(
                [
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, __file__),
                ]
            ).statistics("lineno")
            report["top"] = stats[:top]
            del snap
    d.spent.clear()
    d.count.clear()
    t_wall = time.perf_counter()
    d.advance(float("inf"))
    report["wall_drain"] = time.perf_counter() - t_wall
    report["spent_drain"] = dict(d.spent)
    report["count_drain"] = dict(d.count)
    report["left"] = len(layer)
    report["left_tables"] = {
        "heap": len(layer._heap),
        "acks": len(layer._acks),
        "awaiting_ack": len(layer._awaiting_ack),
    }
    return report


def _overhead() -> float:
    """Seconds the timing itself adds to one measured call."""
    d = Driver(TransactionLayer(), True)
    best = float("inf")
    for _ in range(5):
        d.spent.clear()
        for _ in range(20000):
            d.call("x", int)
        best = min(best, d.spent["x"] / 20000)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--cps", type=float, default=1000.0, help="calls per second (fake clock)")
    p.add_argument("--reject", type=float, default=0.1, help="share of calls refused (486)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs (the best is kept)")
    p.add_argument("--profile", action="store_true", help="cProfile one run instead")
    p.add_argument("--top", type=int, default=0, help="allocation sites alive at the snapshot")
    args = p.parse_args()

    if args.profile:
        prof = cProfile.Profile()
        gc.disable()
        prof.enable()
        run(args.calls, args.cps, args.reject, False, False, 0)
        prof.disable()
        gc.enable()
        st = pstats.Stats(prof)
        st.sort_stats("tottime").print_stats("transaction/", 30)
        return 0

    # CPU: garbage collection off, so its pauses do not land on random calls (its cost is
    # measured below, as a full collection with every lingering transaction alive).
    overhead = _overhead()
    best: dict[str, Any] | None = None
    for _ in range(args.repeat):
        gc.collect()
        gc.disable()
        r = run(args.calls, args.cps, args.reject, True, False, 0)
        gc.enable()
        if best is None or sum(r["spent_calls"].values()) < sum(best["spent_calls"].values()):
            best = r
    assert best is not None

    # Memory: a second, traced run (tracemalloc slows everything down), from empty parser
    # caches to empty parser caches.
    clear_parse_caches()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    base_objects = len(gc.get_objects())
    m = run(args.calls, args.cps, args.reject, False, True, args.top)
    tracemalloc.stop()

    def cpu(spent: dict[str, float], count: dict[str, int], title: str) -> None:
        n = sum(count.values())
        total = sum(spent.values()) - overhead * n
        print(f"{title}: {n} layer calls, {total * 1e6 / max(n, 1):.2f} µs per call on average")
        for name in sorted(spent):
            c = count[name]
            print(f"    {name:<14} {c:>8}  {(spent[name] / c - overhead) * 1e6:7.2f} µs")

    print(
        f"pkiss transaction layer, {args.calls} calls at {args.cps:g}/s, {args.reject:.0%} refused"
    )
    print(f"(timing overhead {overhead * 1e9:.0f} ns per call, subtracted; best of {args.repeat})")
    cpu(best["spent_calls"], best["count_calls"], "calls")
    calls_n = sum(best["count_calls"].values())
    per_call = (sum(best["spent_calls"].values()) - overhead * calls_n) / args.calls
    print(f"    per call through the SBC: {per_call * 1e6:.1f} µs in the layer")
    cpu(best["spent_drain"], best["count_drain"], "drain (lingering timers expire)")
    live = m["live"]
    used = m["traced"] - base
    print(
        f"lingering at t={m['now']:.1f} s: {live} transactions "
        f"({m['servers']} server, {m['clients']} client), {m['acks']} remembered ACKs, "
        f"heap {m['heap']}"
    )
    print(
        f"memory: {used / 1024 / 1024:.1f} MiB traced, {used / live:.0f} bytes per lingering "
        f"transaction, {used / args.calls:.0f} bytes per call"
    )
    print(
        f"GC: {(m['gc_objects'] - base_objects) / live:.1f} tracked objects per lingering "
        f"transaction; a full collection takes {m['gc_full'] * 1e3:.1f} ms"
    )
    if args.top:
        for stat in m["top"]:
            print("   ", stat)
    ok = best["left"] == 0 and m["left"] == 0 and not any(m["left_tables"].values())
    print(
        f"drained: len(layer) == {m['left']}, side tables {m['left_tables']}"
        f" -> {'OK' if ok else 'LEAK'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
