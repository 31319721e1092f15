"""Two nodes sharing a real redis-server (``state: redis://...``): a source banned by one is
dropped by the other, a ban lifted on one is lifted on both, and a peer's ``limits.calls``
holds across the nodes. Without Redis a node still takes calls."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sbc import Pkiss, basic_config, free_port
from servers import Redis
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server is not on PATH (package redis-server)",
    ),
]

OPERATOR, PBX, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.6"


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis().start()
    yield server
    server.stop()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


class Pair:
    """Two nodes with the same peers, each on its own SIP and admin port."""

    def __init__(self, make_sbc: Callable[..., Pkiss], state: str, **extra: Any) -> None:
        self.op_port, self.pbx_port = free_port(OPERATOR), free_port(PBX)
        self.ports: list[int] = []
        self.nodes: list[Pkiss] = []
        for _ in range(2):
            port = free_port()
            config = basic_config(port, carrier_port=self.op_port, pbx_port=self.pbx_port)
            config["state"] = state
            config["admin"] = {"token": "t0ken"}
            config["security"] = {"unknown_sources": "reject", "never_ban": [],
                                  "flood": {"window": 2, "max": 5, "ban": 600}}  # fmt: skip
            for key, value in extra.items():
                config["peers"]["pbx"][key] = value
            self.ports.append(port)
            self.nodes.append(make_sbc(config))


def test_a_ban_on_one_node_is_a_ban_on_the_other_and_so_is_its_lifting(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], redis: Redis
) -> None:
    pair = Pair(sbc_factory, redis.url)
    one, two = pair.nodes
    wait_for(lambda: two.cli_json("status")["state"]["nodes"] == 2, "the nodes never met")
    sipp_factory("uac_options", local_ip=STRANGER, remote=("127.0.0.1", pair.ports[0]),
                 calls=10, rate=100, timeout=3).start().wait(timeout=8)  # fmt: skip
    assert STRANGER in [b["address"] for b in one.cli_json("bans")]
    wait_for(lambda: STRANGER in [b["address"] for b in two.cli_json("bans")],
             "node two never heard of the ban")  # fmt: skip
    assert f"banned {STRANGER}" in two.log() and "by node" in two.log()
    # node two drops it: no answer at all, where it would answer 403 (reject) otherwise
    probe = sipp_factory("uac_options", local_ip=STRANGER, remote=("127.0.0.1", pair.ports[1]),
                         calls=1, timeout=2).start()  # fmt: skip
    probe.wait(timeout=6)
    assert "SIP/2.0 403" not in probe.messages()
    # lifted on node two: lifted on node one too
    done = two.cli("bans", "--unban", STRANGER)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: one.cli_json("bans") == [], "node one kept the ban")


def test_a_peer_limit_holds_across_nodes(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], redis: Redis
) -> None:
    """``limits.calls: 1`` on the PBX: a call up through node one; node two refuses the next
    one (503) until it ends."""
    pair = Pair(sbc_factory, redis.url, limits={"calls": 1})
    one, two = pair.nodes
    wait_for(lambda: two.cli_json("status")["state"]["nodes"] == 2, "the nodes never met")
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pair.pbx_port, calls=2,
                       timeout=30).start()  # fmt: skip
    held = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=pair.op_port,
                        remote=("127.0.0.1", pair.ports[0]), service="+33123456789",
                        calls=1, pause_ms=4000).start()  # fmt: skip
    wait_for(lambda: one.cli_json("calls") != [], "the first call never came up")
    time.sleep(1.2)  # two sync intervals: node two has heard of it
    refused = sipp_factory("uac_503", local_ip=OPERATOR, remote=("127.0.0.1", pair.ports[1]),
                           service="+33123456789", calls=1).start()  # fmt: skip
    refused.check(timeout=10)
    held.check(timeout=15)
    wait_for(lambda: two.cli_json("status")["state"]["nodes"] == 2 and not one.cli_json("calls"),
             "the first call never ended")  # fmt: skip
    time.sleep(1.2)
    sipp_factory("uac_basic", local_ip=OPERATOR, remote=("127.0.0.1", pair.ports[1]),
                 service="+33123456789", calls=1).start().check(timeout=15)  # fmt: skip
    pbx.check(timeout=10)


def test_without_redis_a_node_goes_on_alone(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    pair = Pair(sbc_factory, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    one = pair.nodes[0]
    status = one.cli_json("status")["state"]
    assert status["kind"] == "redis" and status["connected"] is False
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pair.pbx_port, calls=1).start()
    sipp_factory("uac_basic", local_ip=OPERATOR, local_port=pair.op_port,
                 remote=("127.0.0.1", pair.ports[0]), service="+33123456789",
                 calls=1).start().check()  # fmt: skip
    pbx.check()
    assert "shared state: redis://127.0.0.1" in one.log() and "going on alone" in one.log()


def test_a_host_one_node_finds_down_is_skipped_by_the_other_at_once(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], redis: Redis
) -> None:
    """The PBX's primary does not answer. Node one probes every second and finds it down;
    node two would not probe it for a minute, yet sends its call straight to the secondary."""
    primary, secondary = free_port(PBX), free_port("127.0.0.4")
    pair_ports = (free_port(), free_port())
    op_port = free_port(OPERATOR)
    # the secondary answers node one's probes (-aa) and takes the call
    # (no call count: with -m SIPp would quit after the first auto-answered probe)
    pbx = sipp_factory("uas_basic", local_ip="127.0.0.4", local_port=secondary, calls=None,
                       auto_answer=True).start()  # fmt: skip
    nodes = []
    for port, interval in zip(pair_ports, (1.0, 60.0), strict=True):
        config = basic_config(port, carrier_port=op_port)
        config["state"] = redis.url
        config["peers"]["pbx"].update({
            "hosts": [{"address": f"{PBX}:{primary}", "priority": 1},
                      {"address": f"127.0.0.4:{secondary}", "priority": 2}],
            "match": {"source": [PBX, "127.0.0.4"]},
            "health": {"interval": interval, "timeout": 0.5, "down_after": 1, "up_after": 1},
            "setup_timeout": 20,  # without the shared verdict, node two would wait this long
        })  # fmt: skip
        nodes.append(sbc_factory(config))
    one, two = nodes
    wait_for(lambda: f"{PBX}:{primary} of pbx is down" in one.log(),
             "node one never found the primary down", 10)  # fmt: skip
    wait_for(lambda: "down according to another node" in two.log(),
             "node two never heard of it")  # fmt: skip
    peers = {p["name"]: p for p in two.cli_json("peers")}
    assert [h["state"] for h in peers["pbx"]["hosts"]] == ["down (another node)", "pending"]
    started = time.monotonic()
    sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                 remote=("127.0.0.1", pair_ports[1]), service="+33123456789",
                 calls=1).start().check(timeout=15)  # fmt: skip
    assert time.monotonic() - started < 5  # straight to the secondary
    assert "INVITE sip:+33123456789@127.0.0.4" in pbx.messages()
