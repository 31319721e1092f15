"""pkiss media relay benchmark: concurrent G.711 calls the built-in relay carries.

Run ``.venv/bin/python bench/relay.py`` (``make bench`` runs it after ``bench/run.py``);
``--quick`` is a short smoke check.  For each step of N calls: a fresh pkiss process in
``media.mode: relay`` (the built-in relay), a SIPp UAC on 127.0.0.2 and a SIPp UAS on
127.0.0.3 set up N calls and hold them; then one generator process, on the harness's CPU,
sends every call's RTP both ways (50 packets/s per direction, 172-byte PCMA packets: RTP
header, sequence number, send time in the payload) to the relay ports the rewritten SDPs name
(read from SIPp's message logs), for ``--duration`` seconds after a warm-up, and counts what
comes out of the relay: loss, one-way latency, pkiss CPU per relayed packet.  A step passes
with loss < 0.1 % and p99 latency < 5 ms; the steps stop at the first failure.

The generator sends from one socket per side (127.0.0.2 for the callers, 127.0.0.3 for the
callees), the port each side's SDP names: the relay forwards to it before any latching, and
latches onto it (symmetric RTP) afterwards.  Its own CPU use is measured too (it must not be
the bottleneck), and a step where it fell behind its schedule is reported as such.

Every process is stopped by its PID (also on Ctrl-C); everything stays on 127.0.0.0/8.
Progress goes to stderr, the result table to stdout.  bench/README.md explains the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import (  # noqa: E402
    CALLED,
    CALLER,
    CLK_TCK,
    NOISY_OTHER_PCT,
    OPERATOR,
    PBX,
    SBC,
    SIPP,
    Pinning,
    Pkiss,
    basic_config,
    bench_sipp,
    busy_ticks,
    free_port,
    log,
    machine_facts,
    udp_drops,
    wait_quiet,
)
from sipp import SCENARIOS  # noqa: E402

PPS = 50  # packets per second per direction: G.711 with 20-ms packets
PACKET = 172  # 12 octets of RTP header, 160 of PCMA
RELAY_PORTS = "20000-39999"
MAX_LOSS = 0.001  # a step passes with less than 0.1 % of the packets lost...
MAX_P99_MS = 5.0  # ...and a one-way p99 latency under 5 ms
MAX_GEN_LAG_MS = 20.0  # the generator's schedule may slip this much before the step is void
BURST = 64  # packets per sendmmsg at most
TICK_NS = 500_000  # the generator sends what is due every 0.5 ms, then reads what came back
HIST_US = 10  # latency histogram bucket width, µs
HIST_BUCKETS = 50_000  # up to 500 ms

FULL = {"calls": [200 * i for i in range(1, 13)], "duration": 20.0, "warmup": 3.0}
QUICK = {"calls": [50, 100], "duration": 5.0, "warmup": 2.0}

# RTP header (V=2, PT=8 PCMA, sequence, timestamp, SSRC), then in the payload: the send time
# (monotonic ns), the stream's number, 1 when the packet is sent within the measured window
_HEAD = struct.Struct("!BBHIIQII")


# --------------------------------------------------------------------------- the generator
def cpu_split(pid: int) -> tuple[int, int] | None:
    """utime and stime of ``pid`` in clock ticks (None once it is gone)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def generator_main() -> int:
    """The RTP generator and sink (``--generator``), driven over stdin and stdout: prints
    the two ports it bound, reads the relay ports and the run's parameters, sends and
    receives, prints its counts."""
    socks = []
    for host in (OPERATOR, PBX):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
        sock.bind((host, 0))
        sock.setblocking(False)
        socks.append(sock)
    print(json.dumps({"a": socks[0].getsockname()[1], "b": socks[1].getsockname()[1]}),
          flush=True)  # fmt: skip
    order = json.loads(sys.stdin.readline())
    result = _generate(socks, order)
    print(json.dumps(result), flush=True)
    for sock in socks:
        sock.close()
    return 0


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]  # fmt: skip


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_MSG_DONTWAIT = 0x40
_RX_BATCH = 64
_RX_SLOT = 256  # octets kept of each packet received (ours are 172)


