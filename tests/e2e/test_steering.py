"""Steering with real SIPp peers: an operator drains the PBX's primary host with ``pkiss
drain`` while a long call is up (new calls go to the secondary, the call in progress ends
normally, probes go on), undrains it (calls come back); hangs up a call through the admin API
(BYE to both sides, the record says ``hung up by admin``); and, with two nodes sharing a real
redis-server, a drain made on one node steers the other's calls too."""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from network import CALLED, Network, received, wait_for
from sbc import Pkiss, basic_config, free_port, metric
from servers import Redis
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR = "127.0.0.2"
PRIMARY = "127.0.0.3"
SECONDARY = "127.0.0.4"
TOKEN = "steer-t0ken"
HEALTH = {"interval": 1, "timeout": 0.5, "down_after": 2, "up_after": 2}


def two_host_pbx(config: dict[str, Any], primary_port: int, secondary_port: int) -> None:
    config["admin"] = {"token": TOKEN}
    config["peers"]["pbx"].update(
        hosts=[
            {"address": f"{PRIMARY}:{primary_port}", "priority": 1},
            {"address": f"{SECONDARY}:{secondary_port}", "priority": 2},
        ],
        match={"source": [PRIMARY, SECONDARY]},
        health=HEALTH,
        setup_timeout=1,
    )


