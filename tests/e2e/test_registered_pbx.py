"""A PBX with no fixed address (``hosts: registered``): it REGISTERs to the SBC (401, then
digest credentials, then 200), and a call from the operator to its DID goes to the address
its REGISTER came from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX = "127.0.0.2", "127.0.0.3"
DID = "+33140000500"


def test_registered_pbx_receives_calls_at_its_registered_address(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    config: dict[str, Any] = {
        "sbc": {"listen": [f"udp:127.0.0.1:{sbc_port}"]},
        "media": {"mode": "bypass"},
        "peers": {
            "operator": {"role": "carrier", "hosts": [f"{OPERATOR}:{op_port}"], "health": False},
            "remote-pbx": {
                "role": "pbx", "hosts": "registered", "match": {"username": "remote1"},
                "password": "secret", "dids": [DID],
            },
        },
        "routes": [{"prefix": "", "via": ["operator"]}],
    }  # fmt: skip
    sbc = sbc_factory(config)
    # before any registration: nowhere to send the call
    early = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                         remote=("127.0.0.1", sbc_port), service=DID, caller="+4420123",
                         calls=1, timeout=10).start()  # fmt: skip
    early.wait(timeout=12)
    assert "SIP/2.0 480" in early.messages()
    sipp_factory("uac_register", local_ip=PBX, local_port=pbx_port,
                 remote=("127.0.0.1", sbc_port), service="remote1", calls=1, timeout=10,
                 extra_args=["-au", "remote1", "-ap", "secret"]).start().check()  # fmt: skip
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                 remote=("127.0.0.1", sbc_port), service=DID, caller="+4420123",
                 calls=1).start().check()  # fmt: skip
    pbx.check()
    # the Request-URI is the Contact it registered; the called number is in To
    assert f"INVITE sip:remote1@{PBX}:{pbx_port};transport=UDP SIP/2.0" in pbx.messages()
    assert f"To: <sip:{DID}@{PBX}>" in pbx.messages()
    assert "peer remote-pbx registered from" in sbc.log()
