"""The call trace, as an operator reads it after a call: every SIP message of both legs, in
order, with addresses, found by the called number or either leg's Call-ID; as a pcap that
Debian's ``sngrep`` reads as SIP; and nothing of what a stranger sent."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser import Browser
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.6"
CALLED, CALLER = "+33123456789", "+33987654321"


def get(node: Pkiss, path: str) -> tuple[int, bytes]:
    url = f"http://{node.config['admin']['listen']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, bytes(exc.read())


def get_json(node: Pkiss, path: str) -> Any:
    code, body = get(node, path)
    assert code == 200, (code, body)
    return json.loads(body)


def first_lines(trace: dict[str, Any], direction: str, peer: str) -> list[str]:
    """What crossed between the node and ``peer`` (an address) that way, first lines only."""
    side = "src" if direction == "in" else "dst"
    return [m["first_line"].split(" sip:")[0] if not m["first_line"].startswith("SIP/")
            else m["first_line"] for m in trace["messages"]
            if m["direction"] == direction and m[side].startswith(peer + ":")]  # fmt: skip


def test_a_call_is_traced_on_both_legs_found_by_number_or_call_id_and_read_by_sngrep(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    node = sbc_factory(basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port))
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    uac = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                       remote=("127.0.0.1", sbc_port), service=CALLED, caller=CALLER,
                       calls=1).start()  # fmt: skip
    uac.check()
    pbx.check()

    # a stranger's OPTIONS: dropped before anything, never traced
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((STRANGER, 0))
        s.sendto(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.6;branch="
                 b"z9hG4bK-s\r\nFrom: <sip:s@127.0.0.6>;tag=s\r\nTo: <sip:x@127.0.0.1>\r\n"
                 b"Call-ID: stranger-call\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                 ("127.0.0.1", sbc_port))  # fmt: skip
    time.sleep(0.3)
    assert get_json(node, "/api/traces?q=stranger-call") == []
    assert get(node, "/api/calls/stranger-call/trace")[0] == 404

    # the call, by its number
    deadline = time.monotonic() + 5
    while not (found := get_json(node, f"/api/traces?q={CALLED.replace('+', '%2B')}")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (summary,) = found
    assert summary["to"] == CALLED and summary["from"] == CALLER
    assert summary["status"] == 200 and summary["ended"] is True
    a_id, b_id = summary["call_ids"]
    assert a_id != b_id  # the PBX never saw the operator's Call-ID

    trace = get_json(node, f"/api/calls/{b_id}/trace")  # either leg's Call-ID finds it
    assert trace["call_ids"] == [a_id, b_id] and trace["truncated"] == 0
    assert first_lines(trace, "in", OPERATOR) == ["INVITE", "ACK", "BYE"]
    assert first_lines(trace, "out", PBX) == ["INVITE", "ACK", "BYE"]
    assert first_lines(trace, "in", PBX) == [
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "SIP/2.0 200 OK",
    ]
    assert first_lines(trace, "out", OPERATOR)[-3:] == [
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "SIP/2.0 200 OK",
    ]
    times = [m["at"] for m in trace["messages"]]
    assert times == sorted(times)
    for m in trace["messages"]:  # each leg's messages carry that leg's Call-ID only
        towards_pbx = PBX + ":" in (m["src"] + m["dst"])
        assert f"Call-ID: {b_id if towards_pbx else a_id}" in m["message"], m["message"]
        assert m["transport"] == "udp"

    # the pcap, read by sngrep: every message is SIP to it
    code, body = get(node, f"/api/calls/{a_id}/trace.pcap")
    assert code == 200 and body[:4] == b"\x4d\x3c\xb2\xa1"
    if shutil.which("sngrep") is None:
        pytest.skip("sngrep is not installed (make deps): the pcap was not read by it")
    path, out = tmp_path / "call.pcap", tmp_path / "sngrep.pcap"
    path.write_bytes(body)
    subprocess.run(["sngrep", "-I", str(path), "-N", "-q", "-O", str(out)], timeout=30,
                   check=True, capture_output=True)  # fmt: skip
    # what sngrep wrote back: the packets it took for SIP, each of the trace's messages
    read = subprocess.run(["tcpdump", "-nn", "-A", "-r", str(out)], capture_output=True,
                          text=True, timeout=30, check=True).stdout  # fmt: skip
    packets = [line for line in read.splitlines() if " IP " in line and " > " in line]
    assert len(packets) == len(trace["messages"]), read
    assert read.count("INVITE sip:") == 2 and read.count(f"Call-ID: {b_id}") >= 6, read


def test_every_message_goes_to_a_hep_collector_that_sngrep_shows(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    if shutil.which("sngrep") is None:
        pytest.skip("sngrep is not installed (make deps): no HEP collector to send to")
    hep_port = free_port()
    out = tmp_path / "hep.pcap"
    collector = subprocess.Popen(["sngrep", "-N", "-q", "-L", f"udp:127.0.0.1:{hep_port}",
                                  "-O", str(out)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
        config = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port)
        config["trace"] = {"hep": f"udp:127.0.0.1:{hep_port}"}
        node = sbc_factory(config)
        time.sleep(0.5)  # sngrep listening
        pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
        uac = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                           remote=("127.0.0.1", sbc_port), service=CALLED, caller=CALLER,
                           calls=1).start()  # fmt: skip
        uac.check()
        pbx.check()
        (summary,) = get_json(node, "/api/traces?q=%2B33123456789")
        a_id, b_id = summary["call_ids"]
        trace = get_json(node, f"/api/calls/{a_id}/trace")
        time.sleep(0.5)
    finally:
        collector.terminate()
        collector.wait(timeout=10)
    read = subprocess.run(["tcpdump", "-nn", "-A", "-r", str(out)], capture_output=True,
                          text=True, timeout=30, check=True).stdout  # fmt: skip
    packets = [line for line in read.splitlines() if " IP " in line and " > " in line]
    assert len(packets) == len(trace["messages"]), read
    # with the addresses each message crossed between, both legs
    assert any(f"IP {OPERATOR}.{op_port} > 127.0.0.1.{sbc_port}:" in p for p in packets), packets
    assert any(f"IP 127.0.0.1.{sbc_port} > {PBX}.{pbx_port}:" in p for p in packets), packets
    assert read.count(f"Call-ID: {a_id}") >= 6 and read.count(f"Call-ID: {b_id}") >= 6


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_dashboard_draws_the_ladder_of_a_call_and_finds_it_by_call_id(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make deps)")
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    node = sbc_factory(basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port))
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    uac = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                       remote=("127.0.0.1", sbc_port), service=CALLED, caller=CALLER,
                       calls=1).start()  # fmt: skip
    uac.check()
    pbx.check()
    (summary,) = get_json(node, "/api/traces?q=%2B33123456789")
    a_id, b_id = summary["call_ids"]
    messages = get_json(node, f"/api/calls/{a_id}/trace")["messages"]
    # screenshots are the test's artefacts; PKISS_SCREENSHOTS=dir keeps them there (docs/)
    shots = Path(os.environ.get("PKISS_SCREENSHOTS", tmp_path))
    with Browser(CHROMIUM, f"http://{node.config['admin']['listen']}/") as page:
        assert page.until("document.querySelectorAll('#cdr tbody button').length === 1", 15)
        page.run("document.querySelector('#cdr tbody button').click()")
        arrows = "document.querySelectorAll('#ladder-svg line.arrow').length"
        assert page.until(f"{arrows} === {len(messages)}", 10), page.run(arrows)
        lanes = page.run("[...document.querySelectorAll('#ladder-svg text.lane')]"
                         ".map((t) => t.textContent)")  # fmt: skip
        assert lanes == [f"{OPERATOR}:{op_port}", "SBC", f"{PBX}:{pbx_port}"], lanes
        labels = page.run("[...document.querySelectorAll('#ladder-svg text.msg')]"
                          ".map((t) => t.textContent)")  # fmt: skip
        assert labels[0].startswith("INVITE sip:+33123456789"), labels
        assert "SIP/2.0 200 OK" in labels, labels
        second_invite = [i for i, label in enumerate(labels) if label.startswith("INVITE")][1]
        page.run(f"document.querySelectorAll('#ladder-svg text.msg')[{second_invite}]"
                 ".dispatchEvent(new MouseEvent('click'))")  # fmt: skip
        shown = page.run("document.getElementById('ladder-message').textContent")
        assert f"Call-ID: {b_id}" in shown and f"127.0.0.1:{sbc_port} -> {PBX}:" in shown, shown
        page.screenshot(shots / "dashboard-ladder.png")
        # the search, by the callee side's Call-ID
        page.run(f"document.getElementById('trace-q').value = {json.dumps(b_id)};"
                 "document.querySelector('#trace-search button').click()")  # fmt: skip
        found = "document.querySelectorAll('#traces tbody tr').length"
        assert page.until(f"{found} === 1", 10), page.run(found)
        row = page.run("document.querySelector('#traces tbody tr').textContent")
        assert CALLED in row and "200" in row, row
    assert (shots / "dashboard-ladder.png").stat().st_size > 10_000
