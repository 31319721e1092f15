"""Nanoseconds per message of the parser and the serialiser, without sockets or SIPp.

Three figures, medians of five rounds: ``parse_datagram`` over the messages of a SIPp call as
``uac_basic.xml``/``uas_basic.xml`` exchange them (INVITE, 100, 180, 200, ACK, BYE, 200), over
the real user agents' captures of ``tests/fixtures/uas/``, and ``make_response`` + ``bytes()``
with a request built by the node. Every call gets its own branch, tags and Call-ID, so the
parser's value caches see what they see on a live node.

    .venv/bin/python bench/micro_parse.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pkiss.sip.message import Request, make_response
from pkiss.sip.parser import parse_datagram

ROOT = Path(__file__).resolve().parents[1]

SDP = (
    b"v=0\r\no=- 1001 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
ALLOW = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO\r\n"


def sipp_call(n: int) -> list[bytes]:
    """The seven messages of one SIPp call, as the node receives them."""
    via = f"SIP/2.0/UDP 10.0.0.2:5061;branch=z9hG4bK-4242-{n}-inv"
    frm = f"<sip:+33987654321@10.0.0.2:5061>;tag=4242SIPpTag00{n}"
    to = "<sip:+33123456789@10.0.0.1:5060>"
    to_tag = f"{to};tag=4242SIPpTag01{n}"
    call_id = f"{n}-4242@10.0.0.2"
    invite = (
        f"INVITE sip:+33123456789@10.0.0.1:5060 SIP/2.0\r\nVia: {via}\r\nFrom: {frm}\r\n"
        f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:+33987654321@10.0.0.2:5061;transport=UDP>\r\nMax-Forwards: 70\r\n"
        f"{ALLOW}User-Agent: bench\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP

    def response(status: str, to_value: str, *, contact: bool = True, body: bytes = b"",
                 cseq: str = "1 INVITE", top: str = via) -> bytes:  # fmt: skip
        head = f"SIP/2.0 {status}\r\nVia: {top}\r\nFrom: {frm}\r\nTo: {to_value}\r\n"
        head += f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\n"
        if contact:
            head += "Contact: <sip:10.0.0.3:5060;transport=UDP>\r\n"
        if body:
            head += f"{ALLOW}User-Agent: bench\r\nContent-Type: application/sdp\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def in_dialog(method: str, cseq: int, branch: str) -> bytes:
        return (
            f"{method} sip:10.0.0.1:5060;transport=UDP SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.0.0.2:5061;branch={branch}\r\nFrom: {frm}\r\nTo: {to_tag}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:+33987654321@10.0.0.2:5061;transport=UDP>\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()

    bye_via = f"SIP/2.0/UDP 10.0.0.2:5061;branch=z9hG4bK-4242-{n}-bye"
    return [
        invite,
        response("100 Trying", to, contact=False),
        response("180 Ringing", to_tag),
        response("200 OK", to_tag, body=SDP),
        in_dialog("ACK", 1, f"z9hG4bK-4242-{n}-ack"),
        in_dialog("BYE", 2, f"z9hG4bK-4242-{n}-bye"),
        response("200 OK", to_tag, contact=False, cseq="2 BYE", top=bye_via),
    ]


CAPTURES = [p.read_bytes() for p in sorted((ROOT / "tests/fixtures/uas").glob("*.sip"))]


def captures(n: int) -> list[bytes]:
    """The real user agents' messages, with branch, tags and Call-ID made unique per call."""
    mark = str(n).encode()
    out = []
    for data in CAPTURES:
        data = re.sub(rb"branch=[A-Za-z0-9.\-]+", lambda m: m.group(0) + mark, data)
        data = re.sub(rb"tag=[A-Za-z0-9.\-]+", lambda m: m.group(0) + mark, data)
        data = re.sub(rb"(?i)(Call-ID: *)([^\r]+)", lambda m: m.group(1) + mark + m.group(2), data)
        out.append(data)
    return out


def parse_ns(messages: Callable[[int], list[bytes]], first: int, calls: int) -> float:
    batches = [messages(n) for n in range(first, first + calls)]
    count = sum(len(b) for b in batches)
    start = time.perf_counter()
    for batch in batches:
        for data in batch:
            parse_datagram(data)
    return (time.perf_counter() - start) / count * 1e9


def build_ns(first: int, calls: int) -> float:
    invites = [parse_datagram(sipp_call(n)[0]) for n in range(first, first + calls)]
    assert all(isinstance(r, Request) for r in invites)
    start = time.perf_counter()
    for invite in invites:
        assert isinstance(invite, Request)
        bytes(make_response(invite, 180, to_tag="abc", headers=[("Contact", "<sip:10.0.0.1>")]))
        bye = Request(
            "BYE",
            "sip:10.0.0.2:5061",
            [
                ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx"),
                ("Max-Forwards", "70"),
                ("From", "<sip:a@b>;tag=1"),
                ("To", "<sip:c@d>;tag=2"),
                ("Call-ID", "abc@d"),
                ("CSeq", "2 BYE"),
            ],
        )
        bytes(bye)
    return (time.perf_counter() - start) / calls / 2 * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    parse_ns(sipp_call, 0, 500)  # warm up
    parse_ns(captures, 0, 200)
    rounds: dict[str, list[float]] = {"sipp": [], "uas": [], "build": []}
    for k in range(1, 6):
        first = k * 10**6  # new branches, tags and Call-IDs every round
        rounds["sipp"].append(parse_ns(sipp_call, first, args.calls))
        rounds["uas"].append(parse_ns(captures, first, max(1, args.calls // 4)))
        rounds["build"].append(build_ns(first, args.calls))
    labels = {
        "sipp": "parse, a SIPp call's messages",
        "uas": "parse, real user agents' captures",
        "build": "make_response/Request + bytes()",
    }
    for key, values in rounds.items():
        print(f"{labels[key]:36s} median {statistics.median(values):7.0f} ns/message "
              f"(min {min(values):.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
