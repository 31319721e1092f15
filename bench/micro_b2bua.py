"""CPU cost of one call through the SBC's sans-I/O core, without sockets or SIPp.

A fake operator and a fake PBX exchange wire bytes with the core: each message is parsed
(``parse_datagram``) and fed to ``TransactionUser.receive`` (``pkiss.core``); everything the
core sends is serialised (``bytes(message)``) as the engine does. What is measured is what one
pkiss process spends per call outside the kernel and the event loop.

    .venv/bin/python bench/micro_b2bua.py [--calls 20000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pkiss.config import parse_config
from pkiss.core import assemble
from pkiss.routing.attribution import PeerIndex
from pkiss.server import tune_gc
from pkiss.sip.message import Request, Response
from pkiss.sip.parser import parse_datagram
from pkiss.sip.transaction import Addr, Send
from pkiss.transport.listeners import LocalAddress

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
media: {mode: bypass}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060]}
  pbx: {role: pbx, hosts: [127.0.0.3:5060], dids: ["+331*"]}
routes: [{prefix: "", via: [operator]}]
"""
OPERATOR = Addr("udp", "127.0.0.2", 5060)
PBX = Addr("udp", "127.0.0.3", 5060)
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def invite(n: int) -> bytes:
    return (
        f"INVITE sip:+33123456789@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-{n}-inv\r\n"
        f"From: <sip:+33987654321@127.0.0.2:5060>;tag={n}SIPpTag00\r\n"
        f"To: <sip:+33123456789@127.0.0.1:5060>\r\n"
        f"Call-ID: {n}-4242@127.0.0.2\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:+33987654321@127.0.0.2:5060;transport=UDP>\r\n"
        f"Max-Forwards: 70\r\nUser-Agent: bench\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP


def in_dialog(method: str, n: int, to_tag: str, cseq: int) -> bytes:
    return (
        f"{method} sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-{n}-{method}\r\n"
        f"From: <sip:+33987654321@127.0.0.2:5060>;tag={n}SIPpTag00\r\n"
        f"To: <sip:+33123456789@127.0.0.1:5060>;tag={to_tag}\r\n"
        f"Call-ID: {n}-4242@127.0.0.2\r\nCSeq: {cseq} {method}\r\n"
        f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answer(request: Request, status: int, tag: str, body: bytes = b"") -> bytes:
    lines = [f"SIP/2.0 {status} X"]
    lines += [f"Via: {v}" for v in request.header_lines("via")]
    lines.append(f"From: {request.header('from')}")
    to = request.header("to") or ""
    lines.append(to if ";tag=" in to else f"To: {to};tag={tag}")
    lines[-1] = lines[-1] if lines[-1].startswith("To:") else f"To: {lines[-1]}"
    lines.append(f"Call-ID: {request.header('call-id')}")
    lines.append(f"CSeq: {request.header('cseq')}")
    lines.append("Contact: <sip:127.0.0.3:5060;transport=UDP>")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run(calls: int) -> tuple[float, int]:
    config = parse_config(CONFIG)
    peers = PeerIndex(config.peers)
    core = assemble(config, lambda dest: LocalAddress(dest.transport, "127.0.0.1", 5060), 0.0)
    now = 0.0
    sent = 0

    def feed(data: bytes, source: Addr) -> list[Send]:
        nonlocal sent
        out = core.receive(parse_datagram(data), source, peers.match(source), now)
        for s in out:
            bytes(s.message)
        sent += len(out)
        return out

    start = time.process_time()
    for n in range(calls):
        now += 0.001
        out = feed(invite(n), OPERATOR)
        b_invite = next(s.message for s in out if s.dest == PBX)
        assert isinstance(b_invite, Request)
        feed(answer(b_invite, 180, f"pbx{n}"), PBX)
        out = feed(answer(b_invite, 200, f"pbx{n}", SDP), PBX)
        ok = next(s.message for s in out if s.dest == OPERATOR)
        assert isinstance(ok, Response) and ok.status == 200
        a_tag = ok.to.tag if ok.to else ""
        assert a_tag
        feed(in_dialog("ACK", n, a_tag, 1), OPERATOR)
        out = feed(in_dialog("BYE", n, a_tag, 2), OPERATOR)
        b_bye = next(s.message for s in out if s.dest == PBX)
        assert isinstance(b_bye, Request)
        feed(answer(b_bye, 200, f"pbx{n}"), PBX)
        core.handle_timer(now)
    elapsed = time.process_time() - start
    assert not core.calls.calls, f"{len(core.calls.calls)} calls left"
    return elapsed, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    tune_gc()  # as `pkiss run` does
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(args.calls)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    run(min(args.calls, 2000))  # warm the caches
    elapsed, sent = run(args.calls)
    per_call = elapsed / args.calls * 1e6
    print(f"{args.calls} calls, {sent / args.calls:.1f} messages sent per call")
    print(
        f"core CPU per call: {per_call:.0f} us -> at most {1e6 / per_call:.0f} calls/s on one core"
    )


if __name__ == "__main__":
    main()
