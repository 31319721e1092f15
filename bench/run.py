"""pkiss benchmark: call rate held, call-setup latency and memory per call, driven by SIPp.

Run ``make bench`` (``.venv/bin/python bench/run.py``); ``--quick`` is a short smoke check.
All traffic stays on 127.0.0.0/8: the operator is a SIPp UAC on 127.0.0.2, pkiss listens on
127.0.0.1, the PBX is a SIPp UAS on 127.0.0.3 (UDP, SIPp's default buffer sizes).  The same
figures are measured for SIPp UAC -> SIPp UAS directly: the harness's own ceiling.

Every process is started fresh for each measurement (one pkiss process per rate step, per
latency run, per memory run) and stopped by its PID afterwards, also on Ctrl-C or an error.
Progress goes to stderr, the result table to stdout.  bench/README.md explains each figure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from sbc import Pkiss, basic_config  # noqa: E402
from sipp import SIPP, Sipp, free_port  # noqa: E402

SBC = "127.0.0.1"
OPERATOR = "127.0.0.2"
PBX = "127.0.0.3"
CALLED = "+33123456789"  # a DID of the PBX in basic_config
CALLER = "+33987654321"
CLK_TCK = os.sysconf("SC_CLK_TCK")

MAX_FAIL_RATIO = 0.001  # a step passes with fewer than 0.1 % failed calls...
MAX_RETRANS_RATIO = 0.01  # ...and fewer than 1 retransmission per 100 calls
MIN_OFFERED_RATIO = 0.9  # the UAC must have offered at least 90 % of the target rate
NOISY_OTHER_PCT = 15.0  # warn when other processes used more than this % of a CPU

FULL = {
    "rates": [200 * i for i in range(1, 21)],  # 200 .. 4000 calls/s, stops at the first failure
    "direct_rates": [1000, 2000, 4000, 8000, 12000, 16000],
    "duration": 10.0,
    "latency_rate": 100.0,
    "latency_duration": 20.0,
    "rss_calls": 2000,
    "rss_rate": 200.0,
    "settle": 35.0,
    "soak": 240.0,
}
QUICK = {
    "rates": [200, 400],
    "direct_rates": [1000, 2000],
    "duration": 3.0,
    "latency_rate": 100.0,
    "latency_duration": 3.0,
    "rss_calls": 300,
    "rss_rate": 200.0,
    "settle": 3.0,
    "soak": 0.0,
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc readings
def cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (None once it is gone)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()  # the command name may contain blanks
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def udp_drops(sockets: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Datagrams the kernel dropped on each of these UDP sockets (receive buffer full).

    The "drops" column of /proc/net/udp; a socket that is gone is left out.
    """
    wanted = {
        f"{int.from_bytes(socket.inet_aton(ip), 'little'):08X}:{port:04X}": name
        for name, (ip, port) in sockets.items()
    }
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            name = wanted.get(fields[1])
            if name is not None:
                found[name] = found.get(name, 0) + int(fields[-1])
    return found


