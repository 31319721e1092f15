"""The node's whole receive path without sockets, for fuzzing: a node built by
``pkiss.node.build`` on a fake event loop whose clock the rig moves, the real ``Engine`` in
front of it (admission screen, parse, admission, the core and its owners), the real
``TcpTransport`` connections for streams (``StreamParser`` framing, closing on framing
errors, the connection gate's deadlines), and the built-in relay on loopback ports.

One case is a short scenario drawn step by step (``run_case``): real messages of a configured
peer and of strangers (INVITE, REGISTER, OPTIONS, ACK, BYE, CANCEL, re-INVITE, answers to
what the node sent, corpus messages, random bytes), each maybe mutated (byte flips,
insertions, truncations, duplicated lines, huge numbers, random header values, Content-Length
lies), over UDP datagrams or a TCP stream (bytes split at random points, several messages per
segment, garbage between them). Then the scenario hangs up the calls it saw answered (ACK and
BYE from the caller), the clock runs far enough for every timer to fire, and ``leaks()`` lists
whatever is still held: transactions, calls, dialogs, client transactions, deadlines, relay
ports, connections, their buffers, timers.

Draws come from a ``Draw``: Hypothesis (``HypothesisDraw``, which shrinks a failure) in the
test suite, ``random.Random`` (``RandomDraw``) in ``bench/fuzz_receive.py``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pkiss.config import Config, parse_config
from pkiss.node import Node, build
from pkiss.sip import ids
from pkiss.sip.digest import authorization, parse_challenge
from pkiss.sip.errors import ParseError
from pkiss.sip.message import Request, Response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import Addr
from pkiss.transport.tcp import TcpTransport, _Connection

T = TypeVar("T")

OPERATOR_HOST = "127.0.0.2"
PBX_HOSTS = ("127.0.0.3", "127.0.0.4")
STRANGER_HOST = "192.0.2.66"
REMOTE_HOST = "192.0.2.50"  # where the registered PBX registers from

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]}
media: {mode: relay, ports: 41000-41999}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060], limits: {calls: 50}, health: false}
  pbx:
    role: pbx
    hosts: [{address: "127.0.0.3:5060", priority: 1}, {address: "127.0.0.4:5060", priority: 2}]
    dids: ["+331*"]
    setup_timeout: 3
    limits: {calls: 50}
    health: false
  remote-pbx:
    role: pbx
    hosts: registered
    match: {username: remote1}
    password: secret
    dids: ["+33140000500"]
    health: false
"""

SETTLE = 100_000.0
"""Seconds the clock runs after a case: past every SIP timer, session timer, binding (3600 s),
idle connection (3600 s) and ban (86400 s)."""


# ------------------------------------------------------------------------------------ draws
class Draw(Protocol):
    def int(self, lo: int, hi: int) -> int: ...
    def pick(self, items: Sequence[T]) -> T: ...
    def binary(self, max_size: int) -> bytes: ...
    def text(self, alphabet: str, max_size: int) -> str: ...


