"""Overload: a SIPp carrier offering several times what the node can carry in new calls while
calls already established hang up normally. Run from the repository root:

    .venv/bin/python bench/overload.py --capacity 1000 --factor 3 --duration 10

``--capacity`` is the call rate the node holds (``bench/run.py`` measures it: the highest
rate of its table); the storm offers ``factor`` times that for ``duration`` seconds, media
bypassed, calls held ``--hold`` ms. Before the storm, ``--held`` calls are set up and hang up
by themselves during it (SIPp hold time). The figures: calls completed per second during the
storm (and as a share of the capacity), calls turned away with 503, whether every
established call ended normally, and what the node's /metrics say of its overload.

Traffic stays on 127.0.0.0/8; every process is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from run import CALLED, CALLER, OPERATOR, Env, Pinning, Testbed, bench_sipp, stat_rows  # noqa: E402
from sipp import free_port  # noqa: E402


def _metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--capacity", type=float, default=1000.0, help="calls/s the node holds")
    p.add_argument("--factor", type=float, default=3.0, help="storm rate / capacity (3)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of storm (10)")
    p.add_argument("--hold", type=int, default=100, help="storm calls' hold time, ms (100)")
    p.add_argument("--held", type=int, default=200, help="calls established before (200)")
    p.add_argument("--no-pin", action="store_true", help="do not pin pkiss and SIPp to CPUs")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    args = p.parse_args()

    rate = args.capacity * args.factor
    storm_calls = int(rate * args.duration)
    held_hold_ms = int((args.duration / 2 + 3) * 1000)  # they hang up in the middle of it
    env = Env(Pinning(not args.no_pin), 0.0, 0, "bypass")
    with tempfile.TemporaryDirectory(prefix="pkiss-overload-") as tmp:
        bed = Testbed("pkiss", Path(tmp), env)
        with bed:
            bed.start_uas(timeout=args.duration + 60)
            held = bench_sipp(
                scenario="uac_basic", local_ip=OPERATOR, local_port=free_port(OPERATOR),
                remote=bed.target, service=CALLED, caller=CALLER, calls=args.held,
                rate=min(args.held, 200), pause_ms=held_hold_ms, timeout=args.duration + 60,
                workdir=Path(tmp), name="held",
            )  # fmt: skip
            with bed.pinning.on(bed.pinning.sipp):
                held.start()
            time.sleep(args.held / 200 + 1.0)  # all established
            print(f"storm: {rate:.0f} calls/s for {args.duration:g} s ({storm_calls} calls), "
                  f"{args.held} calls established", file=sys.stderr)  # fmt: skip
            started = time.monotonic()
            uac = bed.start_uac(rate=rate, calls=storm_calls, hold_ms=args.hold,
                                timeout=args.duration + 30)  # fmt: skip
            uac.wait(timeout=args.duration + 40)
            elapsed = time.monotonic() - started
            held.wait(timeout=60)
            assert bed.sbc is not None
            admin = bed.sbc.config["admin"]["listen"]
            with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as response:
                metrics = response.read().decode()
            rows, held_rows = stat_rows(uac), stat_rows(held)
            last, held_last = rows[-1] if rows else {}, held_rows[-1] if held_rows else {}

            def count(row: dict[str, str], name: str) -> int:
                return int(row.get(name, "0") or 0)

            # calls are offered for `duration` seconds and completed within a hold time of
            # their offer: the rate completed is over the offering time
            span = args.duration
            ok = count(last, "SuccessfulCall(C)")
            result = {
                "capacity": args.capacity,
                "offered_rate": rate,
                "storm_calls": storm_calls,
                "completed": ok,
                "completed_per_s": round(ok / span, 1),
                "share_of_capacity": round(ok / span / args.capacity, 3),
                "failed": count(last, "FailedCall(C)"),
                "turned_away_503": _metric(metrics, "pkiss_overload_refused_total"),
                "held_ok": count(held_last, "SuccessfulCall(C)"),
                "held_failed": count(held_last, "FailedCall(C)"),
                "storm_seconds": round(span, 1),
                "run_seconds": round(elapsed, 1),
                "retransmissions": count(last, "Retransmissions(C)"),
            }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
