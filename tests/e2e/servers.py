"""Real servers the end-to-end tests need, started from Debian's packages in a temporary
directory on a free loopback port, and stopped by PID: PostgreSQL, Redis and rtpengine."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sbc import free_port

__all__ = ["Postgres", "Redis", "Rtpengine", "postgres_bin"]


def terminate(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop a server by its PID: ``sig``, then SIGKILL if it is still there after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian: /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A throw-away cluster: ``initdb`` with trust authentication for user ``pkiss``."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        assert binaries is not None, "PostgreSQL server programs not found"
        self.bin = binaries
        # its own folder in /tmp: pytest's are private to the user running the tests
        self.workdir = Path(tempfile.mkdtemp(prefix="pkiss-pg-"))
        self.dir = self.workdir / "pgdata"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.log_path = self.workdir / "postgres.log"
        # the server refuses to run as root: as root, run it as the postgres user (directly,
        # not through runuser, so that its PID is the server's and signals reach it)
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            self._as = {"user": "postgres", "group": "postgres"}
            shutil.chown(self.workdir, "postgres", "postgres")
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.dir), "-U", "pkiss",
                        "-A", "trust", "--no-sync"], check=True, capture_output=True,
                       timeout=60, **self._as)  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://pkiss@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 15.0) -> Postgres:
        log = self._log = self.log_path.open("ab")  # closed by stop()
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.dir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "fsync=off"],
            stdout=log, stderr=subprocess.STDOUT, **self._as,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port)], capture_output=True)  # fmt: skip
            if ready.returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start:\n{self.log_path.read_text()[-2000:]}")

    def query(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return list(conn.execute(sql).fetchall())

    def stop(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        terminate(self.proc, signal.SIGINT)  # PostgreSQL's fast shutdown

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Redis:
    """A redis-server on a free loopback port, no persistence, in its own folder."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="pkiss-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> Redis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                  capture_output=True, text=True)  # fmt: skip
            if ping.stdout.strip() == "PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        terminate(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Rtpengine:
    """rtpengine in user-space forwarding mode (no kernel module) on 127.0.0.1, its ng control
    socket and its media ports given, logging to a file the tests read."""

    def __init__(self, ports: tuple[int, int] = (46000, 46999)) -> None:
        self.ng_port = free_port()
        self.ports = ports
        self.workdir = Path(tempfile.mkdtemp(prefix="pkiss-rtpengine-"))
        self.log_path = self.workdir / "rtpengine.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 10.0) -> Rtpengine:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--foreground", "--table=-1",
             "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{self.ng_port}",
             f"--listen-cli=127.0.0.1:{free_port()}", f"--port-min={self.ports[0]}",
             f"--port-max={self.ports[1]}", "--log-stderr", "--log-level=6"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Startup complete" in self.log() or ("ng" in self.log() and self._ping()):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"rtpengine did not start:\n{self.log()[-2000:]}")

    def _ping(self) -> bool:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(b"c0ffee d7:command4:pinge", ("127.0.0.1", self.ng_port))
                return b"pong" in s.recv(200)
            except OSError:
                return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        terminate(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.workdir, ignore_errors=True)
