"""A blind transfer carried out by the node (``peers.*.refer: local``) with three baresip
phones nobody here wrote: a carrier's caller calls the PBX's phone, which transfers it with
baresip's own ``/transfer`` (a REFER) to a number the node routes to another carrier, whose
phone answers. The caller then talks to that phone through the built-in relay (each hears
the other's tone), the PBX's phone is released (NOTIFY 200, BYE), and the call's record
names the carrier it ended with."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sbc import Pkiss, free_port
from test_interop import CALLED, CALLER, CARRIER, PBX, assert_no_call_left, sbc_config
from thirdparty import Baresip, tone_seconds

pytestmark = [pytest.mark.e2e]

FAR = "127.0.6.5"  # the other carrier's phone
TARGET = "+442071234567"
CALLER_TONE, PBX_TONE, FAR_TONE = 440, 1000, 1500
HOLD = 3.0


def test_baresip_transfers_a_carrier_call_to_another_carrier(
    tmp_path: Path, sbc_factory: Callable[..., Pkiss]
) -> None:
    caller = Baresip(tmp_path / "caller", CARRIER, user=CALLER, tone=CALLER_TONE)
    pbx = Baresip(tmp_path / "pbx", PBX, user=CALLED, tone=PBX_TONE)
    far = Baresip(tmp_path / "far", FAR, user=TARGET, tone=FAR_TONE)
    with caller.start(), pbx.start(), far.start():
        sbc_port = free_port()
        config = sbc_config(sbc_port, (CARRIER, caller.port), (PBX, pbx.port))
        config["media"] = {"mode": "relay", "ports": "43000-43999", "learn": "first-packet"}
        config["peers"]["pbx"]["refer"] = "local"
        config["peers"]["far"] = {
            "role": "carrier",
            "hosts": [f"{FAR}:{far.port}"],
            "health": False,
        }
        config["routes"] = [{"prefix": "+44", "via": ["far"]}]
        sbc = sbc_factory(config)

        caller.dial(f"sip:{CALLED}@127.0.0.1:{sbc_port}")
        caller.wait_event("CALL_ESTABLISHED", timeout=10)
        pbx.wait_event("CALL_ESTABLISHED", timeout=10)
        time.sleep(1.0)  # they talk a little first: the PBX's media is on its way
        pbx.transfer(f"sip:{TARGET}@127.0.0.1:{sbc_port}")
        far.wait_event("CALL_ESTABLISHED", timeout=10)
        pbx.wait_event("CALL_CLOSED", timeout=10)
        time.sleep(HOLD)
        caller.hangup()
        caller.wait_event("CALL_CLOSED", timeout=10)
        far.wait_event("CALL_CLOSED", timeout=10)

        # the PBX's phone was told how its transfer went: 202, then NOTIFY sipfrag 100 / 200
        received = [m for kind, m in pbx.sip_messages() if kind == "received"]
        assert any((m.startswith("SIP/2.0 202") and "CSeq: 2 REFER" in m) or
                   (re.search(r"CSeq: \d+ REFER", m) and m.startswith("SIP/2.0 202"))
                   for m in received), received  # fmt: skip
        frags = [m.split("\n\n", 1)[1] for m in received if m.startswith("NOTIFY ")]
        assert any(f.startswith("SIP/2.0 100") for f in frags), frags
        assert any(f.startswith("SIP/2.0 200") for f in frags), frags
        # the far phone never learns of the PBX, nor the PBX of it
        far_received = "\n".join(m for kind, m in far.sip_messages() if kind == "received")
        assert PBX not in far_received and CARRIER not in far_received

        heard_by_far = far.received_audio()
        heard_by_caller = caller.received_audio()
        assert tone_seconds(heard_by_far, CALLER_TONE) >= HOLD / 2, heard_by_far
        assert tone_seconds(heard_by_caller, FAR_TONE) >= HOLD / 2, heard_by_caller
        assert tone_seconds(heard_by_far, PBX_TONE) == 0
        assert_no_call_left(sbc)
        (record,) = json.loads(sbc.cli("cdr", "--json").stdout)
        assert record["dest_peer"] == "far" and record["status"] == 200, record
