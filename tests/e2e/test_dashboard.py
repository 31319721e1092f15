"""The dashboard in a real headless Chromium: the page the admin API serves shows the node's
peers, a call in progress and a ban, read through the same API as the commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (package chromium)"),
]

OPERATOR, PBX, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.6"


def rendered(url: str) -> str:
    """The page's DOM once its scripts have run, as headless Chromium builds it."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="pkiss-chromium-") as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=4000",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_dashboard_shows_peers_a_call_in_progress_and_a_ban(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    config: dict[str, Any] = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port)
    config["admin"] = {"listen": f"127.0.0.1:{free_port()}", "token": "t0ken"}
    config["security"] = {"unknown_sources": "reject", "never_ban": [],
                          "flood": {"window": 2, "max": 5, "ban": 600}}  # fmt: skip
    sbc_factory(config)
    base = f"http://{config['admin']['listen']}"
    sipp_factory("uac_options", local_ip=STRANGER, remote=("127.0.0.1", sbc_port), calls=10,
                 rate=100, timeout=3).start().wait(timeout=8)  # fmt: skip
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    uac = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                       remote=("127.0.0.1", sbc_port), service="+33123456789",
                       caller="+33987654321", calls=1, pause_ms=8000).start()  # fmt: skip
    deadline = time.monotonic() + 5
    while True:
        with urllib.request.urlopen(base + "/api/calls", timeout=5) as response:
            if json.loads(response.read()):
                break
        assert time.monotonic() < deadline, "the call did not start"
        time.sleep(0.1)
    dom = rendered(base + "/")
    assert "SBC dashboard" in dom
    assert "updated " in dom, dom[-3000:]  # the script ran and read the API
    peers = dom.split('id="peers"', 1)[1].split("</table>", 1)[0]
    assert "operator" in peers and "pbx" in peers and "127.0.0.3:" in peers
    calls = dom.split('id="calls"', 1)[1].split("</table>", 1)[0]
    assert "+33987654321" in calls and "+33123456789" in calls and "answered" in calls
    bans = dom.split('id="bans"', 1)[1].split("</table>", 1)[0]
    assert STRANGER in bans and "Unban" in bans
    uac.check(timeout=15)
    pbx.check(timeout=5)


def test_pages_carry_no_software_name_and_forbid_framing(sbc_factory: Callable[..., Pkiss]) -> None:
    config: dict[str, Any] = basic_config(free_port())
    config["admin"] = {"listen": f"127.0.0.1:{free_port()}"}
    sbc_factory(config)
    with urllib.request.urlopen(f"http://{config['admin']['listen']}/", timeout=5) as response:
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers.get("Server") is None
        page = response.read().decode()
    assert "pkiss" not in page.lower()
