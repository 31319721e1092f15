"""``pkiss demo``: a node and its neighbours on this machine's loopback, for a newcomer to
watch. An operator (SIPp, 127.0.0.2) calls a PBX with two hosts, a primary (127.0.0.3) and a
secondary (127.0.0.4), through a node on 127.0.0.1, a few calls a second, each with 8 s of
G.711 relayed by the node; the dashboard shows them. Stop the primary's health (or drain it)
and the calls move to the secondary. Ctrl-C stops everything the demo started, by PID.

Everything lives in a fresh directory (its config, CDRs and logs), kept at the end for a look.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import yaml

__all__ = ["NUMBER", "run_demo"]

SBC, OPERATOR, PRIMARY, SECONDARY = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
NUMBER = "+33123456789"
"""What the operator calls: a number of the PBX's."""
RECORDING = Path("/usr/share/sip-tester/g711a.pcap")
"""The G.711 recording SIPp ships, sent by the operator on every call."""
READY_TIMEOUT = 20.0
"""Seconds the node has to answer on its admin API."""


def _free_port(host: str) -> int:
    """A port free for UDP and TCP on ``host`` (a loopback address)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port on {host}")


def demo_config(workdir: Path, sip: int, admin: int, token: str,
                hosts: dict[str, int]) -> dict[str, Any]:  # fmt: skip
    """The node's config: one carrier, one PBX of two hosts probed every 2 s, media relayed."""
    return {
        "sbc": {"listen": [f"udp:{SBC}:{sip}"]},
        "media": {"mode": "relay", "ports": "31000-31999", "timeout": 30},
        "peers": {
            "operator": {
                "role": "carrier",
                "hosts": [f"{OPERATOR}:{hosts['operator']}"],
                "health": False,
            },
            "pbx": {
                "role": "pbx",
                "hosts": [
                    {"address": f"{PRIMARY}:{hosts['primary']}", "priority": 1},
                    {"address": f"{SECONDARY}:{hosts['secondary']}", "priority": 2},
                ],
                "strategy": "failover",
                "dids": ["+33123*"],
                "health": {"interval": 2, "timeout": 1, "down_after": 2, "up_after": 2},
            },
        },
        "routes": [{"prefix": "", "via": ["operator"]}],
        "admin": {"listen": f"{SBC}:{admin}", "token": token},
        "storage": {"cdr": f"sqlite:///{workdir / 'cdr.sqlite'}"},
        "logging": {"level": "info"},
    }


class _Children:
    """What the demo started, stopped in the reverse order, by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._logs: list[TextIO] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        # a session of its own: the terminal's Ctrl-C reaches the demo, which stops them in order
        proc = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> list[str]:
        stopped = []
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            stopped.append(f"{name} (pid {proc.pid})")
        for log in self._logs:
            log.close()
        return stopped


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.loads(response.read())


def _wait_ready(node: subprocess.Popen[bytes], url: str, token: str) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if node.poll() is not None:
            return False
        try:
            _get(url + "/api/status", token)
            return True
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.2)
    return False


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_demo(rate: float = 2.0, duration: float = 900.0, out: TextIO = sys.stdout) -> int:
    """Start it all, print where to look, wait for Ctrl-C (or ``duration`` seconds of calls),
    stop it all. Exit status 0, or 1 when something could not start."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    sipp = shutil.which("sipp")
    if sipp is None or not RECORDING.exists():
        say("pkiss demo needs SIPp (Debian package sip-tester): run `make deps` first")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="pkiss-demo-"))
    hosts = {"operator": _free_port(OPERATOR), "primary": _free_port(PRIMARY),
             "secondary": _free_port(SECONDARY)}  # fmt: skip
    sip, admin = _free_port(SBC), _free_port(SBC)
    token = secrets.token_urlsafe(12)
    config = workdir / "pkiss.yaml"
    config.write_text(yaml.safe_dump(demo_config(workdir, sip, admin, token, hosts),
                                     sort_keys=False))  # fmt: skip
    scenarios = resources.files("pkiss.demo") / "scenarios"
    children = _Children(workdir)
    url = f"http://{SBC}:{admin}"
    code = 0
    with _stopped_by_signals():
        try:
            node = children.start("node", [sys.executable, "-m", "pkiss", "run", "-c", str(config)])
            if not _wait_ready(node, url, token):
                say(f"the node did not start: see {workdir / 'node.log'}")
                return 1
            for name, ip in (("primary", PRIMARY), ("secondary", SECONDARY)):
                children.start(name, [
                    sipp, "-sf", str(scenarios / "pbx.xml"), "-i", ip, "-p", str(hosts[name]),
                    "-mp", str(_free_port(ip)), "-rtp_echo", "-aa", "-nostdin",
                    "-timeout", str(int(duration) + 120), "-timeout_error",
                ])  # fmt: skip
            calls = max(1, int(rate * duration))
            operator = children.start("operator", [
                sipp, "-sf", str(scenarios / "caller.xml"), "-i", OPERATOR,
                "-p", str(hosts["operator"]), "-mp", str(_free_port(OPERATOR)),
                "-s", NUMBER, "-r", f"{rate:g}", "-m", str(calls), "-nostdin",
                "-timeout", str(int(duration) + 60), "-timeout_error", f"{SBC}:{sip}",
            ])  # fmt: skip
            say(f"pkiss demo: {rate:g} calls/s with media, operator {OPERATOR} -> node {SBC}:{sip} "
                f"-> PBX primary {PRIMARY}, secondary {SECONDARY}")  # fmt: skip
            say(f"  dashboard  {url}/   (API token: {token})")
            say(f"  calls      .venv/bin/pkiss calls -c {config}")
            say(f"  records    .venv/bin/pkiss cdr -c {config}")
            say(f"  workdir    {workdir}   (config, CDRs, logs)")
            say(
                f"  failover   kill -STOP {children.procs[1][1].pid}  (the primary stops "
                f"answering: calls move to the secondary; kill -CONT to bring it back)"
            )
            say("Ctrl-C stops everything.")
            while operator.poll() is None and node.poll() is None:
                time.sleep(0.5)
            if node.poll() is not None:
                say(f"the node stopped: see {workdir / 'node.log'}")
                code = 1
        except KeyboardInterrupt:
            pass
        finally:
            for _, proc in children.procs:  # a stopped (SIGSTOP) PBX must hear SIGTERM
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
            stopped = children.stop_all()
            say(f"stopped: {', '.join(stopped)}; logs and records kept in {workdir}")
    return code
