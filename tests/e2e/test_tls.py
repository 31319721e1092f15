"""SIP over TLS with OpenSSL on the other end: socat terminates TLS in front of SIPp (which
has no TLS of its own), so every TLS handshake and record is OpenSSL's, not ours.

- SBC -> PBX over TLS: the PBX host says ``transport: tls``; socat listens with TLS on the
  PBX's address and hands the plain stream to a SIPp UAS over TCP.
- operator -> SBC over TLS: a SIPp UAC over TCP to socat, which opens TLS to the SBC's
  ``tls:`` listener from the operator's address.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
    pytest.mark.skipif(
        shutil.which("socat") is None, reason="socat is not on PATH (package socat)"
    ),
]

OPERATOR, PBX = "127.0.0.2", "127.0.0.3"
CALLED = "+33123456789"


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=sbc.test",
                    "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.3"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return crt, key


@pytest.fixture
def socat() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*addresses: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["socat", *addresses], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        started.append(proc)
        time.sleep(0.3)  # its listening socket is up well before this
        assert proc.poll() is None, "socat did not start"
        return proc

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(5)


def tls_config(cert: tuple[Path, Path], sbc_port: int, tls_port: int, op_port: int,
               pbx_port: int, pbx_transport: str) -> dict[str, Any]:  # fmt: skip
    config = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port,
                          pbx_transport=pbx_transport)  # fmt: skip
    config["sbc"]["listen"].append(f"tls:127.0.0.1:{tls_port}")
    config["sbc"]["tls"] = {"cert": str(cert[0]), "key": str(cert[1])}
    return config


def test_call_to_the_pbx_over_tls(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss],
    cert: tuple[Path, Path], socat: Callable[..., Any],
) -> None:  # fmt: skip
    sbc_port, tls_port, op_port = free_port(), free_port(), free_port(OPERATOR)
    pbx_tls, pbx_tcp = free_port(PBX), free_port(PBX)
    socat(f"OPENSSL-LISTEN:{pbx_tls},bind={PBX},reuseaddr,fork,cert={cert[0]},key={cert[1]},"
          "verify=0", f"TCP:{PBX}:{pbx_tcp},bind={PBX}")  # fmt: skip
    sbc = sbc_factory(tls_config(cert, sbc_port, tls_port, op_port, pbx_tls, "tls"))
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_tcp, transport="t1",
                       calls=1).start()  # fmt: skip
    caller = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                          remote=("127.0.0.1", sbc_port), service=CALLED, calls=1)  # fmt: skip
    caller.start().check()
    pbx.check()
    invite = pbx.messages().split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert "Via: SIP/2.0/TLS 127.0.0.1:" in invite
    assert ";transport=tls" in invite  # the Contact: come back over TLS
    assert sbc.alive()


def test_call_from_the_operator_over_tls(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss],
    cert: tuple[Path, Path], socat: Callable[..., Any],
) -> None:  # fmt: skip
    sbc_port, tls_port, op_port = free_port(), free_port(), free_port(OPERATOR)
    front, pbx_port = free_port(OPERATOR), free_port(PBX)
    socat(f"TCP-LISTEN:{front},bind={OPERATOR},reuseaddr,fork",
          f"OPENSSL:127.0.0.1:{tls_port},bind={OPERATOR},verify=1,cafile={cert[0]}")  # fmt: skip
    sbc_factory(tls_config(cert, sbc_port, tls_port, op_port, pbx_port, "udp"))
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    # SIPp's TCP goes to socat, which opened TLS to the SBC and checked its certificate
    sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port, transport="t1",
                 remote=(OPERATOR, front), service=CALLED, calls=1).start().check()  # fmt: skip
    pbx.check()


def test_a_tls_listener_with_a_missing_key_stops_the_node_with_the_reason(tmp_path: Path) -> None:
    config = basic_config(free_port())
    config["sbc"]["listen"].append(f"tls:127.0.0.1:{free_port()}")
    config["sbc"]["tls"] = {"cert": str(tmp_path / "nope.pem"), "key": str(tmp_path / "no.key")}
    node = Pkiss(config, tmp_path)
    with pytest.raises(RuntimeError, match=r"cannot start: sbc\.tls: cannot load"):
        node.start()
    node.stop()