class RandomDraw:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, items: Sequence[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def text(self, alphabet: str, max_size: int) -> str:
        return "".join(self.rng.choices(alphabet, k=self.rng.randint(0, max_size)))


class HypothesisDraw:
    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data = data
        self.st = st

    def int(self, lo: int, hi: int) -> int:
        return int(self.data.draw(self.st.integers(lo, hi)))

    def pick(self, items: Sequence[T]) -> T:
        return items[self.int(0, len(items) - 1)]

    def binary(self, max_size: int) -> bytes:
        return bytes(self.data.draw(self.st.binary(max_size=max_size)))

    def text(self, alphabet: str, max_size: int) -> str:
        return str(self.data.draw(self.st.text(alphabet=alphabet, max_size=max_size)))


# ---------------------------------------------------------------------------- the fake loop
class _Handle:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """What the engine, the connections and the relay ask of the event loop; time is ours."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> _Handle:
        handle = _Handle(when, callback, args)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Handle:
        return self.call_at(self.now + delay, callback, *args)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> _Handle:
        return self.call_at(self.now, callback, *args)

    def add_reader(self, fd: int, callback: Callable[..., Any], *args: Any) -> None:
        pass

    def remove_reader(self, fd: int) -> None:
        pass

    def run_until(self, to: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= to:
            when, _, handle = heapq.heappop(heap)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.callback(*handle.args)
        self.now = max(self.now, to)

    def pending(self) -> list[_Handle]:
        return [h for _, _, h in self._heap if not h.cancelled]


class _FakeTransport:
    """The asyncio transport of one inbound TCP connection: writes are recorded."""

    def __init__(self, rig: Rig, conn: _Connection) -> None:
        self.rig = rig
        self.conn = conn
        self.closed = False

    def write(self, data: bytes) -> None:
        pass  # asyncio ignores a write on a closed transport too

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.rig.loop.call_soon(self.conn.connection_lost, None)


class _Sends:
    """Stands for the listeners' ``send``: every message the node sends, recorded; what goes
    to an open TCP connection is also written on it."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    def send(self, data: bytes, dest: Addr) -> None:
        rig = self.rig
        rig.sent.append((data, dest))
        if dest.transport == "tcp" and (dest.host, dest.port) in rig.tcp._connections:
            rig.tcp.send(data, dest)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------- the rig
@dataclass
class Stats:
    """What the cases reached (summed over cases): the fuzzing is worth what these say."""

    cases: int = 0
    packets: int = 0
    parsed: int = 0  # cases where the node answered or sent anything
    calls: int = 0  # cases that created at least one call
    answered: int = 0  # cases with a call answered
    hung_up_idle: int = 0  # calls only the media timeout ended
    registered: int = 0  # cases with a 200 to a REGISTER
    options: int = 0  # cases with a 200 to an OPTIONS
    stream_closed: int = 0  # TCP connections closed on a framing error
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, other: Stats) -> None:
        for name in ("cases", "packets", "parsed", "calls", "answered", "hung_up_idle",
                     "registered", "options", "stream_closed"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + v


_CONFIGS: dict[str, Config] = {}
_IDS = random.Random(0).randbytes(1 << 20)


class Rig:
    def __init__(self, config: str = CONFIG) -> None:
        self.loop = FakeLoop()
        if config not in _CONFIGS:
            _CONFIGS[config] = parse_config(config)  # immutable: one per text
        self.config = _CONFIGS[config]
        self.node: Node = build(self.config, self.loop)  # type: ignore[arg-type]
        engine = self.node.engine
        engine._loop = self.loop  # type: ignore[assignment]
        engine.listeners = _Sends(self)  # type: ignore[assignment]
        self.tcp = TcpTransport("127.0.0.1", 5060, engine.on_stream_message,
                                self.config.security.max_message_bytes,
                                self.node.connections)  # fmt: skip
        # the same identifiers and nonces every run: Hypothesis replays a case exactly
        ids._pool.buf, ids._pool.pos = _IDS, 0
        self.node.calls.auth.nonces._secret = b"fuzz" * 8
        self.sent: list[tuple[bytes, Addr]] = []
        self.streams: dict[Addr, _Connection | None] = {}  # None: refused at accept
        self.stats = Stats()
        with self.running():
            engine.drive(self.node.core.start(self.loop.now))

    def close(self) -> None:
        if self.node.relay is not None:
            self.node.relay.close()

    def running(self) -> _Running:
        return _Running(self.loop)

    # ------------------------------------------------------------------------- delivery
    def datagram(self, data: bytes, source: Addr) -> None:
        self.stats.packets += 1
        with self.running():
            self.node.engine.on_datagram(data, source)
            self.loop.run_until(self.loop.now)  # what the loop runs soon (a closed connection)

    def stream(self, data: bytes, source: Addr) -> None:
        """Bytes on the inbound TCP connection from ``source`` (accepted on first use, as
        ``TcpTransport._take`` does: judged by the connection gate first)."""
        self.stats.packets += 1
        with self.running():
            if source not in self.streams:
                conn = _Connection(self.tcp, source, inbound=True)
                gate = self.node.connections
                if gate.open(conn, source.host, self.loop.now) is not None:
                    self.streams[source] = None
                    return
                self.tcp._inbound.add(conn)
                conn.connection_made(_FakeTransport(self, conn))  # type: ignore[arg-type]
                self.streams[source] = conn
            conn = self.streams[source]
            if conn is None or conn.transport is None:
                return
            if conn.transport.closed:  # type: ignore[attr-defined]
                return
            conn.data_received(data)
            # a connection's buffer never holds more than a message (no slow-loris growth)
            assert len(conn.parser._buf) <= conn.parser.max_size + len(data), "stream buffer"
            if conn.transport.closed:  # type: ignore[attr-defined]
                self.stats.stream_closed += 1
            self.loop.run_until(self.loop.now)

    def advance(self, dt: float) -> None:
        with self.running():
            self.loop.run_until(self.loop.now + dt)

    # ---------------------------------------------------------------------------- checks
    def leaks(self) -> list[str]:
        """What the node still holds; empty once every call ended and every timer fired."""
        node = self.node
        core = node.core
        calls = node.calls
        found = []

        def check(name: str, held: object) -> None:
            if held:
                found.append(f"{name}: {held!r}"[:300])

        check("transactions", len(core.layer))
        check("client owners", dict(core._clients))
        check("core deadline", core.next_deadline())
        check("calls", calls.calls)
        check("dialogs", list(calls.dialogs))
        check("call invites", list(calls.invites))
        check("call clients", list(calls.clients))
        check("media calls", list(calls.media_calls))
        check("limits", {k: v for k, v in calls.limits.snapshot().items() if v.calls})
        relay = node.relay
        if relay is not None:
            check("relay calls", list(relay.calls))
            check("relay routes", dict(relay._routes))
        check("tcp connections", list(self.tcp._connections))
        check("tcp inbound", self.tcp._inbound)
        check("gate inbound", node.connections.inbound)
        open_buffers = {a: len(c.parser._buf) for a, c in self.streams.items()
                        if c is not None and c.parser._buf and _is_open(c)}  # fmt: skip
        check("open streams' buffers", open_buffers)
        check("timers", [h.callback for h in self.loop.pending()])
        return found


def _is_open(conn: _Connection) -> bool:
    transport = conn.transport
    return transport is not None and not transport.closed  # type: ignore[attr-defined]


class _Running:
    """The fake loop as the running loop (``asyncio.get_running_loop()`` in the transports)."""

    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop

    def __enter__(self) -> None:
        self.before = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self.loop)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        asyncio.events._set_running_loop(self.before)