def udp_rcvbuf_errors() -> int:
    """Machine-wide count of UDP datagrams dropped for a full receive buffer (/proc/net/snmp)."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [ln[1:] for ln in lines if ln and ln[0] == "Udp:"]
    return int(dict(zip(udp[0], udp[1], strict=False)).get("RcvbufErrors", 0))


def busy_ticks() -> int:
    """Ticks every CPU of the machine spent busy (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def wait_quiet(limit: float) -> float:
    """Wait up to ``limit`` s until other processes use < NOISY_OTHER_PCT of a CPU for 2 s.

    Returns the busy % of the last 2-s window (logged when the machine stays busy).
    """
    deadline = time.monotonic() + limit
    while True:
        before = busy_ticks()
        time.sleep(2.0)
        pct = 100 * (busy_ticks() - before) / CLK_TCK / 2.0
        if pct < NOISY_OTHER_PCT or time.monotonic() >= deadline:
            break
    if pct >= NOISY_OTHER_PCT:
        log(f"the machine is busy ({pct:.0f} % of a CPU used by other processes): measuring anyway")
    return pct


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (p99 of 2,000 values is the 1,980th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# --------------------------------------------------------------------------- processes
class Pinning:
    """pkiss on the first CPU, both SIPps on the last: children inherit the affinity."""

    def __init__(self, enabled: bool) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.all = set(cpus)
        self.sbc: set[int] | None = None
        self.sipp: set[int] | None = None
        if enabled and len(cpus) >= 2:
            self.sbc, self.sipp = {cpus[0]}, {cpus[-1]}

    @contextlib.contextmanager
    def on(self, cpus: set[int] | None) -> Iterator[None]:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        try:
            yield
        finally:
            if cpus is not None:
                os.sched_setaffinity(0, self.all)

    def describe(self) -> str:
        if self.sbc is None or self.sipp is None:
            return "none (every process may run on any CPU)"
        return f"pkiss on CPU {min(self.sbc)}, both SIPp processes on CPU {min(self.sipp)}"


@dataclass
class Env:
    pinning: Pinning
    quiet_wait: float
    """Seconds to wait, before each measurement, for other processes to go quiet (0: no)."""
    noisy_retries: int
    """Times a rate step that failed while other processes used the CPU is run again."""
    media: str = "bypass"
    """pkiss's media.mode: bypass (SDP untouched) or relay (SDP rewritten, ports per call)."""
    trace: bool = True
    """pkiss's admin.trace.enabled: every message of a call kept for the call trace."""


def bench_sipp(*, trace_msg: bool = False, **kwargs: Any) -> Sipp:
    """A harness Sipp without the per-message log (it costs more than the SBC at high rates)."""
    peer = Sipp(**kwargs)
    if not trace_msg:
        args, skip = [], False
        for arg in peer.args:
            if skip:
                skip = False
            elif arg == "-message_file":
                skip = True
            elif arg != "-trace_msg":
                args.append(arg)
        peer.args = args
    return peer


def stat_rows(peer: Sipp) -> list[dict[str, str]]:
    """Every row of the SIPp -trace_stat CSV (one per second with -fd 1)."""
    try:
        lines = [ln for ln in peer.stat_file.read_text().splitlines() if ln.strip()]
    except OSError:
        return []
    if len(lines) < 2:
        return []
    header = lines[0].rstrip(";").split(";")
    return [dict(zip(header, ln.rstrip(";").split(";"), strict=False)) for ln in lines[1:]]


def counter(row: dict[str, str], name: str) -> int:
    try:
        return int(row.get(name, "0"))
    except ValueError:
        return 0


def epoch(row: dict[str, str], name: str = "CurrentTime") -> float:
    """SIPp writes dates as 'YYYY-MM-DD<TAB>HH:MM:SS.us<TAB>epoch'."""
    return float(row[name].split("\t")[-1])


def answered(row: dict[str, str]) -> int:
    """Calls whose 200 to INVITE arrived (the cumulative ResponseTime1 repartition)."""
    return sum(counter(row, k) for k in row if k.startswith("ResponseTimeRepartition1_"))


def offered_rate(rows: list[dict[str, str]], calls: int) -> float | None:
    """Calls/s the UAC actually started: time to reach ``calls`` created, interpolated."""
    if not rows:
        return None
    start = epoch(rows[0], "StartTime")
    prev_t, prev_n = start, 0
    for row in rows:
        t, n = epoch(row), counter(row, "OutgoingCall(C)")
        if n >= calls:
            reach = prev_t + (calls - prev_n) / max(n - prev_n, 1) * (t - prev_t)
            return calls / max(reach - start, 1e-3)
        prev_t, prev_n = t, n
    return None


class Testbed:
    """Operator UAC -> [pkiss] -> PBX UAS, fresh processes, all stopped by PID on exit."""

    def __init__(self, mode: str, workdir: Path, env: Env) -> None:
        self.mode = mode
        self.workdir = workdir
        self.pinning = env.pinning
        self.media = env.media
        self.trace = env.trace
        self.quiet_wait = env.quiet_wait
        self.pbx_port = free_port(PBX)
        self.operator_port = free_port(OPERATOR)
        self.target = (PBX, self.pbx_port)
        self.sbc: Pkiss | None = None
        self.uas: Sipp | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Testbed:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.quiet_wait > 0:
            wait_quiet(self.quiet_wait)
        try:
            if self.mode == "pkiss":
                self._start_sbc()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()  # UAC, UAS, then pkiss: last started, first stopped

    def _start_sbc(self) -> None:
        sbc_port = free_port(SBC)
        config = basic_config(sbc_port, carrier_port=self.operator_port, pbx_port=self.pbx_port)
        for peer in config["peers"].values():
            peer["health"] = False  # no OPTIONS probes: only the calls cost CPU
        config["media"] = {"mode": self.media, "ports": "20000-59999"}
        config["admin"] = {"listen": f"127.0.0.1:{free_port(SBC)}",
                           "trace": {"enabled": self.trace}}  # fmt: skip
        sbc = Pkiss(config, self.workdir)
        self._stack.callback(sbc.stop)
        with self.pinning.on(self.pinning.sbc):
            self.sbc = sbc.start()
        self.target = (SBC, sbc_port)

    def start_uas(self, timeout: float) -> Sipp:
        uas = bench_sipp(
            scenario="uas_basic",
            local_ip=PBX,
            local_port=self.pbx_port,
            calls=None,
            pause_ms=None,
            timeout=timeout,
            workdir=self.workdir,
            name="uas",
        )
        self._stack.callback(uas.stop, 0.2)
        with self.pinning.on(self.pinning.sipp):
            self.uas = uas.start()
        return uas

    def start_uac(
        self,
        *,
        rate: float,
        calls: int,
        hold_ms: int,
        timeout: float,
        trace_msg: bool = False,
        rtt: bool = False,
    ) -> Sipp:
        # SIPp's own limit on calls in progress: far above what a passing step needs (and
        # below 20,000, where SIPp 3.6.1 starts to warn about its open-file limit).
        extra = ["-l", str(min(calls, 15000))]
        if rtt:
            extra += ["-trace_rtt", "-rtt_freq", "1"]
        uac = bench_sipp(
            scenario="uac_basic",
            local_ip=OPERATOR,
            local_port=self.operator_port,
            remote=self.target,
            service=CALLED,
            caller=CALLER,
            calls=calls,
            rate=rate,
            pause_ms=hold_ms,
            timeout=timeout,
            extra_args=extra,
            trace_msg=trace_msg,
            workdir=self.workdir,
            name="uac",
        )
        self._stack.callback(uac.stop, 0.2)
        with self.pinning.on(self.pinning.sipp):
            uac.start()
        return uac

    @property
    def sbc_pid(self) -> int | None:
        return None if self.sbc is None or self.sbc.proc is None else self.sbc.proc.pid

    @property
    def uas_pid(self) -> int | None:
        return None if self.uas is None else self.uas.pid

    @property
    def sockets(self) -> dict[str, tuple[str, int]]:
        """The SIP sockets of the set-up, by role (pkiss's only when it runs)."""
        found = {"uac": (OPERATOR, self.operator_port), "uas": (PBX, self.pbx_port)}
        if self.sbc is not None:
            found["sbc"] = self.target
        return found


@dataclass
class Sample:
    t: float
    busy: int
    cpu: dict[str, int | None]
    rss: dict[str, int | None]
    drops: dict[str, int]


def sample(pids: dict[str, int | None], sockets: dict[str, tuple[str, int]]) -> Sample:
    return Sample(
        time.monotonic(),
        busy_ticks(),
        {k: cpu_ticks(p) if p else None for k, p in pids.items()},
        {k: rss_kib(p) if p else None for k, p in pids.items()},
        udp_drops(sockets),
    )


def watch(bed: Testbed, uac: Sipp, limit: float) -> list[Sample]:
    """Sample CPU, RSS and UDP drops every 0.25 s until the UAC exits (stopped after ``limit`` s).

    The last sample is taken before the UAS and pkiss are stopped.
    """
    pids = {"sbc": bed.sbc_pid, "uac": uac.pid, "uas": bed.uas_pid, "bench": os.getpid()}
    samples = [sample(pids, bed.sockets)]
    deadline = time.monotonic() + limit
    while uac.running() and time.monotonic() < deadline:
        time.sleep(0.25)
        samples.append(sample(pids, bed.sockets))
    if uac.running():
        log(f"UAC still running after {limit:.0f} s: stopping it")
    uac.stop(0.2)
    samples.append(sample(pids, bed.sockets))
    return samples


def max_drops(samples: list[Sample]) -> dict[str, int]:
    """Per socket, the drops counted while it existed (the counter only grows)."""
    drops: dict[str, int] = {}
    for s in samples:
        for name, value in s.drops.items():
            drops[name] = max(drops.get(name, 0), value)
    return drops


def cpu_seconds(samples: list[Sample], name: str) -> float | None:
    values = [s.cpu[name] for s in samples if s.cpu.get(name) is not None]
    if len(values) < 2:
        return None
    return (values[-1] - values[0]) / CLK_TCK  # type: ignore[operator]


def other_cpu_pct(samples: list[Sample]) -> float:
    """CPU used by processes other than the measured ones (and this script), in % of one CPU."""
    if len(samples) < 2:
        return 0.0
    wall = samples[-1].t - samples[0].t
    busy = (samples[-1].busy - samples[0].busy) / CLK_TCK
    ours = sum(cpu_seconds(samples, name) or 0.0 for name in samples[0].cpu)
    return max(0.0, 100 * (busy - ours) / max(wall, 1e-3))


def peak_cpu_pct(samples: list[Sample], name: str, window: float = 1.0) -> float | None:
    """Highest CPU use of ``name`` over any ``window``-second stretch of the run."""
    points = [(s.t, s.cpu[name]) for s in samples if s.cpu.get(name) is not None]
    best: float | None = None
    j = 0
    for i, (t0, c0) in enumerate(points):
        j = max(j, i + 1)
        while j < len(points) and points[j][0] - t0 < window:
            j += 1
        if j >= len(points):
            break
        t1, c1 = points[j]
        pct = 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0)  # type: ignore[operator]
        best = pct if best is None else max(best, pct)
    return best


# --------------------------------------------------------------------------- 1. rate steps
@dataclass
class Step:
    rate: float
    calls: int
    successful: int = 0
    failed: int = 0
    unfinished: int = 0
    fail_ratio: float = 1.0
    retrans_uac: int = 0
    retrans_uas: int = 0
    retrans_ratio: float = 0.0
    offered_rate: float | None = None
    wall_s: float = 0.0
    sbc_cpu_s: float | None = None
    sbc_cpu_ms_per_call: float | None = None
    sbc_cpu_pct: float | None = None
    sbc_cpu_peak_pct: float | None = None
    sipp_cpu_pct: float | None = None
    other_cpu_pct: float = 0.0
    udp_drops: dict[str, int] = field(default_factory=dict)
    udp_rcvbuf_errors: int = 0
    attempt: int = 1
    uac_exit: int | None = None
    passed: bool = False
    reason: str = ""


def run_step(
    mode: str, rate: float, duration: float, hold_ms: int, workdir: Path, env: Env
) -> Step:
    calls = max(1, round(rate * duration))
    step = Step(rate=rate, calls=calls)
    timeout = duration + hold_ms / 1000 + 20
    with Testbed(mode, workdir, env) as bed:
        uas = bed.start_uas(timeout + 10)
        uac = bed.start_uac(rate=rate, calls=calls, hold_ms=hold_ms, timeout=timeout)
        t0 = time.monotonic()
        rcvbuf_errors = udp_rcvbuf_errors()
        samples = watch(bed, uac, timeout + 5)
        step.udp_rcvbuf_errors = udp_rcvbuf_errors() - rcvbuf_errors
        step.udp_drops = max_drops(samples)
        step.wall_s = time.monotonic() - t0
        step.uac_exit = uac.returncode
        uas.stop(0.2)
    rows = stat_rows(uac)
    last = rows[-1] if rows else {}
    uas_rows = stat_rows(uas)
    step.successful = counter(last, "SuccessfulCall(C)")
    step.failed = counter(last, "FailedCall(C)")
    step.unfinished = calls - step.successful - step.failed  # never created or still going
    step.fail_ratio = (calls - step.successful) / calls
    step.retrans_uac = counter(last, "Retransmissions(C)")
    step.retrans_uas = counter(uas_rows[-1], "Retransmissions(C)") if uas_rows else 0
    step.retrans_ratio = (step.retrans_uac + step.retrans_uas) / calls
    step.offered_rate = offered_rate(rows, calls)
    cpu = cpu_seconds(samples, "sbc")
    if cpu is not None:
        step.sbc_cpu_s = cpu
        step.sbc_cpu_ms_per_call = 1000 * cpu / calls
        step.sbc_cpu_pct = 100 * cpu / step.wall_s
        step.sbc_cpu_peak_pct = peak_cpu_pct(samples, "sbc")
    sipp_cpu = [cpu_seconds(samples, k) for k in ("uac", "uas")]
    step.sipp_cpu_pct = 100 * sum(c or 0.0 for c in sipp_cpu) / step.wall_s
    step.other_cpu_pct = other_cpu_pct(samples)
    reasons = []
    if step.fail_ratio >= MAX_FAIL_RATIO:
        reasons.append(f"{100 * step.fail_ratio:.2f} % calls not successful")
    if step.retrans_ratio >= MAX_RETRANS_RATIO:
        reasons.append(f"{100 * step.retrans_ratio:.2f} retransmissions per 100 calls")
    if step.offered_rate is None or step.offered_rate < MIN_OFFERED_RATIO * rate:
        reasons.append("SIPp UAC did not offer the rate")
    step.passed = not reasons
    step.reason = "; ".join(reasons) or "ok"
    return step


def rate_steps(
    mode: str,
    rates: Sequence[float],
    duration: float,
    hold_ms: int,
    workdir: Path,
    env: Env,
) -> list[Step]:
    steps: list[Step] = []
    for rate in rates:
        for attempt in range(env.noisy_retries + 1):
            log(f"{mode}: {rate:g} calls/s for {duration:g} s ({round(rate * duration)} calls)")
            step = run_step(
                mode, rate, duration, hold_ms, workdir / f"rate-{rate:g}-{attempt}", env
            )
            step.attempt = attempt + 1
            _log_step(mode, step)
            if step.passed or step.other_cpu_pct <= NOISY_OTHER_PCT:
                break
            if attempt < env.noisy_retries:
                log(f"{mode}: other processes used {step.other_cpu_pct:.0f} % of a CPU: retrying")
                wait_quiet(max(env.quiet_wait, 60.0))
        steps.append(step)
        if not step.passed:
            break
    return steps


def _log_step(mode: str, step: Step) -> None:
    cpu = (
        ""
        if step.sbc_cpu_ms_per_call is None
        else f", pkiss {step.sbc_cpu_pct:.0f} % CPU, {step.sbc_cpu_ms_per_call:.3f} ms/call"
    )
    log(
        f"{mode}: {step.rate:g} calls/s -> {step.successful}/{step.calls} ok, "
        f"{step.retrans_uac + step.retrans_uas} retrans, UDP drops {step.udp_drops}{cpu}, "
        f"other processes {step.other_cpu_pct:.0f} %: "
        f"{'PASS' if step.passed else 'FAIL'} ({step.reason})"
    )


def highest_held(steps: list[Step]) -> float | None:
    passed = [s.rate for s in steps if s.passed]
    return max(passed) if passed else None


# --------------------------------------------------------------------------- 2. latency
@dataclass
class Latency:
    rate: float
    calls: int
    successful: int = 0
    rtt_n: int = 0
    rtt_p50_ms: float | None = None
    rtt_p99_ms: float | None = None
    rtt_mean_ms: float | None = None
    log_n: int = 0
    log_p50_ms: float | None = None
    log_p99_ms: float | None = None
    log_p999_ms: float | None = None
    log_max_ms: float | None = None
    log_mean_ms: float | None = None
    other_cpu_pct: float = 0.0
    udp_drops: dict[str, int] = field(default_factory=dict)


_BLOCK = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(.*?)(?=^-{20,} \d|\Z)", re.M | re.S
)


