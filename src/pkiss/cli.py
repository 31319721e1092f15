"""``pkiss``: thin. Parse arguments, load the config, hand over to the server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pkiss", description="SIP Session Border Controller")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one SBC node in the foreground")
    run.add_argument("-c", "--config", default="pkiss.yaml", type=Path)
    run.add_argument(
        "--drain", default=0.0, type=float,
        help="seconds to let calls in progress end on SIGTERM before sending them BYE",
    )  # fmt: skip
    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("-c", "--config", default="pkiss.yaml", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        try:
            load_config(args.config)
        except ConfigError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            return 1
        print(f"{args.config}: valid")
        return 0
    if args.command == "run":
        from .server import run

        try:
            return run(args.config, args.drain)
        except ConfigError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            return 1
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
