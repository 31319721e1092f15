"""A small harness around SIPp for pkiss end-to-end tests.

Every peer is a real ``sipp`` process on its own loopback address (operator 127.0.0.2,
PBX 127.0.0.3, ...).  Typical use::

    uas = Sipp("uas_basic", local_ip="127.0.0.3", local_port=free_port("127.0.0.3"),
               calls=5, workdir=tmp_path).start()          # returns once it listens
    uac = Sipp("uac_basic", local_ip="127.0.0.2", remote=("127.0.0.1", sbc_port),
               service="4930123456", caller="0891234567", calls=5, workdir=tmp_path).start()
    uac.check()                 # exit code 0, else AssertionError with the logs' tails
    uas.check()
    assert "127.0.0.2" not in uas.messages()     # leak search

``Sipp`` never touches any process but its own: it signals the PID it started.

SIPp 3.6.1 quirks found while writing the scenarios (see also the XML headers):

* Exit codes: 0 every call succeeded; 1 at least one call failed, *or* the scenario
  did not load (unknown keyword, bad XML); 97 ended by SIGTERM; 99 ended with no call
  processed; 255 fatal error, including ``-timeout`` reached with ``-timeout_error``;
  254 could not bind its socket (port taken).  ``sipp -sd NAME`` also exits 99.
* ``-timeout`` WITHOUT ``-timeout_error`` only starts a graceful quit, which waits for
  the calls in progress: a call stuck waiting (say for a 200 that never comes, no
  recv timeout) keeps SIPp alive for ever.  Always pass both (this harness does).
* SIGUSR1 = graceful quit: no new calls, exit once the calls in progress end (exit
  code from the calls so far, screen file written).  Calls that never end keep it
  alive: a stuck call, and every OPTIONS that ``-aa`` answered out of dialog (they stay
  "current calls" for ever; repeating SIGUSR1 does not help).  SIGTERM ends SIPp at
  once and still writes the final stats line (exit 0, or 97 with a real call in
  progress); no screen file then.  stop() does SIGUSR1, SIGTERM, SIGKILL.  The message
  log is flushed as it goes: it can be read while SIPp runs and after any of these.
* ``-aa`` makes each out-of-dialog OPTIONS a "call" that counts against ``-m``
  (IncomingCall(C), AutoAnswered(C); neither successful nor failed): a UAS that gets
  health checks must run without ``-m`` (calls=None) and be stopped.
* ``-key NAME VALUE`` fills ``[NAME]`` in message text only (not in XML attributes).
  A ``[NAME]`` with no ``-key`` makes the scenario fail to load ("Unsupported keyword",
  exit 1), so the UAC scenarios' ``[caller]`` is mandatory; this harness always passes
  ``-key caller``.  Extra keys a scenario does not use are harmless.
* ``[last_Header:value]`` does not exist in 3.6.1 (it expands to nothing); ``[last_To:]``
  always includes the header name.  To reuse a header *value* (e.g. From of the
  INVITE as To of a BYE we send) capture it: ``<ereg regexp="[^[:space:]].*"
  search_in="hdr" header="From:" assign_to="x"/>`` (``search_in="hdr"`` returns the
  value with its leading blank).  POSIX brackets: ``[^ \\t]`` would also exclude ``\\``
  and ``t``; use ``[:space:]``.
* A variable that is assigned but never used is a load error ("Variable $x is
  referenced 1 times!"): add ``<Reference variables="x"/>`` for check-only eregs.
* A failed ``check_it`` ereg marks the call failed (FailedRegexpDoesntMatch(C),
  FailedCall(C), exit 1) but the scenario plays on to its end, so the other side may
  well succeed: always check both sides' exit codes.
* POSIX regexps: ``.`` matches newlines too and ``[^\r\n]`` means "neither \\, r nor n";
  to stay on one line use ``[^[:cntrl:]]*``.
* ``search_in="body"`` works in 3.6.1 (the 183-with-SDP check uses it).
* ``start_txn`` on an INVITE requires ``ack_txn`` on an ACK ("INVITE transaction
  without an ACK"); ``response_txn`` matches on the Via branch only, so a CANCEL
  (same branch as its INVITE) cannot be told apart from the INVITE by transaction.
  The scenarios match by order instead: SIPp accepts a response to any method sent
  so far in the call, the first matching ``<recv>`` in order wins.
* The peer's tag (``[peer_tag_param]``) is learnt from the To tag of *responses* only;
  a UAS that sends requests (BYE, re-INVITE) must build From/To from captured INVITE
  headers.  ``[next_url]``/``[routes]`` need ``rrs="true"`` on the INVITE (UAS) or on
  the 18x/2xx (UAC); an empty ``[routes]`` line is dropped.
* ``[branch]`` is made of pid, call number and message index: a new branch per
  ``<send>``.  CANCEL and the ACK for a non-2xx need the INVITE's branch: the
  scenarios write the INVITE branch out (``z9hG4bK-[pid]-[call_number]-inv``).
* ``[len]`` is space-padded (``Content-Length:   216``); the default Call-ID is
  ``<n>-<pid>@<local_ip>``, so it carries the peer's IP (a leak to look for).
* SIPp binds media ports (default 6000 and 6002) on the local IP even without RTP
  and moves on by +2 when they are taken, so several SIPps on one IP coexist.
* With ``-t t1`` SIPp listens on ``-p`` and also connects from that same port
  (SO_REUSEADDR): Via/Contact port = the connection's source port.
* ``-d MS`` is the length of every ``<pause/>`` without ``milliseconds``: the
  scenarios use it for hold time / ring time (this harness passes 200 by default).
* ``-aa`` answers INFO, NOTIFY, OPTIONS and UPDATE with 200 only when they do not
  match the scenario's next step: an OPTIONS health check on a uas_*.xml works.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp")

TRANSPORTS = ("u1", "t1")

# Ports handed out by free_port() in this process, never handed out twice.
_issued_ports: set[tuple[str, int]] = set()


class SippError(AssertionError):
    """A SIPp run went wrong: start-up failure, timeout or unexpected exit code."""


def sipp_available() -> bool:
    return SIPP is not None


def free_port(ip: str = "127.0.0.1", *, udp: bool = True, tcp: bool = True) -> int:
    """Return a port free for UDP and TCP on ``ip`` (a loopback address).

    Nothing stays bound: there is a small race with other programs, but ports are
    never handed out twice by this process.
    """
    if not ip.startswith("127."):
        raise ValueError(f"e2e traffic stays on 127.0.0.0/8, not {ip}")
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
            port = int(probe.getsockname()[1])
            if (ip, port) in _issued_ports:
                continue
            if tcp and not _can_bind(ip, port, socket.SOCK_STREAM):
                continue
        if udp and not _can_bind(ip, port, socket.SOCK_DGRAM):
            continue
        _issued_ports.add((ip, port))
        return port
    raise RuntimeError(f"no free UDP+TCP port on {ip}")


def _can_bind(ip: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _bound_by(pid: int, ip: str, port: int, proto: str) -> bool:
    """True when process ``pid`` owns a socket bound to ip:port (TCP: listening).

    Reads /proc/net/{udp,tcp} and /proc/PID/fd: another process holding the same
    address (say a stale SIPp) does not count.
    """
    want = "{:08X}:{:04X}".format(int.from_bytes(socket.inet_aton(ip), "little"), port)
    inodes = set()
    try:
        with open(f"/proc/net/{proto}") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[1] == want and (proto == "udp" or fields[3] == "0A"):
                    inodes.add(f"socket:[{fields[9]}]")  # 0A = LISTEN
        if not inodes:
            return False
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(none)"
    text = data[-limit:].decode("utf-8", "replace")
    return ("...\n" if len(data) > limit else "") + text


class Sipp:
    """One SIPp process playing one scenario.

    scenario      name in tests/e2e/scenarios ("uac_basic" or "uac_basic.xml") or a path
    local_ip      -i, a 127.x.y.z address of its own
    local_port    -p; default: a free UDP+TCP port on local_ip
    remote        "ip:port" or (ip, port) for a UAC; None for a UAS
    transport     "u1" (UDP) or "t1" (TCP, one connection)
    service       -s: the called number ([service]); None leaves SIPp's default
    caller        -key caller: the From/Contact user of the UAC scenarios
    calls         -m: stop after that many calls (None: until stopped / timeout)
    rate          -r: calls per second (SIPp's default is 10)
    pause_ms      -d: length of every <pause/> (hold time before BYE, ring time...)
    timeout       -timeout (seconds, with -timeout_error): SIPp's own hard bound
    keys          more -key NAME VALUE pairs
    auto_answer   -aa: answer out-of-scenario OPTIONS/INFO/UPDATE/NOTIFY with 200
    media_port    -mp (SIPp picks 6000+ by itself when omitted)
    extra_args    anything else, appended last (later options win in SIPp)
    workdir       where SIPp runs and writes its files; default: a new temp dir
    name          file-name prefix for the logs; default: scenario name + counter
    """

    _counter = 0

    def __init__(
        self,
        scenario: str | os.PathLike[str],
        *,
        local_ip: str,
        local_port: int | None = None,
        remote: str | tuple[str, int] | None = None,
        transport: str = "u1",
        service: str | None = None,
        caller: str = "1000",
        calls: int | None = 1,
        rate: float | None = None,
        pause_ms: int | None = 200,
        timeout: float = 20,
        keys: Mapping[str, str] | None = None,
        auto_answer: bool = False,
        media_port: int | None = None,
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        if not (local_ip.startswith("127.") or local_ip == "::1"):
            raise ValueError(f"e2e traffic stays on 127.0.0.0/8, not {local_ip}")
        self.scenario = self._resolve(scenario)
        self.local_ip = local_ip
        self.local_port = local_port if local_port is not None else free_port(local_ip)
        if isinstance(remote, tuple):
            remote = f"{remote[0]}:{remote[1]}"
        if remote is not None and not remote.startswith(("127.", "[::1]")):
            raise ValueError(f"e2e traffic stays on 127.0.0.0/8, not {remote}")
        self.remote = remote
        self.transport = transport
        self.timeout = max(1, math.ceil(timeout))  # SIPp takes whole seconds
        Sipp._counter += 1
        self.name = name or f"{self.scenario.stem}-{Sipp._counter}"
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp("-sipp"))
        self.workdir.mkdir(parents=True, exist_ok=True)

        self.message_file = self.workdir / f"{self.name}.messages.log"
        self.stat_file = self.workdir / f"{self.name}.stat.csv"
        self.error_file = self.workdir / f"{self.name}.errors.log"
        self.screen_file = self.workdir / f"{self.name}.screen.log"
        self.stdout_file = self.workdir / f"{self.name}.stdout"
        self.stderr_file = self.workdir / f"{self.name}.stderr"

        args: list[str] = [SIPP or "sipp"]
        if remote is not None:
            args.append(remote)
        args += ["-sf", str(self.scenario)]
        args += ["-i", local_ip, "-p", str(self.local_port), "-t", transport]
        if service is not None:
            args += ["-s", service]
        args += ["-key", "caller", caller]
        for key, value in (keys or {}).items():
            args += ["-key", key, str(value)]
        if calls is not None:
            args += ["-m", str(calls)]
        if rate is not None:
            args += ["-r", f"{rate:g}"]
        if pause_ms is not None:
            args += ["-d", str(pause_ms)]
        if auto_answer:
            args.append("-aa")
        if media_port is not None:
            args += ["-mp", str(media_port)]
        args += ["-nostdin", "-timeout", f"{self.timeout}s", "-timeout_error"]
        args += ["-trace_msg", "-message_file", str(self.message_file)]
        args += ["-trace_stat", "-stf", str(self.stat_file), "-fd", "1"]
        args += ["-trace_err", "-error_file", str(self.error_file)]
        args += ["-trace_screen", "-screen_file", str(self.screen_file)]
        args += list(extra_args)
        self.args = args

        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._outs: list[IO[bytes]] = []

    @staticmethod
    def _resolve(scenario: str | os.PathLike[str]) -> Path:
        path = Path(scenario)
        if path.is_file():
            return path.resolve()
        name = path.name if path.suffix == ".xml" else f"{path.name}.xml"
        candidate = SCENARIOS / name
        if not candidate.is_file():
            raise FileNotFoundError(f"no SIPp scenario {scenario!r} (looked in {SCENARIOS})")
        return candidate

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else f"pid {self.proc.pid}"
        if self.returncode is not None:
            state += f", exit {self.returncode}"
        return f"<Sipp {self.name} {self.local_ip}:{self.local_port}/{self.transport} {state}>"

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_uas(self) -> bool:
        return self.remote is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.local_ip, self.local_port)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, ready_timeout: float = 5.0) -> Sipp:
        """Start SIPp; for a UAS, return only once its SIP socket is bound/listening."""
        if SIPP is None:
            raise SippError("sipp is not on PATH (apt-get install sip-tester)")
        if self.proc is not None:
            raise SippError(f"{self!r} already started")
        out = open(self.stdout_file, "wb")  # noqa: SIM115 - closed in _reap()
        err = open(self.stderr_file, "wb")  # noqa: SIM115 - closed in _reap()
        self._outs = [out, err]
        try:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # our signals only ever go to this PID
            )
        except BaseException:
            self._close_outs()
            raise
        if self.is_uas:
            self._wait_listening(ready_timeout)
        return self

    def _wait_listening(self, ready_timeout: float) -> None:
        proto = "udp" if self.transport == "u1" else "tcp"
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self._reap()
                raise SippError(f"{self!r} exited while starting\n{self.diagnostics()}")
            if self.proc is not None and _bound_by(
                self.proc.pid, self.local_ip, self.local_port, proto
            ):
                return
            time.sleep(0.01)
        self.stop()
        raise SippError(
            f"{self!r} not listening on {self.local_ip}:{self.local_port}/{proto} "
            f"after {ready_timeout}s\n{self.diagnostics()}"
        )

    def wait(self, timeout: float | None = None) -> int:
        """Wait for SIPp to exit and return its exit code.

        Default bound: SIPp's own -timeout plus 5 s.  When it is exceeded the process
        is killed (by PID) and SippError is raised.
        """
        if self.proc is None:
            raise SippError(f"{self!r} was never started")
        if self.returncode is not None:
            return self.returncode
        limit = self.timeout + 5 if timeout is None else timeout
        try:
            self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.stop()
            raise SippError(
                f"{self!r} still running after {limit}s: killed\n{self.diagnostics()}"
            ) from None
        return self._reap()

    def check(self, timeout: float | None = None, expect: int = 0) -> dict[str, Any]:
        """wait(), assert the exit code (0: every call succeeded), return stats()."""
        code = self.wait(timeout)
        if code != expect:
            raise SippError(f"{self!r}: exit code {code}, expected {expect}\n{self.diagnostics()}")
        return self.stats()

    def stop(self, grace: float = 1.0) -> int | None:
        """End the process (if still running) by its PID, and reap it. Idempotent.

        SIGUSR1 (graceful: no new calls, exit once the current ones end), after
        ``grace`` seconds SIGTERM, then SIGKILL.  Returns the exit code (None if never
        started).  Safe to call from finalizers, any number of times.
        """
        if self.proc is None:
            return None
        for sig, delay in ((signal.SIGUSR1, grace), (signal.SIGTERM, 3.0)):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
                self.proc.wait(delay)
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        return self._reap()

    def _reap(self) -> int:
        assert self.proc is not None
        if self.returncode is None:
            self.returncode = self.proc.wait()
        self._close_outs()
        return self.returncode

    def _close_outs(self) -> None:
        for f in self._outs:
            f.close()
        self._outs = []

    def __enter__(self) -> Sipp:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ results
    def stats(self) -> dict[str, Any]:
        """The last line of the -trace_stat CSV as {column: value}.

        Counters become ints (e.g. stats()["SuccessfulCall(C)"], ["FailedCall(C)"]),
        rates floats, dates/durations stay strings.  {} if nothing was written yet.
        """
        try:
            lines = [ln for ln in self.stat_file.read_text().splitlines() if ln.strip()]
        except OSError:
            return {}
        if len(lines) < 2:
            return {}
        header = lines[0].rstrip(";").split(";")
        values = lines[-1].rstrip(";").split(";")
        return {k: _number(v) for k, v in zip(header, values, strict=False)}

    def messages(self) -> str:
        """Every SIP message SIPp sent or received (-trace_msg), for leak searches."""
        return _read(self.message_file)

    def errors(self) -> str:
        return _read(self.error_file)

    def stdout(self) -> str:
        return _read(self.stdout_file)

    def stderr(self) -> str:
        return _read(self.stderr_file)

    def screen(self) -> str:
        """The final statistics screen (-trace_screen), written when SIPp exits."""
        return _read(self.screen_file)

    def diagnostics(self) -> str:
        """Command line, exit code and the tails of SIPp's logs, for failure messages."""
        parts = [
            f"command: {' '.join(self.args)}",
            f"workdir: {self.workdir}",
            f"exit code: {self.returncode}",
            f"stderr:\n{_tail(self.stderr_file)}",
            f"errors:\n{_tail(self.error_file)}",
            f"messages (tail):\n{_tail(self.message_file)}",
        ]
        return "\n".join(parts)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
