"""The CLI's side of the admin API: ``pkiss status | peers | calls | bans | reload`` find the
node through the config file (``admin.listen``, ``admin.token``) and print tables a person
can read, or the API's JSON with ``--json``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["AdminClient", "AdminError", "render"]


class AdminError(Exception):
    """The node could not be reached, or refused the request (the message says which)."""


class AdminClient:
    def __init__(self, host: str, port: int, token: str | None, timeout: float = 5.0) -> None:
        host = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        self.base = f"http://{host}:{port}"
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, raw: bool = False) -> Any:
        """The API's answer to ``method path``: its JSON, or with ``raw`` its text."""
        request = urllib.request.Request(self.base + path, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
                return body.decode() if raw else json.loads(body or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                detail = json.loads(body)
            except ValueError:
                detail = body.decode(errors="replace")
            if isinstance(detail, dict) and "errors" in detail:
                raise AdminError("\n".join(detail["errors"])) from None
            if isinstance(detail, dict) and "detail" in detail:
                detail = detail["detail"]
            raise AdminError(f"{exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"no node answers at {self.base} ({reason}); is it running, "
                             "and is admin.listen right in the config?") from None  # fmt: skip


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(header)] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]  # fmt: skip
    return "\n".join(lines)


def _seconds(value: float) -> str:
    value = int(value)
    if value >= 3600:
        return f"{value // 3600}h{value % 3600 // 60:02d}m"
    if value >= 60:
        return f"{value // 60}m{value % 60:02d}s"
    return f"{value}s"


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _host(host: dict[str, Any], peer: dict[str, Any]) -> str:
    text = f"{host['address']} {host['state']}"
    return text + " drained" if host.get("drained") and not peer.get("drained") else text


def render(command: str, data: Any) -> str:
    """The table for one command's answer."""
    if command == "status":
        calls = data["calls"]
        sec = data["security"]
        drains = data.get("drains") or {}
        drained = ", ".join(drains.get("peers", []) + drains.get("hosts", [])) or "nothing"
        lines = [
            f"uptime            {_seconds(data['uptime'])}",
            f"config loaded     {_when(data['config_loaded_at'])}",
            f"accepting calls   {'yes' if data['accepting'] else 'no (stopping)'}",
            f"peers             {data['peers']}",
            f"calls now         {data['calls_in_progress']}",
            f"calls since start {calls.get('calls', 0)} (answered {calls.get('answered', 0)}, "
            f"failed {calls.get('failed', 0)}, over limits {calls.get('limited', 0)})",
            f"dropped packets   {data['dropped']}",
            f"drained           {drained}",
            f"bans now          {data['bans']} (flood {sec.get('flood', 0)}, scanners "
            f"{sec.get('scanner', 0)}, auth failures {sec.get('auth_failures', 0)})",
        ]
        state = data.get("state") or {}
        if state.get("kind") == "redis":
            link = "connected" if state.get("connected") else "NOT CONNECTED"
            lines.append(f"shared state      redis, {link}, {state.get('nodes', 1)} node(s), "
                         f"this one {state.get('node')}")  # fmt: skip
        else:
            lines.append("shared state      none (this node only)")
        media = data.get("media") or {}
        if media.get("engine") == "rtpengine":
            lines.append(f"media relay       rtpengine, {media['calls']} calls, "
                         f"{media['requests']} requests, {media['errors']} errors")  # fmt: skip
        elif media.get("relay"):
            lines.append(f"media relay       {media['calls']} calls, {media['packets']} packets "
                         f"relayed, {media['ignored']} ignored")  # fmt: skip
        else:
            lines.append("media relay       off (SDP untouched)")
        return "\n".join(lines)
    if command == "peers":
        rows = []
        for p in data:
            limits = p["limits"] or {}
            limit = f"{p['calls']}/{limits['calls']}" if limits.get("calls") else str(p["calls"])
            hosts = ", ".join(_host(h, p) for h in p["hosts"]) or "-"
            name = p["name"] + (" (drained)" if p.get("drained") else "")
            rows.append([name, p["role"], hosts, limit, p.get("registration", "")])
        return _table(rows, ["PEER", "ROLE", "HOSTS", "CALLS", "REGISTRATION"])
    if command == "calls":
        rows = [[c["from"], c["to"], c["caller_peer"], c["callee_peer"] or "-", c["state"],
                 _when(c["started_at"]), _seconds(c["duration"])] for c in data]  # fmt: skip
        table = _table(rows, ["FROM", "TO", "FROM PEER", "TO PEER", "STATE", "STARTED",
                              "TALKING"])  # fmt: skip
        return table + f"\n{len(data)} call(s)"
    if command == "bans":
        rows = [[b["address"], _seconds(b["remaining"]), b["reason"]] for b in data]
        return _table(rows, ["ADDRESS", "REMAINING", "REASON"]) + f"\n{len(data)} ban(s)"
    if command == "cdr":
        rows = [[r["started_at"][:19].replace("T", " "), r["caller"], r["called"],
                 r["source_peer"], r["dest_peer"] or "-", r["status"], _seconds(r["duration"]),
                 r["reason"]] for r in data]  # fmt: skip
        table = _table(rows, ["STARTED (UTC)", "FROM", "TO", "FROM PEER", "TO PEER", "STATUS",
                              "TALKED", "END"])  # fmt: skip
        return table + f"\n{len(data)} record(s)"
    return json.dumps(data, indent=2)