def rtt_values(workdir: Path) -> list[float]:
    """Per-call ResponseTime1 (INVITE sent -> 200 received) from SIPp's -trace_rtt file."""
    values: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[2].strip() == "1":
                values.append(float(parts[1]))
    return values


def message_log_latencies(path: Path) -> list[float]:
    """INVITE first sent -> 200 to INVITE first received, per Call-ID, in ms (µs stamps)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    sent: dict[str, float] = {}
    ok: dict[str, float] = {}
    for match in _BLOCK.finditer(text):
        stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        body = match.group(2)
        direction, _, message = body.partition("\n")
        message = message.lstrip()
        call_id = re.search(r"^Call-ID:\s*(\S+)", message, re.M | re.I)
        if call_id is None:
            continue
        key = call_id.group(1)
        if "sent" in direction and message.startswith("INVITE "):
            sent.setdefault(key, stamp)
        elif "received" in direction and message.startswith("SIP/2.0 200"):
            cseq = re.search(r"^CSeq:\s*\d+\s+(\w+)", message, re.M | re.I)
            if cseq is not None and cseq.group(1).upper() == "INVITE":
                ok.setdefault(key, stamp)
    return [1000 * (ok[k] - sent[k]) for k in ok if k in sent]


def run_latency(
    mode: str, rate: float, duration: float, hold_ms: int, workdir: Path, env: Env
) -> Latency:
    calls = max(1, round(rate * duration))
    log(f"{mode}: latency at {rate:g} calls/s for {duration:g} s ({calls} calls)")
    result = Latency(rate=rate, calls=calls)
    timeout = duration + hold_ms / 1000 + 20
    with Testbed(mode, workdir, env) as bed:
        uas = bed.start_uas(timeout + 10)
        uac = bed.start_uac(
            rate=rate, calls=calls, hold_ms=hold_ms, timeout=timeout, trace_msg=True, rtt=True
        )
        samples = watch(bed, uac, timeout + 5)
        result.other_cpu_pct = other_cpu_pct(samples)
        result.udp_drops = max_drops(samples)
        uas.stop(0.2)
    rows = stat_rows(uac)
    result.successful = counter(rows[-1], "SuccessfulCall(C)") if rows else 0
    rtts = rtt_values(workdir)
    result.rtt_n = len(rtts)
    result.rtt_p50_ms = percentile(rtts, 50)
    result.rtt_p99_ms = percentile(rtts, 99)
    result.rtt_mean_ms = sum(rtts) / len(rtts) if rtts else None
    fine = message_log_latencies(uac.message_file)
    result.log_n = len(fine)
    result.log_p50_ms = percentile(fine, 50)
    result.log_p99_ms = percentile(fine, 99)
    result.log_p999_ms = percentile(fine, 99.9)
    result.log_max_ms = max(fine) if fine else None
    result.log_mean_ms = sum(fine) / len(fine) if fine else None
    log(
        f"{mode}: latency p50/p99 {_ms(result.rtt_p50_ms)}/{_ms(result.rtt_p99_ms)} ms (rtt), "
        f"{_ms(result.log_p50_ms, 2)}/{_ms(result.log_p99_ms, 2)} ms (message log; p99.9 "
        f"{_ms(result.log_p999_ms, 2)}, max {_ms(result.log_max_ms, 2)}), "
        f"{result.successful}/{calls} calls ok"
    )
    return result


# --------------------------------------------------------------------------- 3. memory
@dataclass
class Memory:
    process: str
    calls: int
    rate: float
    hold_ms: int
    settle_s: float
    idle_kib: int | None = None
    ramp_kib: int | None = None
    plateau_kib: int | None = None
    peak_kib: int | None = None
    ramp_s: float | None = None
    up_after_ramp: int = 0
    up_at_plateau: int = 0
    failed: int = 0
    mib_per_1000_plateau: float | None = None
    kib_per_call_plateau: float | None = None
    mib_per_1000_ramp: float | None = None
    kib_per_call_ramp: float | None = None


def run_memory(
    mode: str, calls: int, rate: float, settle: float, workdir: Path, env: Env
) -> Memory:
    ramp = calls / rate
    hold_ms = round((ramp + settle + 15) * 1000)  # nobody hangs up before the plateau reading
    timeout = hold_ms / 1000 + ramp + 30
    process = "pkiss" if mode == "pkiss" else "SIPp UAS"
    result = Memory(process=process, calls=calls, rate=rate, hold_ms=hold_ms, settle_s=settle)
    log(f"{mode}: memory, {calls} calls at {rate:g} calls/s held {hold_ms / 1000:g} s")
    with Testbed(mode, workdir, env) as bed:
        uas = bed.start_uas(timeout + 10)
        pid = bed.sbc_pid if mode == "pkiss" else uas.pid
        assert pid is not None
        time.sleep(1.0)
        result.idle_kib = rss_kib(pid)
        peak = result.idle_kib or 0
        uac = bed.start_uac(rate=rate, calls=calls, hold_ms=hold_ms, timeout=timeout)
        t0 = time.monotonic()
        deadline = t0 + ramp + 30
        row: dict[str, str] = {}
        while time.monotonic() < deadline and uac.running():
            time.sleep(0.25)
            peak = max(peak, rss_kib(pid) or 0)
            rows = stat_rows(uac)
            row = rows[-1] if rows else {}
            if answered(row) >= calls:
                break
        result.ramp_s = time.monotonic() - t0
        result.up_after_ramp = counter(row, "CurrentCall")
        result.ramp_kib = rss_kib(pid)
        log(
            f"{mode}: {answered(row)} calls answered after {result.ramp_s:.1f} s, "
            f"{process} RSS {_mib(result.ramp_kib)} MiB; waiting {settle:g} s for the plateau"
        )
        end = time.monotonic() + settle
        while time.monotonic() < end and uac.running():
            time.sleep(0.5)
            peak = max(peak, rss_kib(pid) or 0)
        result.plateau_kib = rss_kib(pid)
        result.peak_kib = max(peak, result.plateau_kib or 0)
        rows = stat_rows(uac)
        row = rows[-1] if rows else {}
        result.up_at_plateau = counter(row, "CurrentCall")
        result.failed = counter(row, "FailedCall(C)")
        uac.stop(0.2)
        uas.stop(0.2)
    if result.idle_kib is not None:
        for label, value in (("plateau", result.plateau_kib), ("ramp", result.ramp_kib)):
            if value is None:
                continue
            kib_per_call = (value - result.idle_kib) / calls
            setattr(result, f"kib_per_call_{label}", kib_per_call)
            setattr(result, f"mib_per_1000_{label}", kib_per_call * 1000 / 1024)
    log(
        f"{mode}: {process} RSS idle {_mib(result.idle_kib)}, after ramp {_mib(result.ramp_kib)}, "
        f"plateau {_mib(result.plateau_kib)} MiB ({result.up_at_plateau} calls up)"
    )
    return result


# --------------------------------------------------------------------------- report
def machine_facts() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    sipp_version = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [SIPP or "sipp", "-v"], capture_output=True, text=True, timeout=10
        ).stdout
        found = re.search(r"SIPp v\S+", out)
        sipp_version = found.group(0).rstrip(".") if found else sipp_version
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sipp": sipp_version,
        "commit": commit,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _ms(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pair(a: float | None, b: float | None, digits: int = 0) -> str:
    return f"{_ms(a, digits)} / {_ms(b, digits)}"


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def step_table(steps: list[Step], with_sbc: bool) -> list[str]:
    head = f"  {'rate':>6} {'offered':>8} {'calls':>7} {'ok':>7} {'fail%':>6} {'retrans':>7} "
    head += f"{'retr%':>6} "
    if with_sbc:
        head += f"{'pkiss CPU%':>10} {'peak%':>6} {'CPU ms/call':>11} "
    roles = ("uac", "sbc", "uas") if with_sbc else ("uac", "uas")
    drops_head = "drops " + "/".join(roles)
    head += f"{'SIPp CPU%':>9} {'other%':>6} {drops_head:>18}  result"
    lines = [head]
    for s in steps:
        line = (
            f"  {s.rate:>6g} {_num(s.offered_rate, '.0f'):>8} {s.calls:>7} {s.successful:>7} "
            f"{100 * s.fail_ratio:>6.2f} {s.retrans_uac + s.retrans_uas:>7} "
            f"{100 * s.retrans_ratio:>6.2f} "
        )
        if with_sbc:
            line += (
                f"{_num(s.sbc_cpu_pct, '.0f'):>10} {_num(s.sbc_cpu_peak_pct, '.0f'):>6} "
                f"{_num(s.sbc_cpu_ms_per_call, '.3f'):>11} "
            )
        drops = "/".join(str(s.udp_drops.get(role, 0)) for role in roles)
        line += f"{_num(s.sipp_cpu_pct, '.0f'):>9} {s.other_cpu_pct:>6.0f} {drops:>18}  "
        line += "PASS" if s.passed else f"FAIL: {s.reason}"
        line += f" (attempt {s.attempt})" if s.attempt > 1 else ""
        lines.append(line)
    return lines


def held_text(steps: list[Step]) -> str:
    held = highest_held(steps)
    if not steps:
        return "not run"
    if held is None:
        return f"< {steps[0].rate:g} (first step failed)"
    if all(s.passed for s in steps):
        return f">= {held:g} (every step passed)"
    return f"{held:g}"


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    m = results["machine"]
    out = [
        f"pkiss benchmark, {m['date']}{' (--quick)' if args.quick else ''}",
        f"machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['sipp']}, pkiss commit {m['commit']} (+ working tree)",
        f"load average: {m['loadavg_start']} at start, {m.get('loadavg_end', '?')} at end",
        f"pinning: {results['pinning']}",
        "set-up: operator SIPp UAC 127.0.0.2 -> pkiss 127.0.0.1 -> PBX SIPp UAS 127.0.0.3, UDP, "
        "uac_basic/uas_basic (INVITE/100/180/200/ACK, hold, BYE/200); a fresh pkiss process "
        "for every step and every measurement",
        "",
    ]
    modes = [("pkiss", "UAC -> pkiss -> UAS")]
    if "direct" in results:
        modes.append(("direct", "UAC -> UAS directly (harness ceiling)"))
    for mode, title in modes:
        r = results[mode]
        out.append(
            f"call rate steps, {title}: {r['duration']:g} s each, hold {args.hold} ms; pass = "
            f"< {100 * MAX_FAIL_RATIO:g} % failed and < {100 * MAX_RETRANS_RATIO:g} "
            "retransmissions per 100 calls"
        )
        out += step_table([Step(**s) for s in r["steps"]], with_sbc=mode == "pkiss")
        out.append("")
    names = [mode for mode, _ in modes]
    steps = {n: [Step(**s) for s in results[n]["steps"]] for n in names}
    lat = {n: Latency(**results[n]["latency"]) for n in names}
    mem = {n: Memory(**results[n]["memory"]) for n in names}
    rows: list[tuple[str, ...]] = []

    def row(label: str, cell: Callable[[str], str]) -> None:
        rows.append((label, *[cell(n) for n in names]))

    def cpu_at_held(n: str) -> str:
        held = [s for s in steps[n] if s.passed and s.rate == highest_held(steps[n])]
        return _num(held[0].sbc_cpu_ms_per_call, ".3f") if held else "-"

    lat0, mem0 = lat["pkiss"], mem["pkiss"]
    row("1. highest call rate held, calls/s", lambda n: held_text(steps[n]))
    row("   pkiss CPU ms per call at that rate", cpu_at_held)
    row(f"2. setup latency @ {lat0.rate:g} calls/s, p50 / p99:", lambda n: "")
    row(
        "   SIPp rtt file (4 ms clock ticks), ms",
        lambda n: _pair(lat[n].rtt_p50_ms, lat[n].rtt_p99_ms),
    )
    row(
        "   SIPp message log (µs stamps), ms",
        lambda n: _pair(lat[n].log_p50_ms, lat[n].log_p99_ms, 2),
    )
    row(
        "   same, p99.9 / max, ms",
        lambda n: _pair(lat[n].log_p999_ms, lat[n].log_max_ms, 2),
    )
    row("   calls ok", lambda n: f"{lat[n].successful} of {lat[n].calls}")
    row(f"3. RSS, {mem0.calls} calls up, measured on", lambda n: mem[n].process)
    row(
        "   idle / after ramp / plateau, MiB",
        lambda n: f"{_mib(mem[n].idle_kib)} / {_mib(mem[n].ramp_kib)} / {_mib(mem[n].plateau_kib)}",
    )
    row(
        f"   per 1,000 calls at plateau (+{mem0.settle_s:g} s), MiB",
        lambda n: _num(mem[n].mib_per_1000_plateau, ".2f"),
    )
    row("   per call at plateau, KiB", lambda n: _num(mem[n].kib_per_call_plateau, ".2f"))
    row("   per 1,000 calls right after ramp, MiB", lambda n: _num(mem[n].mib_per_1000_ramp, ".2f"))
    row("   per call right after ramp, KiB", lambda n: _num(mem[n].kib_per_call_ramp, ".2f"))
    row(
        "   calls up after ramp / at plateau",
        lambda n: f"{mem[n].up_after_ramp} / {mem[n].up_at_plateau}",
    )
    if "soak" in results["pkiss"]:
        soak = Latency(**results["pkiss"]["soak"])
        row(f"4. soak, {soak.rate:g} calls/s for {soak.calls / soak.rate:.0f} s", lambda n: "")
        row(
            "   message log p50 / p99",
            lambda n: _pair(soak.log_p50_ms, soak.log_p99_ms, 2) if n == "pkiss" else "-",
        )
        row(
            "   message log p99.9 / max",
            lambda n: _pair(soak.log_p999_ms, soak.log_max_ms, 2) if n == "pkiss" else "-",
        )
        row(
            "   calls ok",
            lambda n: f"{soak.successful} of {soak.calls}" if n == "pkiss" else "-",
        )
    out.append(
        f"summary (latency: {lat0.calls} calls; memory: {mem0.calls} calls ramped at "
        f"{mem0.rate:g} calls/s, held {mem0.hold_ms / 1000:g} s)"
    )
    headers = ("", *[title for _, title in modes])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for r in [headers, *rows]:
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    noisy = [(f"{n} {s.rate:g} calls/s", s.other_cpu_pct) for n in names for s in steps[n]]
    noisy += [(f"{n} latency", lat[n].other_cpu_pct) for n in names]
    noisy = [(what, pct) for what, pct in noisy if pct > NOISY_OTHER_PCT]
    if noisy:
        out += [
            "",
            "WARNING: other processes used the CPU during "
            + ", ".join(f"{what} ({pct:.0f} % of a CPU)" for what, pct in noisy)
            + ": the machine "
            "was not quiet there, those figures may be low.",
        ]
    if args.quick:
        out += ["", "--quick: short steps and a short settle time: a smoke check, not figures."]
    return "\n".join(out)


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short smoke check (2 rates, 3 s)")
    p.add_argument("--no-direct", action="store_true", help="skip SIPp UAC -> UAS directly")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("--rates", help="comma-separated calls/s for the pkiss steps")
    p.add_argument("--direct-rates", help="comma-separated calls/s for the direct steps")
    p.add_argument("--duration", type=float, help="seconds of new calls per rate step")
    p.add_argument("--hold", type=int, default=100, help="call hold time in ms (default 100)")
    p.add_argument("--media", choices=["bypass", "relay"], default="bypass",
                   help="pkiss's media.mode (relay: every call's SDP rewritten, 4 relay "
                        "ports per call; no RTP is sent)")  # fmt: skip
    p.add_argument("--no-trace", action="store_true",
                   help="pkiss's admin.trace off (the call trace keeps no message)")  # fmt: skip
    p.add_argument("--latency-rate", type=float, help="calls/s of the latency run (100)")
    p.add_argument("--latency-duration", type=float, help="seconds of the latency run")
    p.add_argument("--rss-calls", type=int, help="concurrent calls of the memory run (2000)")
    p.add_argument("--rss-rate", type=float, help="ramp rate of the memory run (200)")
    p.add_argument("--settle", type=float, help="seconds after the ramp to the plateau (35)")
    p.add_argument("--no-pin", action="store_true", help="do not pin pkiss and SIPp to CPUs")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        metavar="S",
        help="before each measurement wait up to S s for other processes to go quiet (60)",
    )
    p.add_argument(
        "--noisy-retries",
        type=int,
        default=2,
        metavar="N",
        help="run a failed step again, up to N times, when other processes used the CPU (2)",
    )
    p.add_argument(
        "--soak",
        type=float,
        metavar="S",
        help="pkiss only: a latency run of S seconds at half the highest rate held, p99.9 and "
        "max included (240; 0: none)",
    )
    p.add_argument("--soak-rate", type=float, help="calls/s of the soak instead of half the held")
    p.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("rates", "direct_rates"):
        value = getattr(args, key)
        if isinstance(value, str):
            setattr(args, key, [float(v) for v in value.split(",") if v.strip()])
    if any(r <= 0 for r in [*args.rates, *args.direct_rates]) or args.duration <= 0:
        p.error("rates and duration must be positive")
    if args.rss_calls <= 0 or args.rss_rate <= 0 or args.settle < 0:
        p.error("--rss-calls and --rss-rate must be positive, --settle not negative")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure(
    mode: str, rates: Sequence[float], args: argparse.Namespace, workdir: Path, env: Env
) -> dict[str, Any]:
    steps = rate_steps(mode, rates, args.duration, args.hold, workdir / "rates", env)
    latency = run_latency(
        mode, args.latency_rate, args.latency_duration, args.hold, workdir / "latency", env
    )
    memory = run_memory(mode, args.rss_calls, args.rss_rate, args.settle, workdir / "memory", env)
    out = {
        "duration": args.duration,
        "steps": [asdict(s) for s in steps],
        "highest_rate_held": highest_held(steps),
        "latency": asdict(latency),
        "memory": asdict(memory),
    }
    held = highest_held(steps)
    soak_rate = args.soak_rate or (held / 2 if held else None)
    if mode == "pkiss" and args.soak > 0 and soak_rate:
        soak = run_latency(mode, soak_rate, args.soak, args.hold, workdir / "soak", env)
        out["soak"] = asdict(soak)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if SIPP is None:
        print("sipp is not on PATH: make deps (Debian package sip-tester)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    env = Env(Pinning(not args.no_pin), args.wait_quiet, args.noisy_retries, args.media,
              not args.no_trace)  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="pkiss-bench-"))
    log(f"work directory {workdir}; pinning: {env.pinning.describe()}")
    results: dict[str, Any] = {
        "machine": machine_facts(),
        "pinning": env.pinning.describe(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "thresholds": {
            "max_fail_ratio": MAX_FAIL_RATIO,
            "max_retrans_per_call": MAX_RETRANS_RATIO,
            "min_offered_ratio": MIN_OFFERED_RATIO,
        },
    }
    ok = False
    try:
        results["pkiss"] = measure("pkiss", args.rates, args, workdir / "pkiss", env)
        if not args.no_direct:
            results["direct"] = measure("direct", args.direct_rates, args, workdir / "direct", env)
        ok = True
    except KeyboardInterrupt:
        log("interrupted: every process started was stopped")
        return 130
    finally:
        if args.keep or not ok:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["loadavg_end"] = _loadavg()
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
