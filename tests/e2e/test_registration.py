"""Outbound registration with a real SIPp registrar: the SBC registers to a carrier with
``register``, answers the registrar's 401 with digest credentials (checked by SIPp's
verifyauth), refreshes at half of the 4 s the registrar grants, in the same Call-ID, and
removes its binding (Expires: 0) when it stops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

REGISTRAR = "127.0.0.2"


def test_sbc_registers_answers_the_challenge_and_refreshes(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    port = free_port(REGISTRAR)
    registrar = sipp_factory(
        "uas_registrar", local_ip=REGISTRAR, local_port=port, calls=1, timeout=15
    ).start()
    config: dict[str, Any] = basic_config(free_port(), carrier=REGISTRAR, carrier_port=port)
    # expires: 60 is the least the config takes; the registrar grants 4 s (Expires: 4)
    config["peers"]["operator"]["register"] = {
        "username": "0123456789", "password": "secret", "domain": "carrier.example",
        "expires": 60,
    }  # fmt: skip
    started = time.monotonic()
    sbc = sbc_factory(config)
    while registrar.messages().count("REGISTER sip:carrier.example SIP/2.0") < 3:
        assert time.monotonic() - started < 10, registrar.diagnostics()
        time.sleep(0.1)
    log = sbc.log()
    assert "registration of operator to sip:carrier.example: registered for 4 s" in log
    # stopping: the binding is removed (Expires: 0), credentials included
    assert sbc.stop() == 0
    stats = registrar.check(timeout=5)
    assert stats["SuccessfulCall(C)"] == 1
    assert stats["FailedCall(C)"] == 0
    messages = registrar.messages()
    assert "Authorization: Digest" in messages
    last = messages.rsplit("REGISTER sip:carrier.example SIP/2.0", 1)[1]
    assert "Expires: 0" in last.split("\n\n")[0]
    assert "registration of operator to sip:carrier.example: unregistered" in sbc.log()