# -------------------------------------------------------------------------------- corpus
def corpus_dir() -> Path:
    env = os.environ.get("PKISS_CORPUS")
    return Path(env) if env else (Path(__file__).resolve().parents[2].parent / "shared" /
                                  "corpus").resolve()  # fmt: skip


_CORPUS: list[bytes] | None = None


def corpus() -> list[bytes]:
    """The corpus's hostile messages as bytes (RFC 4475, RFC 5118, captured scanner traffic,
    PROTOS c07-sip INVITEs and teardowns); empty when the corpus is absent."""
    global _CORPUS
    if _CORPUS is not None:
        return _CORPUS
    root = corpus_dir()
    found: list[bytes] = []
    for sub, pattern in (("rfc4475", "*.dat"), ("rfc5118", "*"), ("sipvicious/captured", "*")):
        for path in sorted((root / sub).glob(pattern)):
            if (
                path.is_file()
                and path.suffix not in (".tsv", ".txt")
                and path.name
                not in (
                    "SHA256SUMS",
                    "EXPECTATIONS.tsv",
                )
            ):
                found.append(path.read_bytes())
    archive = root / "protos-c07-sip" / "c07-sip-r2-testcases.tar.gz"
    if archive.is_file():
        from protos_cases import load_protos

        for case in load_protos(root):
            found += [case.invite, case.teardown]
    _CORPUS = found
    return found


# --------------------------------------------------------------------------- the messages
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
ANSWER_SDP = (
    b"v=0\r\no=- 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 8\r\n"
)


