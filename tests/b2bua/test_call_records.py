"""What a call's record says, from what the B2BUA kept as the call went: both legs' Call-IDs,
numbers as received and as sent, hosts, each attempt, who hung up, setup times, media counts,
the SIP reason. Explicit time, no sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from peers import (
    CONFIG,
    OPERATOR,
    PBX1,
    PBX2,
    Bench,
    answer,
    answer_with,
    cancel,
    in_dialog,
    invite,
    requests,
    responses,
)

from pkiss.b2bua import Call
from pkiss.cdr import CallRecord, record_of
from pkiss.media import BuiltinRelay
from pkiss.sip.message import Request

WALL = 1_800_000_000.0


class Recorded:
    """A bench whose ended calls are kept, and their records made as the server does."""

    def __init__(self, config: str = CONFIG, **options: object) -> None:
        self.ended: list[Call] = []
        self.bench = Bench(config, on_end=self.ended.append, **options)

    def record(self) -> CallRecord:
        (call,) = self.ended
        return record_of(call, self.bench.now, WALL)

    def at(self, now: float) -> Bench:
        self.bench.now = now
        return self.bench


def attempts(record: CallRecord) -> list[dict[str, object]]:
    detail = json.loads(record.attempts_detail)
    assert isinstance(detail, list)
    return detail


def a_tag(sends: list, status: int = 200) -> str:  # type: ignore[type-arg]
    (final,) = [r for r in responses(sends, OPERATOR) if r.status == status]
    assert final.to is not None and final.to.tag
    return final.to.tag


def callee_bye(b_invite: Request, tag: str = "pbx") -> bytes:
    """The callee's BYE on the B-leg its INVITE opened (it answered with To tag ``tag``)."""
    return (
        f"BYE sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.4:5060;branch=z9hG4bK-pbxbye\r\n"
        f"From: {b_invite.header('to')};tag={tag}\r\nTo: {b_invite.header('from')}\r\n"
        f"Call-ID: {b_invite.call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def with_reason(message: bytes, reason: str) -> bytes:
    return message.replace(b"Content-Length:", f"Reason: {reason}\r\nContent-Length:".encode())


def test_a_failover_call_the_caller_ends_has_both_attempts_both_call_ids_and_its_times() -> None:
    net = Recorded()
    (first,) = requests(net.at(0.0).feed(invite(), OPERATOR), PBX1, "INVITE")
    (second,) = requests(net.at(0.010).feed(answer(first, 503), PBX1), PBX2, "INVITE")
    ringing = net.at(0.050).feed(answer(second, 180), PBX2)
    assert [r.status for r in responses(ringing, OPERATOR)] == [180]
    tag = a_tag(net.at(0.250).feed(answer(second, 200, sdp=True), PBX2))
    net.at(5.0).feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    bye = with_reason(in_dialog("BYE", 1, tag, 2), 'Q.850;cause=16;text="Normal"')
    net.at(65.25).feed(bye, OPERATOR)
    record = net.record()
    assert (record.call_id, record.b_call_id) == ("call1@127.0.0.2", second.call_id)
    assert record.b_call_id != first.call_id
    assert (record.attempts, record.dest_peer, record.tenant) == (2, "pbx", "pbx")
    assert attempts(record) == [
        {"peer": "pbx", "host": "udp:127.0.0.3:5060", "status": 503, "at_ms": 0, "end_ms": 10},
        {"peer": "pbx", "host": "udp:127.0.0.4:5060", "status": 200, "at_ms": 10, "end_ms": 250},
    ]  # fmt: skip
    assert (record.source_host, record.dest_host) == ("udp:127.0.0.2:5060", "udp:127.0.0.4:5060")
    assert (record.setup_18x_ms, record.setup_200_ms) == (50, 250)
    assert record.duration == 65.0 and record.status == 200
    assert (record.hangup_by, record.reason) == ("caller", "BYE from A-leg")
    assert record.sip_reason == 'Q.850;cause=16;text="Normal"'  # not the first attempt's 503
    assert record.caller_packets is None and record.callee_bytes is None  # not relayed


def test_a_call_the_callee_ends_says_so() -> None:
    net = Recorded()
    (b_invite,) = requests(net.at(0.0).feed(invite(), OPERATOR), PBX1, "INVITE")
    tag = a_tag(net.at(0.1).feed(answer(b_invite, 200, sdp=True), PBX1))
    net.bench.feed(in_dialog("ACK", 1, tag, 1), OPERATOR)
    out = net.at(3.0).feed(callee_bye(b_invite), PBX1)
    assert requests(out, OPERATOR, "BYE")
    record = net.record()
    assert (record.hangup_by, record.reason, record.sip_reason) == (
        "callee", "BYE from B-leg", None,
    )  # fmt: skip
    assert record.setup_18x_ms is None and record.setup_200_ms == 100  # answered, never rang


def test_a_busy_callee_is_who_ended_the_call_and_its_status_is_the_sip_reason() -> None:
    net = Recorded()
    (b_invite,) = requests(net.bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    net.at(0.5).feed(answer(b_invite, 486), PBX1)
    record = net.record()
    assert (record.status, record.hangup_by) == (486, "callee")
    assert record.sip_reason == 'SIP;cause=486;text="Busy Here"'
    assert attempts(record) == [
        {"peer": "pbx", "host": "udp:127.0.0.3:5060", "status": 486, "at_ms": 0, "end_ms": 500}
    ]
    assert record.setup_200_ms is None and record.answered_at is None


def test_a_failure_with_a_reason_header_keeps_it() -> None:
    net = Recorded()
    (b_invite,) = requests(net.bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    net.bench.feed(answer_with(b_invite, 404, "Reason: Q.850;cause=1"), PBX1)
    assert net.record().sip_reason == "Q.850;cause=1"


def test_hosts_that_never_answer_make_a_call_the_node_ended_with_attempts_of_status_0() -> None:
    net = Recorded()
    net.bench.feed(invite(), OPERATOR)
    net.bench.advance(3.0)  # setup_timeout: the second host
    net.bench.advance(6.0)  # and then nothing is left
    record = net.record()
    assert record.hangup_by == "node" and record.status == 408
    assert [(a["host"], a["status"], a["at_ms"], a["end_ms"]) for a in attempts(record)] == [
        ("udp:127.0.0.3:5060", 0, 0, None), ("udp:127.0.0.4:5060", 0, 3000, None),
    ]  # fmt: skip


def test_a_caller_that_cancels_is_who_ended_the_call_with_its_cancels_reason() -> None:
    net = Recorded()
    (b_invite,) = requests(net.bench.feed(invite(), OPERATOR), PBX1, "INVITE")
    net.at(0.2).feed(answer(b_invite, 180), PBX1)
    net.at(1.0).feed(with_reason(cancel(), 'SIP;cause=200;text="Call completed elsewhere"'),
                     OPERATOR)  # fmt: skip
    record = net.record()
    assert (record.hangup_by, record.reason, record.status) == ("caller", "cancelled", 487)
    assert record.sip_reason == 'SIP;cause=200;text="Call completed elsewhere"'
    assert record.setup_18x_ms == 200
    assert attempts(record)[0]["status"] == 0  # cancelled while it rang


def test_the_numbers_as_received_and_as_sent_after_each_peers_rewrites() -> None:
    config = CONFIG.replace(
        "operator: {role: carrier, hosts: [127.0.0.2:5060]}",
        "operator:\n    role: carrier\n    hosts: [127.0.0.2:5060]\n"
        "    rewrite: {inbound: [{match: '^0(\\d{9})$', replace: '+33\\1'}]}",
    ).replace(
        "    health: false\n",
        "    health: false\n    rewrite:\n      outbound:\n"
        "        - {match: '^\\+33999$', replace: '0999'}\n"
        "        - {match: '^\\+33(\\d{9})$', replace: '\\1'}\n",
    )
    net = Recorded(config)
    (b_invite,) = requests(net.bench.feed(invite(called="0123456789"), OPERATOR), PBX1, "INVITE")
    assert b_invite.uri_text.startswith("sip:123456789@")
    net.bench.feed(answer(b_invite, 486), PBX1)
    record = net.record()
    assert (record.called_received, record.called, record.called_sent) == (
        "0123456789", "+33123456789", "123456789",
    )  # fmt: skip
    assert (record.caller, record.caller_sent) == ("+33999", "0999")


def test_a_number_too_long_for_its_column_is_cut_there() -> None:
    net = Recorded(CONFIG.replace('dids: ["+331*"]', 'dids: ["*"]'))
    (b_invite,) = requests(net.bench.feed(invite(called="+1" + "2" * 300), OPERATOR), PBX1,
                           "INVITE")  # fmt: skip
    net.bench.feed(answer(b_invite, 486), PBX1)
    record = net.record()
    assert len(record.called) == len(record.called_received or "") == 64
    assert record.called.startswith("+1222")


@pytest.fixture
def relayed() -> Iterator[Recorded]:
    relay = BuiltinRelay("127.0.0.1", (44000, 44999))
    yield Recorded(media=relay)
    relay.close()


def with_media(message: bytes) -> bytes:
    """``message`` (with an SDP body) offering one audio stream."""
    head, body = message.split(b"\r\n\r\n", 1)
    body += b"m=audio 6000 RTP/AVP 8\r\n"
    head = re.sub(rb"Content-Length: *\d+", b"Content-Length: %d" % len(body), head)
    return head + b"\r\n\r\n" + body


def test_a_relayed_call_has_media_counts_read_before_its_ports_are_released(
    relayed: Recorded,
) -> None:
    out = relayed.bench.feed(with_media(invite()), OPERATOR)
    (b_invite,) = requests(out, PBX1, "INVITE")
    assert b"m=audio 44" in b_invite.body  # a port of the relay
    tag = a_tag(relayed.bench.feed(with_media(answer(b_invite, 200, sdp=True)), PBX1))
    relayed.bench.feed(in_dialog("BYE", 1, tag, 2), OPERATOR)
    record = relayed.record()
    # no event loop reads the relay's sockets here: nothing relayed, and counted as such
    assert (record.caller_packets, record.caller_bytes) == (0, 0)
    assert (record.callee_packets, record.callee_bytes) == (0, 0)
