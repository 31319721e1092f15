"""``pkiss``: thin. Parse arguments, load the config, hand over to the server (``run``), to
the admin API's client (``status``, ``peers``, ``calls``, ``bans``, ``reload``, ``cdr``,
``drain``, ``undrain``, ``hangup``) or to the demo (``demo``)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError, load_config
from .config.loader import load_admin

if TYPE_CHECKING:
    from .admin.client import AdminClient

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
    demo = sub.add_parser("demo", help="a node, an operator and two PBXs on loopback, with calls")
    demo.add_argument("--rate", default=2.0, type=float, help="calls a second (default 2)")
    demo.add_argument("--duration", default=900.0, type=float,
                      help="seconds of new calls, then the demo ends (default 900)")  # fmt: skip
    for name, text in _ADMIN_COMMANDS.items():
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("-c", "--config", default="pkiss.yaml", type=Path,
                         help="the running node's config: where its admin API listens")  # fmt: skip
        cmd.add_argument("--json", action="store_true", help="print the API's JSON")
        if name == "bans":
            cmd.add_argument("--unban", metavar="IP", help="lift the ban of this address")
        if name in ("drain", "undrain"):
            cmd.add_argument("target", metavar="HOST|PEER",
                             help="a peer's name, or a host's address (host:port, or host for "
                                  "every port of it)")  # fmt: skip
        if name == "hangup":
            cmd.add_argument("call_id", metavar="ID", help="the call's id, as `pkiss calls "
                             "--json` shows it")  # fmt: skip
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
    "drain": "no new calls to a host or peer (calls in progress go on)",
    "undrain": "new calls to a drained host or peer again",
    "hangup": "end a call in progress: BYE to both sides",
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


def _steer(client: AdminClient, command: str, target: str) -> Any:
    """Drain or undrain a peer when ``target`` names one, else a host at that address."""
    peers = client.call("GET", "/api/peers")
    kind = "peers" if any(p["name"] == target for p in peers) else "hosts"
    return client.call("POST", f"/api/{kind}/{urllib.parse.quote(target, safe='')}/{command}")


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
        elif command in ("drain", "undrain"):
            data = _steer(client, command, args.target)
        elif command == "hangup":
            quoted = urllib.parse.quote(args.call_id, safe="")
            data = client.call("POST", f"/api/calls/{quoted}/hangup")
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
    elif command in ("drain", "undrain"):
        print(f"{command}ed {data[command + 'ed']} {', '.join(data['names'])}")
    elif command == "hangup":
        print(f"hung up {data['hung_up']}")
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
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.rate, args.duration)
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