def _message(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start, *(f"{n}: {v}" for n, v in headers), f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _via(source: Addr, branch: str) -> str:
    return f"SIP/2.0/{source.transport.upper()} {source.host}:{source.port};branch=z9hG4bK{branch}"


_SALVAGED = re.compile(rb"SIP/2.0 (400|505|513) [^\r\n]*\(")


@dataclass
class Dialog:
    """A dialog the caller side learned from a 2xx the node sent it."""

    call_id: str
    from_: str
    to: str
    target: str
    dest: Addr
    cseq: int = 2
    acked: bool = False


@dataclass
class Scenario:
    """What one case knows of the node's side, to answer it and to hang up."""

    rig: Rig
    draw: Draw
    transport: str
    n: int = 0
    seen: int = 0  # sends looked at
    node_requests: list[tuple[Request, Addr]] = field(default_factory=list)
    dialogs: dict[str, Dialog] = field(default_factory=dict)
    challenge: str | None = None  # the last WWW-Authenticate the registrar sent
    pending: dict[Addr, bytearray] = field(default_factory=dict)  # stream bytes not sent yet

    def addr(self, host: str, port: int = 5060, transport: str | None = None) -> Addr:
        return Addr(transport or self.transport, host, port)

    def look(self) -> None:
        """What the node sent since last time: its requests (to answer them), the 2xx to the
        caller's INVITEs (dialogs to hang up), the registrar's challenge."""
        rig = self.rig
        for data, dest in rig.sent[self.seen :]:
            try:
                msg = parse_datagram(data, 1 << 20)
            except ParseError as exc:  # what the node sends must parse...
                if _SALVAGED.match(data):
                    continue  # ...but the 400 to what did not parse copies its Via as it came
                raise AssertionError(
                    f"the node sent what does not parse ({exc}): {data!r}"
                ) from exc
            if isinstance(msg, Request):
                if msg.method != "ACK":
                    self.node_requests.append((msg, dest))
                continue
            assert isinstance(msg, Response)
            cseq = msg.cseq
            if cseq is None:
                continue
            if cseq.method == "OPTIONS" and msg.status == 200:
                rig.stats.options = 1
            if cseq.method == "REGISTER":
                if msg.status == 401:
                    self.challenge = msg.header("www-authenticate")
                elif msg.status == 200:
                    rig.stats.registered = 1
            if cseq.method == "INVITE" and 200 <= msg.status < 300 and dest.host not in PBX_HOSTS:
                to, contact = msg.to, msg.contact
                call_id = msg.call_id or ""
                if to is None or not to.tag or call_id in self.dialogs:
                    continue
                target = str(contact[0].uri) if contact else f"sip:{dest.host}:{dest.port}"
                self.dialogs[call_id] = Dialog(call_id, msg.header("from") or "",
                                               msg.header("to") or "", target, dest)  # fmt: skip
        self.seen = len(rig.sent)

    # ------------------------------------------------------------------------- messages
    def invite(self, called: str = "+33123456789") -> tuple[bytes, Addr]:
        self.n += 1
        src = self.addr(OPERATOR_HOST)
        n = self.n
        headers = [
            ("Via", _via(src, f"-op{n}")),
            ("From", f"<sip:+33999@{OPERATOR_HOST}>;tag=op{n}"),
            ("To", f"<sip:{called}@127.0.0.1>"),
            ("Call-ID", f"call{n}@{OPERATOR_HOST}"),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:+33999@{OPERATOR_HOST}:5060>"),
            ("Max-Forwards", "70"),
            ("Supported", self.draw.pick(["timer, 100rel", "replaces", "100rel"])),
            ("Content-Type", "application/sdp"),
        ]
        return _message(f"INVITE sip:{called}@127.0.0.1 SIP/2.0", headers, SDP), src

    def out_of_dialog(self, method: str, host: str) -> tuple[bytes, Addr]:
        self.n += 1
        src = self.addr(host)
        n = self.n
        headers = [
            ("Via", _via(src, f"-{method}{n}")),
            ("From", f"<sip:probe@{host}>;tag=o{n}"),
            ("To", "<sip:127.0.0.1>"),
            ("Call-ID", f"ood{n}@{host}"),
            ("CSeq", f"1 {method}"),
            ("Max-Forwards", "70"),
            ("User-Agent", self.draw.pick(["phone/1.0", "friendly-scanner", "Asterisk PBX"])),
        ]
        return _message(f"{method} sip:127.0.0.1 SIP/2.0", headers), src

    def register(self) -> tuple[bytes, Addr]:
        self.n += 1
        src = self.addr(REMOTE_HOST, 40000)
        headers = [
            ("Via", _via(src, f"-reg{self.n}")),
            ("From", "<sip:remote1@127.0.0.1>;tag=r1"),
            ("To", "<sip:remote1@127.0.0.1>"),
            ("Call-ID", "reg@10.1.1.1"),
            ("CSeq", f"{self.n} REGISTER"),
            ("Contact", "<sip:remote1@10.1.1.1:5060>"),
            ("Max-Forwards", "70"),
            ("Expires", self.draw.pick(["120", "0", "99999", "3600"])),
        ]
        if self.challenge and self.draw.int(0, 3):
            try:
                ch = parse_challenge(self.challenge)
                password = self.draw.pick(["secret", "secret", "wrong"])
                creds = authorization(ch, "remote1", password, "REGISTER", "sip:127.0.0.1", "c1")
                headers.append(("Authorization", creds))
            except (ParseError, ValueError, KeyError):
                pass
        return _message("REGISTER sip:127.0.0.1 SIP/2.0", headers), src

    def in_dialog(self, method: str) -> tuple[bytes, Addr] | None:
        """ACK, BYE, re-INVITE, INFO, UPDATE, CANCEL from the caller, in a dialog the node
        answered (or, for CANCEL, of the last INVITE)."""
        if method == "CANCEL":
            if not self.n:
                return None
            n = self.n
            src = self.addr(OPERATOR_HOST)
            headers = [
                ("Via", _via(src, f"-op{n}")),
                ("From", f"<sip:+33999@{OPERATOR_HOST}>;tag=op{n}"),
                ("To", "<sip:+33123456789@127.0.0.1>"),
                ("Call-ID", f"call{n}@{OPERATOR_HOST}"),
                ("CSeq", "1 CANCEL"),
                ("Max-Forwards", "70"),
            ]
            return _message("CANCEL sip:+33123456789@127.0.0.1 SIP/2.0", headers), src
        if not self.dialogs:
            return None
        d = self.dialogs[self.draw.pick(sorted(self.dialogs))]
        return self.dialog_request(d, method), d.dest

    def dialog_request(self, d: Dialog, method: str) -> bytes:
        if method == "ACK":
            cseq = 1
        else:
            d.cseq += 1
            cseq = d.cseq
        headers = [
            ("Via", _via(d.dest, f"-{method}{cseq}{d.call_id}")),
            ("From", d.from_),
            ("To", d.to),
            ("Call-ID", d.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:+33999@{d.dest.host}:{d.dest.port}>"),
            ("Max-Forwards", "70"),
        ]
        body = b""
        if method in ("INVITE", "UPDATE"):
            headers.append(("Content-Type", "application/sdp"))
            body = SDP.replace(b"4000", b"4002")
        return _message(f"{method} {d.target} SIP/2.0", headers, body)

    def reply(self) -> tuple[bytes, Addr] | None:
        """An answer from whoever the node sent a request to."""
        if not self.node_requests:
            return None
        draw = self.draw
        request, dest = self.node_requests[-1] if draw.int(0, 1) else draw.pick(self.node_requests)
        if request.method == "INVITE":
            status = draw.pick([100, 180, 183, 200, 200, 200, 200, 200, 401, 407, 422, 486, 503])
        else:
            status = self.draw.pick([200, 200, 481, 500])
        to = request.header("to") or ""
        if status > 100 and ";tag=" not in to:
            to += f";tag=peer{self.draw.int(0, 1)}"
        headers = [("Via", v) for v in request.header_lines("via")]
        headers += [
            ("From", request.header("from") or ""),
            ("To", to),
            ("Call-ID", request.header("call-id") or ""),
            ("CSeq", request.header("cseq") or ""),
            ("Contact", f"<sip:{dest.host}:{dest.port}>"),
        ]
        if status in (401, 407):
            name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            headers.append((name, 'Digest realm="x", nonce="abc", algorithm=MD5'))
        if status == 422:
            headers.append(("Min-SE", self.draw.pick(["1800", "90", "99999999999"])))
        if status == 200 and request.method == "INVITE" and self.draw.int(0, 2):
            headers.append(("Session-Expires", self.draw.pick(["90;refresher=uas", "1800"])))
        body = b""
        if status in (183, 200) and request.method in ("INVITE", "UPDATE"):
            headers.append(("Content-Type", "application/sdp"))
            body = ANSWER_SDP
        return _message(f"SIP/2.0 {status} Whatever", headers, body), dest

    def from_pbx(self, method: str) -> tuple[bytes, Addr] | None:
        """A BYE or re-INVITE from the PBX in the dialog of a B-leg INVITE it answered."""
        invites = [(r, d) for r, d in self.node_requests if r.method == "INVITE" and
                   d.host in PBX_HOSTS]  # fmt: skip
        if not invites:
            return None
        request, dest = self.draw.pick(invites)
        self.n += 1
        headers = [
            ("Via", _via(dest, f"-pbx{self.n}")),
            ("From", (request.header("to") or "") + ";tag=peer0"),
            ("To", request.header("from") or ""),
            ("Call-ID", request.header("call-id") or ""),
            ("CSeq", f"{100 + self.n} {method}"),
            ("Contact", f"<sip:{dest.host}:{dest.port}>"),
            ("Max-Forwards", "70"),
        ]
        return _message(f"{method} sip:127.0.0.1:5060 SIP/2.0", headers), dest


# ---------------------------------------------------------------------------- mutations
_MEANINGFUL = [
    b":", b";", b",", b"<", b">", b'"', b"\\", b"\r\n", b"\r\n ", b"\r\n\r\n", b" ", b"\t",
    b"%", b"%0", b"[", b"]", b"@", b"=", b"?", b"\x00", b"\xff", b"\n", b"\r", b"/", b"SIP/2.0",
    b";tag=", b";branch=z9hG4bK", b";lr", b";transport=tcp", b"sip:", b"tel:", b"*", b"\xc3\xa9",
]  # fmt: skip
_HUGE = [b"0" * 5000, b"9" * 5000, b"4294967296", b"65536", b"-1", b"256",
         b"18446744073709551616", b"0", b"1e9", b"99999999999"]  # fmt: skip
_HEADERS = ["Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Type",
            "Content-Length", "Route", "Record-Route", "Require", "Supported", "Expires",
            "Session-Expires", "Min-SE", "Authorization", "Proxy-Authorization", "Allow",
            "RSeq", "RAck", "Refer-To", "Referred-By", "Replaces", "Event", "P-Asserted-Identity",
            "Diversion", "Reason", "User-Agent", "Retry-After", "v", "f", "t", "i", "m", "l",
            "k", "r", "o", "s", "X-Custom"]  # fmt: skip
_VALUE_ALPHABET = "abcXYZ019.-_+~!*'()%:;,=?@&$/[]<>\"\\ \t#{}|^`\x00\x7f\x85\xa0\xff"
_VALUES = [
    "<sip:x@[::1]:5060;lr>", "sip:;@", "<>", "\"unterminated <sip:a@b>", "1 INVITE", "-1 BYE",
    "SIP/2.0/UDP [::1", "SIP/2.0/TCP a;branch=", "0", "100rel, timer, foo", "*", "<sip:a@b>;q=2",
    "tel:+1;phone-context=", "sip:a@b?Replaces=x%3Bto-tag%3D1", "application/sdp;x",
    "multipart/mixed;boundary=",
    'Digest username="remote1", realm="127.0.0.1", nonce="", uri="sip:127.0.0.1", response=""',
    "90;refresher=uac", "0;refresher=uas", "<sip:+3399@127.0.0.2>;tag=", "1 2 INVITE",
]  # fmt: skip
_SDP_BITS = [
    b"m=audio 0 RTP/AVP 8\r\n", b"m=video 65536 RTP/AVP 96\r\n", b"c=IN IP6 ::1\r\n",
    b"c=IN IP4 999.1.1.1\r\n", b"a=rtcp:1 IN IP4 0.0.0.0\r\n", b"a=rtcp-mux\r\n",
    b"m=image 4004 udptl t38\r\n", b"c=IN IP4\r\n", b"m=audio\r\n", b"a=rtpmap:\r\n",
    b"m=audio -1 RTP/AVP\r\n", b"b=AS:99999999999999999999\r\n",
]  # fmt: skip


def mutate(draw: Draw, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw.int(1, 4)):
        kind = draw.pick(["flip", "insert", "truncate", "cut", "duplicate", "number", "header",
                          "value", "length", "sdp", "garbage"])  # fmt: skip
        pos = draw.int(0, max(0, len(buf) - 1))
        if kind == "flip" and buf:
            buf[pos] = draw.int(0, 255)
        elif kind == "insert":
            buf[pos:pos] = draw.pick(_MEANINGFUL)
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "cut":
            del buf[pos : pos + draw.int(1, 20)]
        elif kind == "garbage":
            buf[pos:pos] = draw.binary(12)
        elif kind == "duplicate":
            lines = bytes(buf).split(b"\r\n")
            if len(lines) > 2:
                i = draw.int(1, len(lines) - 2)
                lines.insert(i, lines[i])
                buf = bytearray(b"\r\n".join(lines))
        elif kind == "number":
            runs = list(re.finditer(rb"[0-9]+", bytes(buf)))
            if runs:
                run = draw.pick(runs)
                buf[run.start() : run.end()] = draw.pick(_HUGE)
        elif kind in ("header", "value"):
            # a header line with a random or hostile value, replacing one or added
            name = draw.pick(_HEADERS)
            value = draw.pick(_VALUES) if draw.int(0, 1) else draw.text(_VALUE_ALPHABET, 40)
            line = f"{name}: {value}".encode("latin-1")
            head_end = bytes(buf).find(b"\r\n\r\n")
            if head_end < 0:
                continue
            lines = bytes(buf[:head_end]).split(b"\r\n")
            i = draw.int(1, max(1, len(lines) - 1)) if len(lines) > 1 else 1
            if kind == "header" or len(lines) < 2:
                lines.insert(i, line)
            else:
                lines[min(i, len(lines) - 1)] = line
            buf = bytearray(b"\r\n".join(lines)) + buf[head_end:]
        elif kind == "length":
            # a Content-Length lie
            m = re.search(rb"(?im)^(content-length|l)[ \t]*:[ \t]*([0-9]*)", bytes(buf))
            if m:
                told = int(m.group(2)) if 0 < len(m.group(2)) < 10 else 0
                lie = str(max(0, told + draw.int(-40, 40))).encode()
                buf[m.start(2) : m.end(2)] = draw.pick([lie, lie, b"99999", b"0", b""])
        elif kind == "sdp":
            at = bytes(buf).find(b"v=0")
            if at >= 0:
                lines = bytes(buf[at:]).split(b"\r\n")
                lines.insert(draw.int(1, len(lines)), draw.pick(_SDP_BITS).rstrip(b"\r\n"))
                sdp = b"\r\n".join(lines)
                buf = buf[:at] + sdp
                # keep the Content-Length true most of the time: the SDP is what is tested
                m = re.search(rb"(?im)^content-length:[ \t]*([0-9]+)", bytes(buf))
                if m and draw.int(0, 3):
                    buf[m.start(1) : m.end(1)] = str(len(sdp)).encode()
    return bytes(buf)


# --------------------------------------------------------------------------------- a case
KINDS = ["invite", "invite", "invite", "reply", "reply", "reply", "reply", "ack", "bye",
         "cancel", "reinvite", "info", "update", "pbx_bye", "pbx_reinvite", "register",
         "options", "options_stranger", "corpus", "random", "keepalive"]  # fmt: skip


def _step(sc: Scenario, kind: str) -> tuple[bytes, Addr] | None:
    draw = sc.draw
    if kind == "invite":
        return sc.invite(
            draw.pick(["+33123456789", "+33140000500", "+449", "+33123456789", "+33123"])
        )
    if kind == "reply":
        return sc.reply()
    if kind in ("ack", "bye", "cancel", "info", "update"):
        return sc.in_dialog(kind.upper())
    if kind == "reinvite":
        return sc.in_dialog("INVITE")
    if kind == "pbx_bye":
        return sc.from_pbx("BYE")
    if kind == "pbx_reinvite":
        return sc.from_pbx("INVITE")
    if kind == "register":
        return sc.register()
    if kind == "options":
        return sc.out_of_dialog(draw.pick(["OPTIONS", "OPTIONS", "MESSAGE", "SUBSCRIBE", "BYE",
                                           "FOO"]), OPERATOR_HOST)  # fmt: skip
    if kind == "options_stranger":
        return sc.out_of_dialog("OPTIONS", STRANGER_HOST)
    if kind == "corpus":
        messages = corpus()
        if not messages:
            return None
        return draw.pick(messages), sc.addr(draw.pick([OPERATOR_HOST, STRANGER_HOST]))
    if kind == "keepalive":
        return draw.pick([b"\r\n\r\n", b"\r\n", b"", b"\x00"]), sc.addr(OPERATOR_HOST)
    return draw.binary(300), sc.addr(draw.pick([OPERATOR_HOST, STRANGER_HOST, PBX_HOSTS[0]]))


def _deliver(sc: Scenario, data: bytes, source: Addr) -> None:
    rig = sc.rig
    if source.transport == "udp":
        rig.datagram(data, source)
        return
    draw = sc.draw
    pending = sc.pending.setdefault(source, bytearray())
    if draw.int(0, 5) == 0:  # garbage between messages
        pending += draw.pick([b"\r\n", b"\r\n\r\n", b"xx\r\n\r\n", draw.binary(20)])
    pending += data
    if draw.int(0, 2) == 0:
        return  # several messages in one segment: sent with the next one
    _flush(sc, source)


def _flush(sc: Scenario, source: Addr) -> None:
    pending = sc.pending.pop(source, None)
    if not pending:
        return
    draw = sc.draw
    cuts = sorted({draw.int(0, len(pending)) for _ in range(draw.int(0, 3))})
    start = 0
    for cut in [*cuts, len(pending)]:
        if cut > start:
            sc.rig.stream(bytes(pending[start:cut]), source)
            start = cut


def run_case(rig: Rig, draw: Draw, max_steps: int = 10) -> None:
    """One scenario against ``rig``, then the caller's hang-ups and the clock run out. The
    caller checks ``rig.leaks()``; exceptions escape."""
    stats = Stats(cases=1)
    rig.stats = stats
    sc = Scenario(rig, draw, draw.pick(["udp", "udp", "tcp"]))
    start_calls = rig.node.calls.stats["calls"]
    start_answered = rig.node.calls.stats["answered"]
    for i in range(draw.int(1, max_steps)):
        if i == 0 and draw.int(0, 2):
            kind = "invite"  # most cases start a call: the rest has something to act on
        elif sc.node_requests and draw.int(0, 1):
            kind = "reply"
        else:
            kind = draw.pick(KINDS)
        step = _step(sc, kind)
        if step is None:
            continue
        stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
        data, source = step
        if draw.int(0, 2) == 0:
            data = mutate(draw, data)
        if draw.int(0, 11) == 0:  # from elsewhere
            source = sc.addr(draw.pick([STRANGER_HOST, OPERATOR_HOST, PBX_HOSTS[1]]),
                             draw.pick([5060, 5070]), source.transport)  # fmt: skip
        _deliver(sc, data, source)
        sc.look()
        dt = draw.pick([0.0, 0.0, 0.0, 0.0, 0.1, 0.6, 2.0, 5.0, 40.0])
        if dt:
            rig.advance(dt)
            sc.look()
    for source in list(sc.pending):
        _flush(sc, source)
    sc.look()
    stats.parsed = int(bool(rig.sent))
    # the caller hangs up what was answered (ACK first: a 2xx stays unacknowledged otherwise)
    for d in list(sc.dialogs.values()):
        for method in ("ACK", "BYE"):
            data = sc.dialog_request(d, method)
            if d.dest.transport == "udp":
                rig.datagram(data, d.dest)
            else:
                rig.stream(data, d.dest)
    rig.advance(SETTLE / 2)
    # what only the media timeout ends (the server's periodic check)
    node = rig.node
    before = len(node.calls.calls)
    if before:
        with rig.running():
            node.engine.drive(node.core.hangup_idle(rig.loop.now, node.config.media.timeout))
        stats.hung_up_idle = before - len(node.calls.calls)
    rig.advance(SETTLE / 2)
    # and the connections their idle timeout closes
    stats.calls = int(node.calls.stats["calls"] > start_calls)
    stats.answered = int(node.calls.stats["answered"] > start_answered)
