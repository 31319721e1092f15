"""peers.*.refer: local — a blind transfer by the callee side carried out by the node, with
explicit time: 202 and NOTIFYs to the transferor, the new call placed through routing, the
target taking the transferor's place, failures leaving the call as it was."""

from __future__ import annotations

import json

from peers import OPERATOR, PBX1, Bench, answer, in_dialog, invite, requests, responses

from pkiss.b2bua import Call
from pkiss.cdr import record_of
from pkiss.sip.message import Request
from pkiss.sip.transaction import Addr

TARGET = Addr("udp", "127.0.0.5", 5060)

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
media: {mode: bypass}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060], health: false}
  far: {role: carrier, hosts: [127.0.0.5:5060], health: false}
  pbx:
    role: pbx
    hosts: [127.0.0.3:5060]
    dids: ["+331*"]
    health: false
    refer: local
routes: [{prefix: "+44", via: [far]}, {prefix: "+45", reject: 403}]
"""


def _answered(bench: Bench) -> tuple[Request, str]:
    """A call from the operator answered by the PBX: (the PBX's INVITE, the A-leg's tag)."""
    (b_invite,) = requests(bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    (ok,) = [r for r in responses(bench.feed(answer(b_invite, 200, sdp=True), PBX1), OPERATOR)
             if r.status == 200]  # fmt: skip
    tag = ok.to.tag if ok.to and ok.to.tag else ""
    bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    return b_invite, tag


def _from_pbx(b_invite: Request, method: str, cseq: int, *lines: str) -> bytes:
    """A request of the PBX within its dialog with the node."""
    return (
        f"{method} sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK-{method}{cseq}\r\n"
        f"From: <sip:+33123456789@127.0.0.3>;tag=pbx\r\nTo: {b_invite.header('from')}\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:127.0.0.3:5060>\r\n" + "".join(f"{x}\r\n" for x in lines)
        + "Content-Length: 0\r\n\r\n"
    ).encode()  # fmt: skip


def _refer(b_invite: Request, to: str = "+442071234567") -> bytes:
    return _from_pbx(b_invite, "REFER", 2, f"Refer-To: <sip:{to}@127.0.0.1>")


def _sipfrag(sends: list, status: str) -> list[Request]:
    return [n for n in requests(sends, PBX1, "NOTIFY") if n.body.startswith(status.encode())]


def test_the_target_takes_the_transferors_place() -> None:
    ended: list[Call] = []
    bench = Bench(CONFIG, on_end=ended.append)
    b_invite, tag = _answered(bench)
    out = bench.feed(_refer(b_invite), PBX1)
    assert [r.status for r in responses(out, PBX1)] == [202]
    (trying,) = _sipfrag(out, "SIP/2.0 100")
    assert trying.header("event") == "refer" and "active" in (
        trying.header("subscription-state") or ""
    )
    (target_invite,) = requests(out, TARGET, "INVITE")
    assert target_invite.uri_text.startswith("sip:+442071234567@")
    assert target_invite.body == b_invite.body, "the caller's media description, as the PBX had it"
    assert target_invite.call_id not in (b_invite.call_id, "call1@127.0.0.2")
    out = bench.feed(answer(target_invite, 200, tag="far", sdp=True), TARGET)
    assert requests(out, TARGET, "ACK")
    (done,) = _sipfrag(out, "SIP/2.0 200")
    assert "terminated" in (done.header("subscription-state") or "")
    assert requests(out, PBX1, "BYE"), "the transferor's leg ends"
    (reinvite,) = requests(out, OPERATOR, "INVITE")  # media bypassed: the caller is told
    assert b"127.0.0.3" in reinvite.body and reinvite.to and reinvite.to.tag == "op1"
    assert not requests(out, OPERATOR, "BYE")
    bench.feed(answer(reinvite, 200, tag="op1", sdp=True), OPERATOR)
    # the caller hangs up: the BYE goes to the target now
    out = bench.feed(in_dialog("BYE", 1, tag, 3), OPERATOR)
    (bye,) = requests(out, TARGET, "BYE")
    assert bye.call_id == target_invite.call_id
    assert not requests(out, PBX1, "BYE")
    assert [(c.b_peer, c.end_reason) for c in ended] == [("far", "BYE from A-leg")]
    record = record_of(ended[0], bench.now, 1_800_000_000.0)
    assert (record.b_call_id, record.dest_host) == (target_invite.call_id, "udp:127.0.0.5:5060")
    assert [(a["peer"], a["status"]) for a in json.loads(record.attempts_detail)] == [
        ("pbx", 200), ("far", 200),
    ]  # fmt: skip
    assert record.attempts == 1 and record.tenant == "pbx"  # the PBX that transferred it
    assert (record.called_sent, record.hangup_by) == ("+442071234567", "caller")


def test_a_failed_transfer_leaves_the_call_with_the_transferor() -> None:
    bench = Bench(CONFIG)
    b_invite, tag = _answered(bench)
    (target_invite,) = requests(bench.feed(_refer(b_invite), PBX1), TARGET, "INVITE")
    out = bench.feed(answer(target_invite, 486, tag="far"), TARGET)
    (busy,) = _sipfrag(out, "SIP/2.0 486")
    assert "terminated" in (busy.header("subscription-state") or "")
    assert not requests(out, PBX1, "BYE") and not requests(out, OPERATOR, "BYE")
    out = bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR)
    assert requests(out, PBX1, "BYE")


def test_a_number_routing_refuses_is_reported_and_nothing_is_placed() -> None:
    bench = Bench(CONFIG)
    b_invite, _ = _answered(bench)
    out = bench.feed(_refer(b_invite, "+4512345678"), PBX1)
    assert [r.status for r in responses(out, PBX1)] == [202]
    assert _sipfrag(out, "SIP/2.0 403") and not requests(out, TARGET, "INVITE")
    assert len(bench.calls.calls) == 1


def test_a_transferor_hanging_up_at_once_is_a_blind_transfer() -> None:
    ended: list[Call] = []
    bench = Bench(CONFIG, on_end=ended.append)
    b_invite, _ = _answered(bench)
    (target_invite,) = requests(bench.feed(_refer(b_invite), PBX1), TARGET, "INVITE")
    out = bench.feed(_from_pbx(b_invite, "BYE", 3), PBX1)
    assert [r.status for r in responses(out, PBX1)] == [200]
    assert not requests(out, OPERATOR, "BYE"), "the caller waits for the target"
    out = bench.feed(answer(target_invite, 480, tag="far"), TARGET)
    assert requests(out, OPERATOR, "BYE"), "nobody left: the call ends"
    assert [c.end_reason for c in ended] == ["transfer failed"]


def test_refer_from_a_peer_without_refer_local_or_from_the_caller_is_refused() -> None:
    bench = Bench(CONFIG)
    _, tag = _answered(bench)
    out = bench.feed(in_dialog("REFER", 1, tag, 2), OPERATOR)  # the caller's side
    assert [r.status for r in responses(out, OPERATOR)] == [403]
    bench = Bench(CONFIG.replace("    refer: local\n", ""))
    b_invite, _ = _answered(bench)
    out = bench.feed(_refer(b_invite), PBX1)
    assert [r.status for r in responses(out, PBX1)] == [403]
    assert not requests(out, TARGET, "INVITE")