def api(node: Pkiss, method: str, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    """One admin API request to ``node``: (HTTP status, JSON body)."""
    request = urllib.request.Request(f"http://{node.config['admin']['listen']}{path}",
                                     method=method)  # fmt: skip
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def host_row(node: Pkiss, address: str) -> dict[str, Any]:
    for peer in node.cli_json("peers"):
        for host in peer["hosts"]:
            if host["address"] == address:
                return dict(host)
    raise AssertionError(f"{address} not in pkiss peers")


def invites(uas: Sipp) -> int:
    return len(received(uas, "INVITE"))


def test_drain_a_host_while_a_call_is_up_then_undrain_it(
    network: Callable[..., Network],
) -> None:
    net = network(OPERATOR, PRIMARY, SECONDARY)
    ports = net.ports
    config = net.basic_config(carrier=OPERATOR, pbx=PRIMARY)
    two_host_pbx(config, ports[PRIMARY], ports[SECONDARY])
    node = net.start(config)
    primary = net.uas(PRIMARY, auto_answer=True, timeout=60)
    secondary = net.uas(SECONDARY, auto_answer=True, timeout=60)
    address = f"{PRIMARY}:{ports[PRIMARY]}"

    # a long call goes to the primary
    # (from a port of its own: the operator's other calls come meanwhile)
    long_call = net.make_sipp("uac_basic", local_ip=OPERATOR, local_port=free_port(OPERATOR),
                              remote=net.sbc_address, service=CALLED, calls=1, pause_ms=6000,
                              caller="+33987654321", timeout=30).start()  # fmt: skip
    assert wait_for(lambda: [c["state"] for c in node.cli_json("calls")] == ["answered"], 5)
    assert (invites(primary), invites(secondary)) == (1, 0)

    # drained as a user types it, once the probes found the primary up
    assert wait_for(lambda: host_row(node, address)["state"] == "up", 5)
    done = node.cli("drain", address)
    assert done.returncode == 0, done.stderr
    assert f"drained host {address}" in done.stdout
    row = host_row(node, address)
    assert row["drained"] is True and row["state"] == "up"  # still probed, still healthy
    assert f"{address} up drained" in node.cli("peers").stdout
    assert metric(node, "pkiss_host_drained", host=address, peer="pbx") == 1
    assert (
        metric(node, "pkiss_host_drained", host=f"{SECONDARY}:{ports[SECONDARY]}", peer="pbx") == 0
    )
    assert node.cli_json("status")["drains"] == {"peers": [], "hosts": [address]}
    probes = len(received(primary, "OPTIONS"))

    # new calls go to the secondary straight away (no setup_timeout waited on the primary)
    stats = net.uac(OPERATOR, CALLED, calls=3, rate=5, timeout=15).check()
    assert stats["SuccessfulCall(C)"] == 3
    assert (invites(primary), invites(secondary)) == (1, 3)
    assert "trying next" not in node.log()

    # a reload keeps the drain
    done = node.cli("reload")
    assert done.returncode == 0, done.stderr
    node.signal(signal.SIGHUP)
    assert wait_for(lambda: node.log().count("config reloaded") == 2, 5)
    assert host_row(node, address)["drained"] is True
    net.uac(OPERATOR, CALLED, calls=1, timeout=15).check()
    assert (invites(primary), invites(secondary)) == (1, 4)

    # the call in progress ended normally, with its own BYE; the primary was probed meanwhile
    long_stats = long_call.check(timeout=20)
    assert long_stats["SuccessfulCall(C)"] == 1 and long_stats["FailedCall(C)"] == 0
    assert len(received(primary, "OPTIONS")) > probes

    # undrained: calls come back to the primary
    done = node.cli("undrain", address)
    assert done.returncode == 0, done.stderr
    assert f"undrained host {address}" in done.stdout
    assert host_row(node, address)["drained"] is False
    assert metric(node, "pkiss_host_drained", host=address, peer="pbx") == 0
    net.uac(OPERATOR, CALLED, calls=2, rate=5, timeout=15).check()
    assert (invites(primary), invites(secondary)) == (3, 4)

    # records: every call answered and ended by a side's BYE
    reasons = [r["reason"] for r in node.cli_json("cdr")]
    assert len(reasons) == 7 and all(r.startswith("BYE from") for r in reasons), reasons
    primary.stop()
    secondary.stop()
    assert primary.stats()["FailedCall(C)"] == 0, primary.errors()[-3000:]
    assert secondary.stats()["FailedCall(C)"] == 0, secondary.errors()[-3000:]


def test_drain_a_whole_peer_and_what_the_api_refuses(network: Callable[..., Network]) -> None:
    """A strict PBX peer drained has no host left: 503, as with every host down."""
    net = network(OPERATOR, PRIMARY, SECONDARY)
    ports = net.ports
    config = net.basic_config(carrier=OPERATOR, pbx=PRIMARY)
    two_host_pbx(config, ports[PRIMARY], ports[SECONDARY])
    config["peers"]["pbx"]["health"] = dict(HEALTH, strict=True)
    node = net.start(config)
    primary = net.uas(PRIMARY, auto_answer=True, timeout=60)

    assert api(node, "POST", "/api/peers/pbx/drain", token=None)[0] == 401
    assert api(node, "POST", "/api/peers/pbx/drain", token="wrong")[0] == 401
    assert api(node, "POST", "/api/peers/nobody/drain")[0] == 404
    assert api(node, "POST", "/api/hosts/127.0.0.9:5060/drain")[0] == 404
    assert node.cli("drain", "nobody").returncode == 1

    done = node.cli("drain", "pbx")
    assert done.returncode == 0, done.stderr
    assert "drained peer pbx" in done.stdout
    peer = next(p for p in node.cli_json("peers") if p["name"] == "pbx")
    assert peer["drained"] is True and all(h["drained"] for h in peer["hosts"])
    assert metric(node, "pkiss_peer_drained", peer="pbx") == 1
    assert "pbx (drained)" in node.cli("peers").stdout
    net.uac(OPERATOR, CALLED, calls=1, scenario="uac_503", timeout=10).check()
    assert invites(primary) == 0

    status, body = api(node, "POST", "/api/peers/pbx/undrain")
    assert status == 200 and body == {"undrained": "peer", "names": ["pbx"]}
    net.uac(OPERATOR, CALLED, calls=1, timeout=15).check()
    assert invites(primary) == 1


def test_hang_up_a_call_through_the_api(network: Callable[..., Network]) -> None:
    net = network(OPERATOR, PRIMARY)
    config = net.basic_config(carrier=OPERATOR, pbx=PRIMARY)
    config["admin"] = {"token": TOKEN}
    node = net.start(config)
    pbx = net.uas(PRIMARY, calls=1, timeout=30)
    caller = net.uac(OPERATOR, CALLED, calls=1, scenario="uac_recv_bye", timeout=30)
    assert wait_for(lambda: [c["state"] for c in node.cli_json("calls")] == ["answered"], 5)
    call_id = node.cli_json("calls")[0]["id"]

    assert api(node, "POST", "/api/calls/no-such-call/hangup")[0] == 404
    quoted = urllib.parse.quote(call_id, safe="")
    assert api(node, "POST", f"/api/calls/{quoted}/hangup", token=None)[0] == 401
    assert node.cli_json("calls") != []  # refused writes changed nothing
    status, body = api(node, "POST", f"/api/calls/{quoted}/hangup")
    assert (status, body) == (200, {"hung_up": call_id})

    # both sides got a BYE and answered it: each SIPp's scenario ends with a success
    assert caller.check(timeout=10)["SuccessfulCall(C)"] == 1
    assert pbx.check(timeout=10)["SuccessfulCall(C)"] == 1
    assert len(received(caller, "BYE")) == 1 and len(received(pbx, "BYE")) == 1
    assert wait_for(lambda: node.cli_json("calls") == [], 3)
    _, records = api(node, "GET", "/api/cdr")
    assert [(r["status"], r["reason"]) for r in records] == [(200, "hung up by admin")]
    done = node.cli("hangup", call_id)  # gone now
    assert done.returncode == 1 and "404" in done.stderr


# ------------------------------------------------------------------------ shared state


@pytest.fixture
def redis() -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH (package redis-server)")
    server = Redis().start()
    yield server
    server.stop()


def test_a_drain_on_one_node_steers_the_other(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], redis: Redis
) -> None:
    op_port, primary_port, secondary_port = (free_port(ip) for ip in (OPERATOR, PRIMARY, SECONDARY))
    nodes: list[Pkiss] = []
    sip_ports: list[int] = []
    for _ in range(2):
        port = free_port()
        config = basic_config(port, carrier_port=op_port)
        two_host_pbx(config, primary_port, secondary_port)
        config["state"] = redis.url
        sip_ports.append(port)
        nodes.append(sbc_factory(config))
    one, two = nodes
    assert wait_for(lambda: two.cli_json("status")["state"]["nodes"] == 2, 5)
    primary = sipp_factory("uas_basic", local_ip=PRIMARY, local_port=primary_port, calls=None,
                           auto_answer=True, timeout=60).start()  # fmt: skip
    secondary = sipp_factory("uas_basic", local_ip=SECONDARY, local_port=secondary_port,
                             calls=None, auto_answer=True, timeout=60).start()  # fmt: skip
    address = f"{PRIMARY}:{primary_port}"

    def calls_through_two(count: int) -> None:
        sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                     remote=("127.0.0.1", sip_ports[1]), service=CALLED, calls=count,
                     rate=5, timeout=15).start().check()  # fmt: skip

    done = one.cli("drain", address)
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: host_row(two, address)["drained"] is True, 3)
    assert "drains now" in two.log()
    calls_through_two(2)
    assert (invites(primary), invites(secondary)) == (0, 2)

    # a node that starts later finds the drain in Redis
    late = basic_config(free_port(), carrier_port=op_port)
    two_host_pbx(late, primary_port, secondary_port)
    late["state"] = redis.url
    three = sbc_factory(late)
    assert wait_for(lambda: host_row(three, address)["drained"] is True, 3)
    three.stop()

    # undrained on node two: node one follows
    done = two.cli("undrain", address)
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: host_row(one, address)["drained"] is False, 3)
    time.sleep(0.6)  # node two's own next read of the set changes nothing back
    assert host_row(two, address)["drained"] is False
    calls_through_two(2)
    assert (invites(primary), invites(secondary)) == (2, 2)


