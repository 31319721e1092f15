"""Real servers the end-to-end tests need, started from Debian's packages in a temporary
directory on a free loopback port, and stopped by PID: PostgreSQL and Redis."""

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

__all__ = ["Postgres", "Redis", "postgres_bin"]


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
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)
