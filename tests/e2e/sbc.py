"""Start a real pkiss node for end-to-end tests: a config file, a process, stopped by PID."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


class Pkiss:
    """A pkiss process running ``config`` (a dict written as YAML)."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.path = workdir / "pkiss.yaml"
        self.log_path = workdir / "pkiss.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 10.0) -> Pkiss:
        # every node has its admin API; tests that do not look at it still need a free port
        admin = self.config.setdefault("admin", {})
        admin.setdefault("listen", f"127.0.0.1:{free_port()}")
        self.path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        log = self._log = self.log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pkiss", "run", "-c", str(self.path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pkiss exited {self.proc.returncode}:\n{self.log()}")
            if " ready" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pkiss not ready in {timeout}s:\n{self.log()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One ``pkiss`` command, as a user types it, aimed at this node by its config file."""
        return subprocess.run([sys.executable, "-m", "pkiss", *args, "-c", str(self.path)],
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    def cli_json(self, *args: str) -> Any:
        """The JSON a ``pkiss ... --json`` command prints; the command must succeed."""
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode


def basic_config(
    sbc_port: int,
    carrier: str = "127.0.0.2",
    carrier_port: int = 5060,
    pbx: str = "127.0.0.3",
    pbx_port: int = 5060,
    pbx_transport: str = "udp",
    dids: tuple[str, ...] = ("+331*",),
) -> dict[str, Any]:
    """One carrier, one PBX, the SBC on 127.0.0.1: the shape of most end-to-end tests."""
    return {
        "sbc": {"listen": [f"udp:127.0.0.1:{sbc_port}", f"tcp:127.0.0.1:{sbc_port}"]},
        "media": {"mode": "bypass"},
        "peers": {
            "operator": {
                "role": "carrier",
                "hosts": [{"address": f"{carrier}:{carrier_port}"}],
                "match": {"source": [carrier]},
                # SIPp UAS peers without -aa count an OPTIONS probe as a failed call:
                # health checks have tests of their own (test_failover.py)
                "health": False,
            },
            "pbx": {
                "role": "pbx",
                "hosts": [{"address": f"{pbx}:{pbx_port}", "transport": pbx_transport}],
                "match": {"source": [pbx]},
                "health": False,
                "dids": list(dids),
            },
        },
        "routes": [{"prefix": "", "via": ["operator"]}],
        "logging": {"level": "info"},
    }


def descriptors(node: Pkiss) -> int:
    """Descriptors the node's process holds now (``/proc/<pid>/fd``)."""
    assert node.proc is not None
    return len(os.listdir(f"/proc/{node.proc.pid}/fd"))


def rss_bytes(node: Pkiss) -> int:
    """The node's resident memory now (``VmRSS`` of ``/proc/<pid>/status``), in bytes."""
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/<pid>/status")


def metric(node: Pkiss, name: str, **labels: str) -> float:
    """One value of the node's ``/metrics`` (0 when the series is absent)."""
    url = f"http://{node.config['admin']['listen']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{want}}}" if want else name
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0