def _messages(count: int, size: int, names: list[bytes] | None) -> tuple[Any, Any, int]:
    """``count`` message headers for sendmmsg/recvmmsg, each with its own ``size``-octet
    buffer (one block, packet ``i`` at ``i * size``) and, when ``names``, its own address:
    consecutive messages are a contiguous slice. Returns the headers, the buffer and the
    headers' base address."""
    block = (ctypes.c_char * (size * count))()
    iovs = (_Iovec * count)()
    hdrs = (_Mmsghdr * count)()
    addrs = (ctypes.c_char * (16 * count))()
    if names is not None:
        ctypes.memmove(addrs, b"".join(names), 16 * count)
    for i in range(count):
        iovs[i].base = ctypes.addressof(block) + i * size
        iovs[i].len = size
        hdrs[i].hdr.iov = ctypes.addressof(iovs) + i * ctypes.sizeof(_Iovec)
        hdrs[i].hdr.iovlen = 1
        if names is not None:
            hdrs[i].hdr.name = ctypes.addressof(addrs) + 16 * i
            hdrs[i].hdr.namelen = 16
    keep = (block, iovs, hdrs, addrs)
    return keep, block, ctypes.addressof(hdrs)


def _sockaddr(host: str, port: int) -> bytes:
    family = struct.pack("=H", socket.AF_INET)  # sockaddr_in: family in host order
    return family + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


def _generate(socks: list[socket.socket], order: dict[str, Any]) -> dict[str, Any]:
    """Every stream's packets in turn, staggered over the 20 ms, sent in runs with one
    sendmmsg per socket and run; what comes back read with recvmmsg (both through ctypes:
    the kernel's work per packet stays, Python's is one struct write or read per packet)."""
    libc = ctypes.CDLL(None, use_errno=True)
    sendmmsg, recvmmsg = libc.sendmmsg, libc.recvmmsg
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                         ctypes.c_void_p]  # fmt: skip
    a_sock, b_sock = socks
    ports = list(order["a"]) + list(order["b"])
    half = len(order["a"])  # streams below this one go from the callers to the callees
    count = len(ports)
    _keep_tx, tx, tx_base = _messages(count, PACKET, [_sockaddr(SBC, p) for p in ports])
    _keep_rx, rx, rx_base = _messages(_RX_BATCH, _RX_SLOT, None)
    tx_view = memoryview(tx).cast("B")
    rx_view = memoryview(rx).cast("B")
    hsize = ctypes.sizeof(_Mmsghdr)
    fds = [sock.fileno() for sock in socks]
    a_fd, b_fd = fds
    gap = 1_000_000_000 / PPS / count  # ns between two packets, all streams staggered
    pids: dict[str, int] = order["pids"]
    relay_ports = {str(p): (SBC, p) for p in ports}
    mine = {"a": (OPERATOR, a_sock.getsockname()[1]), "b": (PBX, b_sock.getsockname()[1])}

    clock = time.monotonic_ns
    pack = _HEAD.pack_into
    unpack = _HEAD.unpack_from
    hist = [0] * HIST_BUCKETS
    per_stream = [0] * count
    sent = [0, 0]  # counted packets sent: callers -> callees, callees -> callers
    received = [0, 0]
    unsent = 0  # packets the generator could not hand to its kernel (its own failure)
    lag_max = 0

    def relay_drops() -> int:  # udp_drops adds up by name: one name per port
        return sum(udp_drops({name: addr for name, addr in relay_ports.items()}).values())

    # datagrams dropped: read before the first packet and after the last (reading
    # /proc/net/udp, thousands of lines, would stall the sending for tens of ms)
    drops_before = sum(udp_drops(mine).values()), relay_drops()
    start = clock()
    window = start + int(order["warmup"] * 1e9)
    end = window + int(order["duration"] * 1e9)
    drain_end = end + 500_000_000
    readings: dict[str, Any] = {}
    n = 0  # packets sent so far, counted or not

    def read() -> None:
        for fd in fds:
            while True:
                got = recvmmsg(fd, rx_base, _RX_BATCH, _MSG_DONTWAIT, None)
                if got <= 0:
                    break
                now = clock()
                for i in range(got):
                    fields = unpack(rx_view, i * _RX_SLOT)
                    if fields[7] == 1 and fields[0] == 0x80:
                        stream = fields[6]
                        per_stream[stream] += 1
                        received[stream >= half] += 1
                        bucket = (now - fields[5]) // (HIST_US * 1000)
                        hist[bucket if bucket < HIST_BUCKETS else HIST_BUCKETS - 1] += 1
                if got < _RX_BATCH:
                    break

    def snapshot() -> dict[str, Any]:  # cheap: taken while the packets flow
        return {
            "t": time.monotonic(),
            "cpu": {name: cpu_split(pid) for name, pid in pids.items()},
            "self": list(resource.getrusage(resource.RUSAGE_SELF)[:2]),
            "busy": busy_ticks(),
        }

    while True:
        now = clock()
        if now >= end:
            break
        if "start" not in readings and now >= window:
            readings["start"] = snapshot()
        due = int((now - start) / gap) + 1
        behind = due - n
        if behind > 0:
            lag_max = max(lag_max, behind)
            counted = 1 if now >= window else 0
            todo = behind
            while todo > 0:
                first = n % count
                run = min(todo, BURST, half - first if first < half else count - first)
                seq = n // count
                stamp = clock()
                for k in range(first, first + run):
                    pack(tx_view, k * PACKET, 0x80, 8, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF,
                         k, stamp, k, counted)  # fmt: skip
                done = sendmmsg(a_fd if first < half else b_fd, tx_base + first * hsize, run, 0)
                done = max(done, 0)
                unsent += run - done
                if counted:
                    sent[first >= half] += done
                n += run
                todo -= run
        read()
        wait = (now + TICK_NS - clock()) / 1e9
        if wait > 0.00005:
            time.sleep(wait)
    readings["end"] = snapshot()
    while clock() < drain_end:
        read()
        time.sleep(0.0005)
    read()
    readings["drops"] = sum(udp_drops(mine).values()) - drops_before[0]
    readings["relay_drops"] = relay_drops() - drops_before[1]
    return {
        "sent": sent,
        "received": received,
        "unsent": unsent,
        "hist": {str(i): v for i, v in enumerate(hist) if v},
        "silent_streams": sum(1 for v in per_stream if v == 0),
        "lag_max_ms": max(0.0, lag_max * gap - TICK_NS) / 1e6,
        "readings": readings,
        "streams": count,
    }


