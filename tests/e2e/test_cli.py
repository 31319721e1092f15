"""The command line as a user types it: ``pkiss check`` and a running node's SIGHUP reload."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sbc import ROOT, Pkiss
from sipp import Sipp, sipp_available
from test_calls import CALLER, Net

pytestmark = pytest.mark.e2e


def _pkiss(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pkiss", *args], capture_output=True, text=True, timeout=30
    )


def test_check_accepts_the_example_config() -> None:
    result = _pkiss("check", "-c", str(ROOT / "examples" / "pkiss.yaml"))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_check_names_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("peers:\n  pbx:\n    role: pbx\n    hosts: [{address: 'nowhere:99999'}]\n")
    result = _pkiss("check", "-c", str(bad))
    assert result.returncode == 1
    assert "peers.pbx.hosts[0].address" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_bad_config_with_its_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sbc:\n  listen: [udp:127.0.0.1:notaport]\n")
    result = _pkiss("run", "-c", str(bad))
    assert result.returncode == 1
    assert "sbc.listen[0]" in result.stderr


def _wait_for(node: Pkiss, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in node.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{node.log()}"
        time.sleep(0.05)


@pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)")
def test_sighup_reloads_a_valid_config_and_refuses_an_invalid_one(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    net = Net(sipp_factory, sbc_factory)
    new_did = "+449990001"
    pbx = net.pbx("uas_basic", calls=1)
    before = net.operator("uac_basic", calls=1, service=new_did, extra_args=["-nr"])
    assert before.wait() != 0  # not a DID yet: 404

    config = yaml.safe_load(net.sbc.path.read_text())
    config["peers"]["pbx"]["dids"].append(new_did)
    net.sbc.path.write_text(yaml.safe_dump(config))
    net.sbc.signal(signal.SIGHUP)
    _wait_for(net.sbc, "config reloaded")
    operator = net.operator("uac_basic", calls=1, service=new_did, caller=CALLER)
    operator.check()
    pbx.check()

    net.sbc.path.write_text("peers: {pbx: {role: nothing}}\n")
    net.sbc.signal(signal.SIGHUP)
    _wait_for(net.sbc, "reload refused")
    assert "peers.pbx.role" in net.sbc.log()
    pbx = net.pbx("uas_basic", calls=1)
    operator = net.operator("uac_basic", calls=1, service=new_did)
    operator.check()
    pbx.check()
