"""Fuzz the node's whole receive path: the nightly-size run of ``tests/fuzz``.

Each case is a short scenario drawn from ``random.Random(seed + case)`` and played against a
fresh node (``tests/fuzz/receive_rig.py``: the real engine, admission, parser, transaction
layer, calls, registrar and OPTIONS, the real TCP framing and the built-in relay, on a fake
clock, without sockets but the relay's loopback ports): mutated messages of a peer and of
strangers over UDP and TCP, answers to what the node sent, the corpus's hostile messages,
random bytes. After each case the clock runs until every timer has fired; a case fails when
an exception escapes or something is still held (transactions, calls, dialogs, relay ports,
connections, timers). Findings are grouped by where they happen; each is printed once with
the seed of its first case (``--seed S --cases 1 --first N`` replays case N) and its packets.

    .venv/bin/python bench/fuzz_receive.py [--cases 100000] [--seed 1] [--first 0] [--verbose]

The corpus is read from ``$PKISS_CORPUS`` (default ``../shared/corpus``); without it the
corpus step is skipped.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "fuzz")]

from receive_rig import RandomDraw, Rig, Stats, corpus, run_case  # noqa: E402


def where(exc: BaseException) -> str:
    """The innermost frame of the package an exception came from: a finding's identity."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/src/pkiss/" in f.filename] or frames
    f = ours[-1]
    return f"{type(exc).__name__} at {f.filename.split('/src/')[-1]}:{f.lineno} ({f.name})"


def _record(rig: Rig, packets: list[tuple[bytes, object]]) -> None:
    """Keep the packets a case delivers, for its report."""
    for name in ("datagram", "stream"):
        real = getattr(rig, name)

        def record(data: bytes, source: object, real: Any = real) -> None:
            packets.append((data, source))
            real(data, source)

        setattr(rig, name, record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--first", type=int, default=0, help="number of the first case")
    parser.add_argument("--verbose", action="store_true", help="print every failing case")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the node logs every refusal: millions of lines

    messages = corpus()
    print(f"corpus: {len(messages)} messages" if messages else "corpus: absent (skipped)")
    total = Stats()
    findings: dict[str, tuple[int, int, str, list[tuple[bytes, object]]]] = {}
    started = time.perf_counter()
    last = started
    for n in range(args.first, args.first + args.cases):
        rig = Rig()
        packets: list[tuple[bytes, object]] = []
        _record(rig, packets)
        problem: str | None = None
        detail = ""
        try:
            run_case(rig, RandomDraw(random.Random(args.seed * 1_000_003 + n)))
            leaks = rig.leaks()
            if leaks:
                problem = "leak: " + ", ".join(sorted(x.split(":", 1)[0] for x in leaks))
                detail = "\n".join(leaks)
        except Exception as exc:  # the findings this script exists for
            problem = where(exc)
            detail = "".join(traceback.format_exception(exc))
        finally:
            rig.close()
        total.add(rig.stats)
        if problem is not None:
            count, first, _, _ = findings.get(problem, (0, n, detail, packets))
            if count == 0:
                findings[problem] = (1, n, detail, packets)
                print(f"\nFINDING {problem} (case {n})", flush=True)
            else:
                findings[problem] = (count + 1, first, findings[problem][2],
                                     findings[problem][3])  # fmt: skip
            if args.verbose:
                print(f"case {n}: {problem}")
        now = time.perf_counter()
        if now - last > 30:
            done = n - args.first + 1
            print(f"  {done} cases, {done / (now - started):.0f} cases/s, "
                  f"{len(findings)} findings", flush=True)  # fmt: skip
            last = now
    elapsed = time.perf_counter() - started
    cases = total.cases
    print(f"\n{cases} cases in {elapsed:.1f} s ({cases / elapsed:.0f} cases/s), seed {args.seed}, "
          f"first case {args.first}")  # fmt: skip
    print(f"  packets {total.packets}; cases that got an answer {total.parsed}, "
          f"created a call {total.calls}, had a call answered {total.answered}, "
          f"registered {total.registered}, OPTIONS answered {total.options}; "
          f"TCP connections closed on framing errors {total.stream_closed}; "
          f"calls only the media timeout ended {total.hung_up_idle}")  # fmt: skip
    print("  steps: " + ", ".join(f"{k} {v}" for k, v in sorted(total.kinds.items())))
    if not findings:
        print("no findings")
        return 0
    print(f"\n{len(findings)} findings:")
    for problem, (count, first, detail, packets) in sorted(findings.items()):
        print(f"\n== {problem}: {count} cases, first: case {first} "
              f"(--seed {args.seed} --first {first} --cases 1)")  # fmt: skip
        print(detail.rstrip())
        print("packets of that case:")
        for data, source in packets:
            print(f"  {source}: {data!r}"[:2000])
    return 1


if __name__ == "__main__":
    sys.exit(main())
