"""The call trace's bookkeeping: both legs of a call under one trace, found by either Call-ID
or a number, bounded everywhere; and its pcap, checked field by field."""

from __future__ import annotations

import ipaddress
import struct

from pkiss.trace import Tracer, pcap

A, B = ("127.0.0.2", 5060), ("127.0.0.1", 5060)


def _invite(call_id: str, to: str = "+33123456789") -> bytes:
    return (
        f"INVITE sip:{to}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bK1\r\n"
        f"From: <sip:+33970000000@127.0.0.2>;tag=1\r\nTo: <sip:{to}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_both_legs_make_one_trace_in_time_order_found_by_either_call_id() -> None:
    t = Tracer()
    t.message("a-leg", 1.0, "in", "udp", A, B, _invite("a-leg"))
    t.message("b-leg", 1.1, "out", "udp", B, A, _invite("b-leg"))
    t.message("a-leg", 1.2, "out", "udp", B, A, b"SIP/2.0 100 Trying\r\nCall-ID: a-leg\r\n\r\n")
    t.link("a-leg", "b-leg")
    t.message("b-leg", 1.3, "in", "udp", A, B, b"SIP/2.0 200 OK\r\nCall-ID: b-leg\r\n\r\n")
    trace = t.find("b-leg")
    assert trace is not None and trace is t.find("a-leg")
    assert trace.call_ids == ["a-leg", "b-leg"]
    assert [m.at for m in trace.messages] == [1.0, 1.1, 1.2, 1.3]
    row = trace.as_dict()["messages"][0]
    assert row["direction"] == "in" and row["src"] == "127.0.0.2:5060"
    assert row["first_line"] == "INVITE sip:+33123456789@127.0.0.1 SIP/2.0"


def test_a_call_keeps_at_most_its_cap_and_counts_the_rest() -> None:
    t = Tracer(messages=3)
    for n in range(5):
        t.message("x", float(n), "in", "udp", A, B, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    trace = t.find("x")
    assert trace is not None and len(trace.messages) == 3 and trace.truncated == 2


def test_call_ids_of_no_call_and_ended_calls_are_bounded_oldest_out() -> None:
    t = Tracer(keep=2, pending=3)
    for n in range(5):
        t.message(f"probe-{n}", float(n), "out", "udp", B, A, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    assert [t.find(f"probe-{n}") is not None for n in range(5)] == [False, False, True, True, True]
    for n in range(3):
        t.message(f"call-{n}", 10.0 + n, "in", "udp", A, B, _invite(f"call-{n}"))
        t.link(f"call-{n}", f"leg-{n}")
        t.end(f"call-{n}")
    assert t.find("call-0") is None and t.find("leg-0") is None  # the oldest ended call went
    assert [tr.call_ids[0] for tr in t.ended()] == ["call-2", "call-1"]
    assert t.find("leg-1") is t.find("call-1")


def test_search_by_number_or_call_id() -> None:
    t = Tracer()
    t.message("c1", 1.0, "in", "udp", A, B, _invite("c1", "+33111"))
    t.link("c1", "c1-b")
    t.message("c2", 2.0, "in", "udp", A, B, _invite("c2", "+33222"))
    t.link("c2", "c2-b")
    assert [tr.call_ids[0] for tr in t.search("+33222")] == ["c2"]
    assert [tr.call_ids[0] for tr in t.search("c1-b")] == ["c1"]
    assert t.search("+33999") == []


def _fold(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_pcap_holds_each_message_as_an_ip_packet_with_valid_checksums() -> None:
    t = Tracer()
    sip = _invite("p")
    t.message("p", 1796320000.25, "in", "udp", A, B, sip)
    t.message("p", 1796320000.5, "out", "tcp", B, A, b"SIP/2.0 200 OK\r\nCall-ID: p\r\n\r\n")
    t.message("p", 1796320001.0, "out", "udp", ("::1", 5060), ("::1", 5070), sip)
    trace = t.find("p")
    assert trace is not None
    data = pcap(trace.messages)
    magic, major, minor, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B23C4D, 2, 4, 101)  # ns stamps, raw IP
    offset, packets = 24, []
    while offset < len(data):
        secs, nsecs, caplen, wire = struct.unpack("<IIII", data[offset : offset + 16])
        assert caplen == wire
        packets.append((secs + nsecs / 1e9, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    assert [round(at, 3) for at, _ in packets] == [1796320000.25, 1796320000.5, 1796320001.0]

    udp4 = packets[0][1]
    assert udp4[0] >> 4 == 4 and udp4[9] == 17 and _fold(udp4[:20]) == 0xFFFF
    assert ipaddress.ip_address(udp4[12:16]) == ipaddress.ip_address("127.0.0.2")
    assert struct.unpack("!HH", udp4[20:24]) == (5060, 5060) and udp4[28:] == sip
    pseudo = udp4[12:20] + struct.pack("!BBH", 0, 17, len(udp4) - 20)
    assert _fold(pseudo + udp4[20:]) == 0xFFFF

    tcp4 = packets[1][1]
    assert tcp4[9] == 6 and tcp4[40:].startswith(b"SIP/2.0 200 OK")
    pseudo = tcp4[12:20] + struct.pack("!BBH", 0, 6, len(tcp4) - 20)
    assert _fold(pseudo + tcp4[20:]) == 0xFFFF

    udp6 = packets[2][1]
    assert udp6[0] >> 4 == 6 and udp6[6] == 17 and udp6[48:] == sip
    pseudo = udp6[8:40] + struct.pack("!IxxxB", len(udp6) - 40, 17)
    assert _fold(pseudo + udp6[40:]) == 0xFFFF


def test_hep_packets_carry_the_message_its_addresses_and_the_call_correlation_id() -> None:
    from pkiss.hep import encode
    from pkiss.trace import TraceMessage

    sip = _invite("b-leg")
    packet = encode(TraceMessage(1796320000.5, "out", "udp", B, ("127.0.0.3", 5070), sip),
                    "a-leg", agent=7)  # fmt: skip
    assert packet[:4] == b"HEP3" and struct.unpack("!H", packet[4:6])[0] == len(packet)
    chunks, offset = {}, 6
    while offset < len(packet):
        vendor, kind, length = struct.unpack("!HHH", packet[offset : offset + 6])
        assert vendor == 0 and length >= 6
        chunks[kind] = packet[offset + 6 : offset + length]
        offset += length
    assert offset == len(packet)
    assert chunks[1] == b"\x02" and chunks[2] == b"\x11" and chunks[11] == b"\x01"  # v4 UDP SIP
    assert chunks[3] == bytes([127, 0, 0, 1]) and chunks[4] == bytes([127, 0, 0, 3])
    assert struct.unpack("!H", chunks[7])[0] == 5060 and struct.unpack("!H", chunks[8])[0] == 5070
    assert struct.unpack("!II", chunks[9] + chunks[10]) == (1796320000, 500000)
    assert struct.unpack("!I", chunks[12])[0] == 7
    assert chunks[17] == b"a-leg" and chunks[15] == sip


def test_the_tracer_exports_every_message_with_its_call_correlation_id() -> None:
    t = Tracer(messages=1)
    sent: list[tuple[bytes, str]] = []
    t.export = lambda m, correlation: sent.append((m.data[:6], correlation))
    t.message("a-leg", 1.0, "in", "udp", A, B, _invite("a-leg"))
    t.link("a-leg", "b-leg")
    t.message("b-leg", 1.1, "out", "udp", B, A, _invite("b-leg"))  # beyond the cap: still sent
    assert sent == [(b"INVITE", "a-leg"), (b"INVITE", "a-leg")]
