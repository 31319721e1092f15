"""``pkiss``: thin. Parse arguments, load the config, hand over to the server (``run``) or to
the admin API's client (``status``, ``peers``, ``calls``, ``bans``, ``reload``, ``cdr``)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .config import ConfigError, load_config
from .config.loader import load_admin

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
    for name, text in _ADMIN_COMMANDS.items():
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("-c", "--config", default="pkiss.yaml", type=Path,
                         help="the running node's config: where its admin API listens")  # fmt: skip
        cmd.add_argument("--json", action="store_true", help="print the API's JSON")
        if name == "bans":
            cmd.add_argument("--unban", metavar="IP", help="lift the ban of this address")
        if name == "cdr":
            cmd.add_argument(
                "--since",
                metavar="WHEN",
                help="records started since: 15m, 2h, 1d, or an ISO 8601 time",
            )
            cmd.add_argument("--limit", type=int, default=100,
                             help="at most this many, the newest (default 100)")  # fmt: skip
            _cdr_filters(cmd)
    return parser


def _cdr_filters(cmd: argparse.ArgumentParser) -> None:
    """``pkiss cdr``'s filters, paging and CSV output (the API's ``GET /api/cdr``)."""
    cmd.add_argument("--offset", type=int, default=0,
                     help="skip this many of the newest first: the next page back")  # fmt: skip
    cmd.add_argument("--peer", help="only calls from or to this peer")
    cmd.add_argument("--number", help="only calls whose caller or called number contains this")
    cmd.add_argument("--status", type=int, help="only calls that ended with this status")
    cmd.add_argument("--csv", action="store_true", help="print CSV: a header, a line a record")


def _cdr_query(args: argparse.Namespace) -> str:
    """``GET /api/cdr``'s path and query for ``pkiss cdr``'s options."""
    query = {"limit": str(args.limit)}
    if args.since:
        query["since"] = _since(args.since)
    if args.offset:
        query["offset"] = str(args.offset)
    for name in ("peer", "number", "status"):
        value = getattr(args, name)
        if value is not None:
            query[name] = str(value)
    if args.csv:
        query["format"] = "csv"
    return "/api/cdr?" + urllib.parse.urlencode(query)


_ADMIN_COMMANDS = {
    "status": "a running node's state: uptime, calls, drops, bans",
    "peers": "every peer, its hosts and their health, its calls",
    "calls": "calls in progress",
    "bans": "sources banned now (--unban IP lifts one)",
    "reload": "make the running node load its config file again",
    "cdr": "call detail records (--since 1h, --limit N, --peer, --number, --status, --csv)",
}


def _since(text: str) -> str:
    """``15m``, ``2h``, ``1d`` (ago) or an ISO 8601 time, as the API's ISO 8601 UTC time."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        when = datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
        return when.isoformat()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since: {text!r} is neither 15m/2h/1d nor an ISO 8601 time") from None
    return parsed.isoformat()


def _admin(args: argparse.Namespace) -> int:
    from .admin.client import AdminClient, AdminError, render

    try:
        admin = load_admin(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    client = AdminClient(admin.listen.host, admin.listen.port, admin.token)
    command = args.command
    try:
        if command == "reload":
            data = client.call("POST", "/api/reload")
        elif command == "bans" and args.unban:
            data = client.call("DELETE", f"/api/bans/{args.unban}")
        elif command == "cdr" and args.csv:
            sys.stdout.write(client.call("GET", _cdr_query(args), raw=True))
            return 0
        elif command == "cdr":
            data = client.call("GET", _cdr_query(args))
        else:
            data = client.call("GET", f"/api/{command}")
    except (AdminError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    elif command == "reload":
        print(f"reloaded: {data['peers']} peers")
    elif command == "bans" and args.unban:
        print(f"unbanned {data['unbanned']}")
    else:
        print(render(command, data))
    return 0


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
    if args.command in _ADMIN_COMMANDS:
        return _admin(args)
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
