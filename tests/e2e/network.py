"""The opening most end-to-end tests share: a pkiss node on 127.0.0.1 and SIPp peers, each on
its own loopback address with a free port, and reading what a SIPp received.

    net = Network(sipp_factory, sbc_factory, OPERATOR, PBX)
    net.start(net.basic_config(carrier=OPERATOR, pbx=PBX))
    pbx = net.uas(PBX)                                  # runs until stopped
    assert net.uac(OPERATOR, "+33123456789", calls=2).check()["SuccessfulCall(C)"] == 2
    pbx.stop()
    assert len(received(pbx, "INVITE")) == 2

The ``network`` fixture (conftest.py) builds one from the test's factories.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from sbc import Pkiss, basic_config, free_port
from sipp import Sipp

__all__ = ["CALLED", "CALLER", "Network", "received", "wait_for"]

CALLED = "+33123456789"  # a DID of the PBX in basic_config
CALLER = "+33987654321"

SippFactory = Callable[..., Sipp]
SbcFactory = Callable[..., Pkiss]


def received(peer: Sipp, method: str) -> list[str]:
    """The ``method`` requests the SIPp received, one per transaction (Call-ID + CSeq): a
    retransmission counts once."""
    seen: dict[tuple[str, str], str] = {}
    for chunk in re.split(r"-{20,}[^\n]*\n", peer.messages()):
        if "message received" not in chunk:
            continue
        text = chunk.split(":\n", 1)[-1].lstrip()
        if not text.startswith(f"{method} "):
            continue
        call_id = re.search(r"^Call-ID:\s*(\S+)", text, re.M | re.I)
        cseq = re.search(r"^CSeq:\s*(.+?)\s*$", text, re.M | re.I)
        seen[(call_id.group(1) if call_id else "", cseq.group(1) if cseq else "")] = text
    return list(seen.values())


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every 50 ms for up to ``timeout`` seconds; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Network:
    """A pkiss node (started by ``start``) and the loopback addresses of its SIPp peers, a free
    port each (``ports[ip]``), chosen before the node's config is written."""

    def __init__(self, make_sipp: SippFactory, make_sbc: SbcFactory, *ips: str) -> None:
        self.make_sipp = make_sipp
        self.make_sbc = make_sbc
        self.sbc_port = free_port()
        self.ports = {ip: free_port(ip) for ip in ips}
        self._sbc: Pkiss | None = None

    @property
    def sbc_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.sbc_port)

    @property
    def sbc(self) -> Pkiss:
        assert self._sbc is not None, "Network.start() first"
        return self._sbc

    def basic_config(self, carrier: str, pbx: str, **kwargs: Any) -> dict[str, Any]:
        """sbc.basic_config on this node's port, the carrier and PBX at their ports here."""
        return basic_config(
            self.sbc_port, carrier=carrier, carrier_port=self.ports[carrier], pbx=pbx,
            pbx_port=self.ports[pbx], **kwargs,
        )  # fmt: skip

    def start(self, config: dict[str, Any]) -> Pkiss:
        self._sbc = self.make_sbc(config)
        return self._sbc

    def uas(self, ip: str, scenario: str = "uas_basic", **kwargs: Any) -> Sipp:
        """A SIPp answering at ``ip``, started and listening; by default it runs until stopped
        (calls=None) or for 20 s."""
        kwargs.setdefault("calls", None)
        kwargs.setdefault("timeout", 20)
        kwargs.setdefault("name", f"{scenario}-{ip}-{time.monotonic_ns()}")
        return self.make_sipp(scenario, local_ip=ip, local_port=self.ports[ip], **kwargs).start()

    def uac(
        self, ip: str, service: str, calls: int, scenario: str = "uac_basic", **kwargs: Any
    ) -> Sipp:
        """A SIPp at ``ip`` calling ``service`` through the node ``calls`` times, started."""
        kwargs.setdefault("caller", CALLER)
        kwargs.setdefault("timeout", 15)
        return self.make_sipp(
            scenario, local_ip=ip, local_port=self.ports[ip], remote=self.sbc_address,
            service=service, calls=calls, **kwargs,
        ).start()  # fmt: skip