# ---------------------------------------------------------------------------- dashboard


def test_the_dashboard_shows_drains_and_its_buttons_work(network: Callable[..., Network]) -> None:
    from browser import Browser
    from test_dashboard import CHROMIUM, rendered

    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH (package chromium)")
    net = network(OPERATOR, PRIMARY, SECONDARY)
    ports = net.ports
    config = net.basic_config(carrier=OPERATOR, pbx=PRIMARY)
    two_host_pbx(config, ports[PRIMARY], ports[SECONDARY])
    node = net.start(config)
    net.uas(PRIMARY, auto_answer=True, timeout=60)
    secondary = net.uas(SECONDARY, auto_answer=True, timeout=60)
    address = f"{PRIMARY}:{ports[PRIMARY]}"
    assert api(node, "POST", f"/api/hosts/{address}/drain")[0] == 200
    caller = net.uac(OPERATOR, CALLED, calls=1, scenario="uac_recv_bye", timeout=30)
    assert wait_for(lambda: [c["state"] for c in node.cli_json("calls")] == ["answered"], 5)
    assert invites(secondary) == 1
    base = f"http://{node.config['admin']['listen']}/"

    dom = rendered(base)
    assert "updated " in dom, dom[-3000:]  # the script ran and read the API
    peers = dom.split('id="peers"', 1)[1].split("</table>", 1)[0]
    assert f"{address} up drained" in peers
    # one Undrain (the primary), a Drain for each other host and each peer
    assert peers.count(">Undrain</button>") == 1
    assert peers.count(">Drain</button>") == 1 + 1 + 2
    calls = dom.split('id="calls"', 1)[1].split("</table>", 1)[0]
    assert "answered" in calls and calls.count(">Hang up</button>") == 1

    def click(table: str, text: str) -> str:
        return (f"[...document.querySelectorAll('#{table} button')]"
                f".find((b) => b.textContent === '{text}').click()")  # fmt: skip

    with Browser(CHROMIUM, base) as page:
        assert page.until("[...document.querySelectorAll('#peers button')]"
                          ".some((b) => b.textContent === 'Undrain')")  # fmt: skip
        # a write without the token: the page asks for it, nothing changes
        page.run(click("peers", "Undrain"))
        assert page.until("!document.getElementById('token-form').hidden")
        assert host_row(node, address)["drained"] is True
        page.run(f"document.getElementById('token').value = '{TOKEN}';"
                 "document.getElementById('token-form').requestSubmit()")  # fmt: skip
        page.run(click("peers", "Undrain"))
        assert wait_for(lambda: host_row(node, address)["drained"] is False, 5)
        assert page.until(f"document.getElementById('peers').textContent"
                          f".includes('{address} up ')")  # fmt: skip
        # hang up, confirmed
        page.run("window.confirm = () => true")
        page.run(click("calls", "Hang up"))
        assert wait_for(lambda: node.cli_json("calls") == [], 5)
    assert caller.check(timeout=10)["SuccessfulCall(C)"] == 1
    assert len(received(secondary, "BYE")) == 1
    assert [r["reason"] for r in node.cli_json("cdr")] == ["hung up by admin"]