# --------------------------------------------------------------------------- one step
@dataclass
class Step:
    calls: int
    up: int = 0
    sent: int = 0
    received: int = 0
    sent_ab: int = 0
    sent_ba: int = 0
    received_ab: int = 0
    received_ba: int = 0
    loss_pct: float = 100.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    window_s: float = 0.0
    sbc_cpu_pct: float | None = None
    sbc_us_per_packet: float | None = None
    sbc_user_us: float | None = None
    sbc_sys_us: float | None = None
    gen_cpu_pct: float | None = None
    sipp_cpu_pct: float | None = None
    other_cpu_pct: float | None = None
    gen_lag_ms: float = 0.0
    silent_streams: int = 0
    unsent: int = 0
    relay_drops: int = 0
    sink_drops: int = 0
    passed: bool = False
    reason: str = ""
    attempt: int = 1


_MEDIA_PORT = re.compile(rb"^m=audio (\d+) ", re.M)


def received_ports(path: Path, first_line: bytes) -> set[int]:
    """The m=audio ports of the messages SIPp received that start with ``first_line``."""
    try:
        text = path.read_bytes()
    except OSError:
        return set()
    ports: set[int] = set()
    for block in re.split(rb"\n-{20,} ", text):
        _stamp, head, rest = [*block.split(b"\n", 2), b"", b""][:3]
        if b"message received" not in head:
            continue
        if not rest.lstrip().startswith(first_line):
            continue
        found = _MEDIA_PORT.search(rest)
        if found:
            ports.add(int(found.group(1)))
    return ports


def scenario(workdir: Path, name: str, port: int) -> Path:
    """``name`` from tests/e2e/scenarios with the generator's port in its SDP."""
    text = (SCENARIOS / f"{name}.xml").read_text()
    path = workdir / f"{name}_rtp.xml"
    path.write_text(text.replace("m=audio [media_port]", f"m=audio {port}"))
    return path


