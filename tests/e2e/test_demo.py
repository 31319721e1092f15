"""``pkiss demo`` as a newcomer runs it: one command starts a node, an operator and two PBXs
(SIPp, on loopback), calls with media flow and show on the dashboard, the calls move to the
secondary PBX when the primary stops answering, and Ctrl-C stops every process the demo
started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def _lines_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """The demo's output up to the line holding ``marker``."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in the demo's output: {lines}")


def _get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return bytes(response.read())


def _metric(base: str, token: str, name: str) -> float:
    text = _get(base + "/metrics", token).decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_the_demo_places_calls_with_media_fails_over_and_stops_everything_on_ctrl_c() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "pkiss", "demo", "--rate", "4", "--duration", "90"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        banner = "\n".join(_lines_until(demo, "Ctrl-C stops everything", 30))
        found = re.search(r"dashboard\s+(http://127\.0\.0\.1:\d+)/\s+\(API token: (\S+)\)", banner)
        assert found, banner
        base, token = found.group(1), found.group(2)
        workdir = re.search(r"workdir\s+(\S+)", banner)
        primary = re.search(r"kill -STOP (\d+)", banner)
        assert workdir and primary, banner

        # calls are answered and their media relayed
        answered = 'pkiss_calls_total{outcome="answered"}'
        assert _wait(lambda: _metric(base, token, answered) >= 8, 30), banner
        assert _metric(base, token, "pkiss_media_packets_total") > 0
        page = _get(base + "/", token).decode()
        assert "<html" in page.lower()
        calls = json.loads(_get(base + "/api/calls", token))
        assert calls and {c["callee_peer"] for c in calls} == {"pbx"}, calls

        # the primary stops answering: it goes down, and calls keep being answered
        def primary_state() -> Any:
            peers = json.loads(_get(base + "/api/peers", token))
            pbx = next(p for p in peers if p["name"] == "pbx")
            return pbx["hosts"][0]["state"]

        os.kill(int(primary.group(1)), signal.SIGSTOP)
        assert _wait(lambda: primary_state() == "down", 20), primary_state()
        before = _metric(base, token, answered)
        assert _wait(lambda: _metric(base, token, answered) >= before + 8, 30)

        # Ctrl-C: everything stops, by PID
        os.killpg(demo.pid, signal.SIGINT)
        rest = demo.communicate(timeout=30)[0]
        assert demo.returncode == 0, rest
        stopped = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", rest)]
        assert len(stopped) == 4, rest  # the node, two PBXs, the operator
        assert not [pid for pid in stopped if _alive(pid)], rest
        records = Path(workdir.group(1)) / "cdr.sqlite"
        assert records.exists() and records.stat().st_size > 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=10)
