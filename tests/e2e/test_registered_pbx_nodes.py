"""A PBX with ``hosts: registered`` and two nodes sharing a real redis-server: the PBX
REGISTERs at node one (401, digest credentials, 200); the operator's call to its DID through
node two reaches it, and node two knows the PBX's own calls by the address it registered
from. Once the PBX removes its binding at node one (Expires: 0), node two refuses calls to it
(480). Over TCP the PBX's connection ends at node one: node two refuses calls to it (480)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sbc import Pkiss, free_port
from servers import Redis
from sipp import SCENARIOS, Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server is not on PATH (package redis-server)",
    ),
]

OPERATOR, PBX = "127.0.0.2", "127.0.0.3"
DID = "+33140000500"
CREDENTIALS = ["-au", "remote1", "-ap", "secret"]


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


def two_nodes(make_sbc: Callable[..., Pkiss], state: str, op_port: int) -> list[tuple[Pkiss, int]]:
    """Two nodes with the same peers (the PBX with no fixed address), each on its own port."""
    nodes = []
    for _ in range(2):
        port = free_port()
        config: dict[str, Any] = {
            "sbc": {"listen": [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"]},
            "media": {"mode": "bypass"},
            "state": state,
            "admin": {"token": "t0ken"},
            "peers": {
                "operator": {"role": "carrier", "hosts": [f"{OPERATOR}:{op_port}"],
                             "match": {"source": [OPERATOR]}, "health": False},
                "remote-pbx": {
                    "role": "pbx", "hosts": "registered", "match": {"username": "remote1"},
                    "password": "secret", "dids": [DID],
                },
            },
            "routes": [{"prefix": "", "via": ["operator"]}],
        }  # fmt: skip
        nodes.append((make_sbc(config), port))
    one, two = nodes[0][0], nodes[1][0]
    wait_for(lambda: two.cli_json("status")["state"]["nodes"] == 2, "the nodes never met")
    wait_for(lambda: one.cli_json("status")["state"]["nodes"] == 2, "the nodes never met")
    return nodes


def unregister_scenario(workdir: Path) -> Path:
    """uac_register.xml with Expires: 0: the PBX removes its binding."""
    text = (SCENARIOS / "uac_register.xml").read_text().replace("Expires: 600", "Expires: 0")
    path = workdir / "uac_unregister.xml"
    path.write_text(text)
    return path


def test_a_pbx_registered_at_one_node_is_reached_through_the_other(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], redis: Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    op_port, pbx_port = free_port(OPERATOR), free_port(PBX)
    (one, port1), (two, port2) = two_nodes(sbc_factory, redis.url, op_port)
    sipp_factory("uac_register", local_ip=PBX, local_port=pbx_port, remote=("127.0.0.1", port1),
                 service="remote1", calls=1, timeout=10,
                 extra_args=CREDENTIALS).start().check()  # fmt: skip
    assert "peer remote-pbx registered from" in one.log()
    wait_for(lambda: "peer remote-pbx registered at node" in two.log(),
             "node two never heard of the registration")  # fmt: skip

    # the operator's call to the DID through node two reaches the PBX where it registered
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                 remote=("127.0.0.1", port2), service=DID, caller="+4420123",
                 calls=1).start().check()  # fmt: skip
    pbx.check()
    assert f"INVITE sip:remote1@{PBX}:{pbx_port};transport=UDP SIP/2.0" in pbx.messages()
    assert f"To: <sip:{DID}@{PBX}>" in pbx.messages()

    # the PBX's own call through node two: known by the address it registered from (a
    # stranger's INVITE without credentials would be dropped), challenged, then routed
    operator = sipp_factory("uas_basic", local_ip=OPERATOR, local_port=op_port, calls=1).start()
    outbound = sipp_factory("uac_auth407", local_ip=PBX, local_port=pbx_port,
                            remote=("127.0.0.1", port2), service="+4420123", caller="1001",
                            calls=1, extra_args=CREDENTIALS).start()  # fmt: skip
    outbound.check()
    operator.check()
    assert "SIP/2.0 407" in outbound.messages()

    # the PBX removes its binding at node one: node two refuses calls to it
    sipp_factory(unregister_scenario(tmp_path), local_ip=PBX, local_port=pbx_port,
                 remote=("127.0.0.1", port1), service="remote1", calls=1, timeout=10,
                 extra_args=CREDENTIALS).start().check()  # fmt: skip
    wait_for(lambda: "peer remote-pbx unregistered at node" in two.log(),
             "node two never heard of the removal")  # fmt: skip
    refused = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                           remote=("127.0.0.1", port2), service=DID, caller="+4420123",
                           calls=1, timeout=10).start()  # fmt: skip
    refused.wait(timeout=12)
    assert "SIP/2.0 480" in refused.messages()


def test_a_pbx_registered_over_tcp_is_reached_only_through_its_node(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], redis: Redis
) -> None:
    """Node two knows the binding but cannot send on node one's connection: 480."""
    op_port, pbx_port = free_port(OPERATOR), free_port(PBX)
    (_, port1), (two, port2) = two_nodes(sbc_factory, redis.url, op_port)
    sipp_factory("uac_register", local_ip=PBX, local_port=pbx_port, remote=("127.0.0.1", port1),
                 transport="t1", service="remote1", calls=1, timeout=10,
                 extra_args=CREDENTIALS).start().check()  # fmt: skip
    wait_for(lambda: "peer remote-pbx registered at node" in two.log(),
             "node two never heard of the registration")  # fmt: skip
    assert f"from tcp:{PBX}:" in two.log()
    refused = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                           remote=("127.0.0.1", port2), service=DID, caller="+4420123",
                           calls=1, timeout=10).start()  # fmt: skip
    refused.wait(timeout=12)
    assert "SIP/2.0 480" in refused.messages()