def percentile_of(hist: dict[int, int], total: int, pct: float) -> float | None:
    """Nearest-rank percentile of the histogram, in ms (the bucket's upper edge)."""
    if total == 0:
        return None
    rank = max(1, -(-total * pct // 100))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) * HIST_US / 1000
    return None


def run_step(calls: int, args: argparse.Namespace, workdir: Path, pinning: Pinning) -> Step:
    step = Step(calls=calls)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    setup_s = calls / args.setup_rate + 30
    hold_ms = int((setup_s + args.warmup + args.duration + 60) * 1000)
    timeout = hold_ms / 1000 + 30
    with contextlib.ExitStack() as stack:
        # the generator first: its two sockets are the media addresses of every SDP
        with pinning.on(pinning.sipp):
            gen = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--generator"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        stack.callback(_stop_process, gen)
        assert gen.stdin is not None and gen.stdout is not None
        ports = json.loads(gen.stdout.readline())

        sbc_port = free_port(SBC)
        pbx_port = free_port(PBX)
        operator_port = free_port(OPERATOR)
        config = basic_config(sbc_port, carrier_port=operator_port, pbx_port=pbx_port)
        config["media"] = {"mode": "relay", "ports": RELAY_PORTS, "timeout": 300}
        sbc = Pkiss(config, workdir)
        stack.callback(sbc.stop)
        with pinning.on(pinning.sbc):
            sbc.start()
        assert sbc.proc is not None
        common = {"timeout": timeout, "workdir": workdir, "trace_msg": True}
        uas = bench_sipp(scenario=scenario(workdir, "uas_basic", ports["b"]), local_ip=PBX,
                         local_port=pbx_port, calls=None, pause_ms=None, name="uas",
                         **common)  # fmt: skip
        stack.callback(uas.stop, 0.2)
        with pinning.on(pinning.sipp):
            uas.start()
        uac = bench_sipp(scenario=scenario(workdir, "uac_basic", ports["a"]), local_ip=OPERATOR,
                         local_port=operator_port, remote=(SBC, sbc_port), service=CALLED,
                         caller=CALLER, calls=calls, rate=args.setup_rate, pause_ms=hold_ms,
                         extra_args=["-l", str(calls)], name="uac", **common)  # fmt: skip
        stack.callback(uac.stop, 0.2)
        with pinning.on(pinning.sipp):
            uac.start()
        log(f"{calls} calls: setting up at {args.setup_rate:g} calls/s")
        deadline = time.monotonic() + setup_s
        a_ports: set[int] = set()
        b_ports: set[int] = set()
        while time.monotonic() < deadline and uac.running():
            time.sleep(0.5)
            a_ports = received_ports(uac.message_file, b"SIP/2.0 200")
            b_ports = received_ports(uas.message_file, b"INVITE ")
            if len(a_ports) >= calls and len(b_ports) >= calls:
                break
        step.up = min(len(a_ports), len(b_ports))
        if step.up < calls:
            step.reason = f"only {step.up} of {calls} calls set up"
            log(f"{calls} calls: {step.reason}")
            return step
        time.sleep(0.5)  # the last ACKs
        pids = {"sbc": sbc.proc.pid, "uac": uac.pid, "uas": uas.pid, "gen": gen.pid}
        order = {"a": sorted(a_ports), "b": sorted(b_ports), "warmup": args.warmup,
                 "duration": args.duration, "pids": pids}  # fmt: skip
        log(f"{calls} calls up: RTP both ways for {args.warmup:g} + {args.duration:g} s")
        gen.stdin.write(json.dumps(order) + "\n")
        gen.stdin.flush()
        line = gen.stdout.readline()
        if not line:
            step.reason = "the generator died"
            return step
        result = json.loads(line)
    _fill(step, result)
    return step


def _fill(step: Step, result: dict[str, Any]) -> None:
    step.sent_ab, step.sent_ba = result["sent"]
    step.received_ab, step.received_ba = result["received"]
    step.sent, step.received = sum(result["sent"]), sum(result["received"])
    step.loss_pct = 100 * (step.sent - step.received) / max(step.sent, 1)
    hist = {int(k): v for k, v in result["hist"].items()}
    step.p50_ms = percentile_of(hist, step.received, 50)
    step.p99_ms = percentile_of(hist, step.received, 99)
    step.max_ms = percentile_of(hist, step.received, 100)
    step.gen_lag_ms = result["lag_max_ms"]
    step.silent_streams = result["silent_streams"]
    start, end = result["readings"]["start"], result["readings"]["end"]
    wall = end["t"] - start["t"]
    step.window_s = wall

    def cpu(name: str, which: slice = slice(0, 2)) -> float | None:
        a, b = start["cpu"].get(name), end["cpu"].get(name)
        if a is None or b is None:
            return None
        return (sum(b[which]) - sum(a[which])) / CLK_TCK

    sbc = cpu("sbc")
    if sbc is not None:
        step.sbc_cpu_pct = 100 * sbc / wall
        step.sbc_us_per_packet = 1e6 * sbc / max(step.received, 1)
        step.sbc_user_us = 1e6 * (cpu("sbc", slice(0, 1)) or 0.0) / max(step.received, 1)
        step.sbc_sys_us = 1e6 * (cpu("sbc", slice(1, 2)) or 0.0) / max(step.received, 1)
    step.unsent = result["unsent"]
    gen = sum(end["self"]) - sum(start["self"])
    step.gen_cpu_pct = 100 * gen / wall
    sipp = [cpu(name) for name in ("uac", "uas")]
    step.sipp_cpu_pct = 100 * sum(c or 0.0 for c in sipp) / wall
    busy = (end["busy"] - start["busy"]) / CLK_TCK
    ours = (sbc or 0.0) + gen + sum(c or 0.0 for c in sipp)
    step.other_cpu_pct = max(0.0, 100 * (busy - ours) / wall)
    step.relay_drops = result["readings"]["relay_drops"]
    step.sink_drops = result["readings"]["drops"]
    reasons = []
    if step.loss_pct >= 100 * MAX_LOSS:
        reasons.append(f"{step.loss_pct:.3f} % lost")
    if step.p99_ms is None or step.p99_ms >= MAX_P99_MS:
        reasons.append(f"p99 {step.p99_ms} ms")
    if step.gen_lag_ms > MAX_GEN_LAG_MS:
        reasons.append(f"the generator fell {step.gen_lag_ms:.0f} ms behind (harness limit)")
    step.passed = not reasons
    step.reason = "; ".join(reasons) or "ok"


def _stop_process(proc: subprocess.Popen[str]) -> None:
    """Stop the generator by its PID (it ends by itself after its run)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(3)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _log_step(step: Step) -> None:
    log(
        f"{step.calls} calls: {step.received}/{step.sent} packets, loss {step.loss_pct:.3f} %, "
        f"p50/p99 {step.p50_ms}/{step.p99_ms} ms, pkiss {_num(step.sbc_cpu_pct, '.0f')} % CPU "
        f"{_num(step.sbc_us_per_packet, '.2f')} µs/packet (user "
        f"{_num(step.sbc_user_us, '.2f')}, system {_num(step.sbc_sys_us, '.2f')}), generator "
        f"{_num(step.gen_cpu_pct, '.0f')} % CPU (lag {step.gen_lag_ms:.1f} ms), other "
        f"{_num(step.other_cpu_pct, '.0f')} %: {'PASS' if step.passed else 'FAIL'} "
        f"({step.reason})"
    )


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def report(steps: list[Step], args: argparse.Namespace, pinning: Pinning) -> str:
    m = machine_facts()
    out = [
        f"pkiss media relay benchmark, {m['date']}{' (--quick)' if args.quick else ''}",
        f"machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['sipp']}, pkiss commit {m['commit']} (+ working tree)",
        f"pinning: {pinning.describe()} (the RTP generator with SIPp)",
        f"set-up: N calls UAC 127.0.0.2 -> pkiss 127.0.0.1 (media relay, built-in) -> UAS "
        f"127.0.0.3, then {PPS} packets/s of {PACKET} octets each way per call for "
        f"{args.duration:g} s (after {args.warmup:g} s of warm-up); pass = loss < "
        f"{100 * MAX_LOSS:g} % and p99 < {MAX_P99_MS:g} ms",
        "",
        f"  {'calls':>6} {'pkts/s':>7} {'sent':>9} {'received':>9} {'loss%':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'pkiss%':>7} {'µs/pkt':>7} "
        f"{'usr/sys':>11} "
        f"{'gen%':>5} {'SIPp%':>6} {'other%':>6} {'drops r/s':>10}  result",
    ]
    for s in steps:
        rate = s.sent / s.window_s if s.window_s else 0
        out.append(
            f"  {s.calls:>6} {rate:>7.0f} {s.sent:>9} {s.received:>9} {s.loss_pct:>7.3f} "
            f"{_num(s.p50_ms, '.2f'):>7} {_num(s.p99_ms, '.2f'):>7} {_num(s.max_ms, '.1f'):>7} "
            f"{_num(s.sbc_cpu_pct, '.0f'):>7} {_num(s.sbc_us_per_packet, '.2f'):>7} "
            f"{_num(s.sbc_user_us, '.2f') + '/' + _num(s.sbc_sys_us, '.2f'):>11} "
            f"{_num(s.gen_cpu_pct, '.0f'):>5} {_num(s.sipp_cpu_pct, '.0f'):>6} "
            f"{_num(s.other_cpu_pct, '.0f'):>6} {f'{s.relay_drops}/{s.sink_drops}':>10}  "
            + ("PASS" if s.passed else f"FAIL: {s.reason}")
            + (f" (attempt {s.attempt})" if s.attempt > 1 else "")
        )
    passed = [s.calls for s in steps if s.passed]
    every = " (every step passed)" if steps and all(s.passed for s in steps) else ""
    out += ["", f"most concurrent calls carried: {max(passed) if passed else 'none'}{every}"]
    noisy = [f"{s.calls} calls ({s.other_cpu_pct:.0f} %)" for s in steps
             if (s.other_cpu_pct or 0.0) > NOISY_OTHER_PCT]  # fmt: skip
    if noisy:
        out += [f"WARNING: other processes used the CPU during {', '.join(noisy)} (% of a "
                "CPU): those figures may be low."]  # fmt: skip
    if args.quick:
        out += ["--quick: few calls, short runs: a smoke check, not figures."]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short smoke check (50, 100 calls, 5 s)")
    p.add_argument("--calls", help="comma-separated numbers of concurrent calls, one per step")
    p.add_argument("--duration", type=float, help="seconds of measured RTP per step (20)")
    p.add_argument("--warmup", type=float, help="seconds of RTP before the measurement (3)")
    p.add_argument("--setup-rate", type=float, default=200.0, help="calls/s of the set-up")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--wait-quiet", type=float, default=30.0, metavar="S",
                   help="wait up to S s before each step for a quiet machine")  # fmt: skip
    p.add_argument("--noisy-retries", type=int, default=2, metavar="N",
                   help="run a failed step again, up to N times, when other processes used "
                        "the CPU")  # fmt: skip
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    p.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if isinstance(args.calls, str):
        args.calls = [int(v) for v in args.calls.split(",") if v.strip()]
    if any(c <= 0 for c in args.calls) or args.duration <= 0 or args.warmup < 0:
        p.error("calls and duration must be positive")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.generator:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return generator_main()
    if SIPP is None:
        print("sipp is not on PATH: make deps (Debian package sip-tester)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    pinning = Pinning(not args.no_pin)
    workdir = Path(tempfile.mkdtemp(prefix="pkiss-bench-relay-"))
    log(f"work directory {workdir}; pinning: {pinning.describe()}")
    steps: list[Step] = []
    ok = False
    try:
        for calls in args.calls:
            for attempt in range(1, args.noisy_retries + 2):
                step = run_step(calls, args, workdir / f"calls-{calls}-{attempt}", pinning)
                step.attempt = attempt
                _log_step(step)
                noisy = (step.other_cpu_pct or 0.0) > NOISY_OTHER_PCT
                if step.passed or not noisy or attempt > args.noisy_retries:
                    break
                log(f"other processes used {step.other_cpu_pct:.0f} % of a CPU: once more")
                wait_quiet(max(args.wait_quiet, 60.0))
            steps.append(step)
            if not step.passed:
                break
        ok = True
    except KeyboardInterrupt:
        log("interrupted: every process started was stopped")
        return 130
    finally:
        if args.keep or not ok:
            log(f"logs kept in {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    print(report(steps, args, pinning))
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in steps], indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
