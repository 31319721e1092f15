"""The admin API and the commands that use it, against a running node: ``pkiss status``,
``peers``, ``calls``, ``bans [--unban]``, ``reload``; the token rules; ``/metrics``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from sbc import Pkiss, basic_config, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.6"
TOKEN = "t0ken-for-tests"


def http(node: Pkiss, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{node.config['admin']['listen']}{path}",
                                     method=method)  # fmt: skip
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            kind = response.headers.get("content-type", "")
            return response.status, json.loads(body) if "json" in kind else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def node_config(**admin: Any) -> tuple[dict[str, Any], int, int]:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    config = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port)
    config["admin"] = {"listen": f"127.0.0.1:{free_port()}", **admin}
    return config, op_port, pbx_port


def test_status_peers_and_calls_during_a_call_then_metrics(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    config, op_port, pbx_port = node_config(token=TOKEN)
    sbc = sbc_factory(config)
    sbc_port = int(config["sbc"]["listen"][0].rsplit(":", 1)[1])
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    uac = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                       remote=("127.0.0.1", sbc_port), service="+33123456789",
                       caller="+33987654321", calls=1, pause_ms=4000).start()  # fmt: skip
    deadline = time.monotonic() + 3
    while "answered" not in (calls := sbc.cli("calls")).stdout:
        assert time.monotonic() < deadline, calls.stdout + calls.stderr
        time.sleep(0.1)
    assert calls.returncode == 0
    (row,) = [line for line in calls.stdout.splitlines() if "+33123456789" in line]
    assert row.split()[:5] == ["+33987654321", "+33123456789", "operator", "pbx", "answered"]
    peers = sbc.cli("peers", "--json")
    assert {p["name"]: p["calls"] for p in json.loads(peers.stdout)} == {"operator": 1, "pbx": 1}
    uac.check()
    pbx.check()
    status = sbc.cli("status")
    assert status.returncode == 0
    assert "calls now         0" in status.stdout
    assert "calls since start 1 (answered 1, failed 0" in status.stdout
    code, metrics = http(sbc, "GET", "/metrics")  # loopback: reads need no token
    assert code == 200
    assert 'pkiss_calls_total{outcome="answered"} 1.0' in metrics
    assert "pkiss_calls_in_progress 0.0" in metrics


def test_reload_command_applies_a_valid_file_and_the_node_refuses_an_invalid_one(
    sbc_factory: Callable[..., Pkiss],
) -> None:
    config, _, _ = node_config(token=TOKEN)
    sbc = sbc_factory(config)
    config["peers"]["pbx-2"] = {"role": "pbx", "hosts": ["127.0.0.4:5060"], "health": False,
                                "dids": ["+332*"]}  # fmt: skip
    sbc.path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = sbc.cli("reload")
    assert (done.returncode, done.stdout.strip()) == (0, "reloaded: 3 peers"), done.stderr
    assert "pbx-2" in sbc.cli("peers").stdout
    # a broken file: the node says why and keeps running on what it had
    broken = dict(config, peers={**config["peers"], "pbx-3": {"role": "pbx"}})
    sbc.path.write_text(yaml.safe_dump(broken, sort_keys=False))
    refused = sbc.cli("reload")
    assert refused.returncode == 1
    assert "peers.pbx-3.hosts: required" in refused.stderr  # the node's own verdict
    code, body = http(sbc, "POST", "/api/reload", TOKEN)
    assert code == 422
    assert any(e.startswith("peers.pbx-3.hosts") for e in body["errors"]), body
    assert "pbx-2" in sbc.cli("peers").stdout and "pbx-3" not in sbc.cli("peers").stdout
    assert sbc.alive()


def test_writes_need_the_token_and_reads_are_open_on_loopback(
    sbc_factory: Callable[..., Pkiss],
) -> None:
    config, _, _ = node_config(token=TOKEN)
    sbc = sbc_factory(config)
    assert http(sbc, "POST", "/api/reload")[0] == 401
    assert http(sbc, "POST", "/api/reload", "wrong")[0] == 401
    assert http(sbc, "POST", "/api/reload", TOKEN)[0] == 200
    assert http(sbc, "GET", "/api/status")[0] == 200
    assert http(sbc, "GET", "/docs")[0] == 404  # no schema or docs pages to explore


def test_without_a_token_writes_are_disabled(sbc_factory: Callable[..., Pkiss]) -> None:
    config, _, _ = node_config()
    sbc = sbc_factory(config)
    code, body = http(sbc, "POST", "/api/reload", "anything")
    assert code == 403 and "admin.token" in body["detail"]
    done = sbc.cli("reload")
    assert done.returncode == 1 and "admin.token is not set" in done.stderr


def test_bans_lists_a_flooding_stranger_and_unban_lets_it_in_again(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    config, _, _ = node_config(token=TOKEN)
    config["security"] = {"unknown_sources": "reject", "never_ban": [],
                          "flood": {"window": 2, "max": 10, "ban": 600}}  # fmt: skip
    sbc = sbc_factory(config)
    sbc_port = int(config["sbc"]["listen"][0].rsplit(":", 1)[1])
    sipp_factory("uac_options", local_ip=STRANGER, remote=("127.0.0.1", sbc_port), calls=30,
                 rate=100, timeout=4).start().wait(timeout=10)  # fmt: skip
    bans = sbc.cli("bans")
    assert bans.returncode == 0
    assert STRANGER in bans.stdout and "more than 10 messages in 2 s" in bans.stdout
    assert "1 ban(s)" in bans.stdout
    lifted = sbc.cli("bans", "--unban", STRANGER)
    assert (lifted.returncode, lifted.stdout.strip()) == (0, f"unbanned {STRANGER}")
    assert "0 ban(s)" in sbc.cli("bans").stdout
    again = sipp_factory("uac_options", local_ip=STRANGER, remote=("127.0.0.1", sbc_port),
                         calls=1, timeout=3).start()  # fmt: skip
    again.wait(timeout=6)
    assert "SIP/2.0 403" in again.messages()  # answered again (reject), no longer banned
    missing = sbc.cli("bans", "--unban", "192.0.2.1")
    assert missing.returncode == 1 and "not banned" in missing.stderr


def test_cli_says_when_no_node_answers(tmp_path: Any) -> None:
    path = tmp_path / "pkiss.yaml"
    path.write_text(f"admin: {{listen: '127.0.0.1:{free_port()}'}}\n")
    done = subprocess.run([sys.executable, "-m", "pkiss", "status", "-c", str(path)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 1
    assert "no node answers at http://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr
