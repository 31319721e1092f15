"""What the admin API shows: plain, JSON-ready reads of one node's state.

Nothing here changes state or does I/O; ``now`` is the engine's clock (``loop.time()``), and
wall-clock times are derived from it once per read.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ..b2bua.call import Call
from ..node import Node
from ..trace import CallTrace

__all__ = ["ban_rows", "call_rows", "peer_rows", "status", "trace_summary"]


def _wall(now: float, at: float) -> float:
    """A loop-clock time ``at`` as a Unix timestamp."""
    return time.time() - (now - at)


def status(node: Node, started_at: float, loaded_at: float, now: float,
           shared: Any = None) -> dict[str, Any]:  # fmt: skip
    calls = node.calls
    state: dict[str, Any] = {"kind": "memory"}
    if shared is not None:
        state = {"kind": "redis", "connected": shared.connected, "nodes": shared.nodes,
                 "node": shared.node}  # fmt: skip
    return {
        "state": state,
        "uptime": round(now - started_at, 3),
        "config_loaded_at": round(_wall(now, loaded_at), 3),
        "accepting": node.accepting,
        "peers": len(node.config.peers),
        "calls_in_progress": len(calls.calls),
        "calls": dict(calls.stats),
        "dropped": node.dropped,
        "bans": len(node.security.bans.active(now)),
        "drains": {"peers": sorted(node.drains.peers), "hosts": sorted(node.drains.hosts)},
        "security": dict(node.security.stats),
        "media": _media(node),
    }


def _media(node: Node) -> dict[str, Any]:
    if node.rtpengine is not None:
        ng = node.rtpengine
        return {"relay": True, "engine": "rtpengine", "calls": len(ng.calls), **ng.stats}
    relay = node.relay
    if relay is None:
        return {"relay": False}
    return {"relay": True, "engine": "builtin", "calls": len(relay.calls), **relay.stats}


def _host_state(node: Node, addr: Any) -> str:
    monitor = node.monitor
    if addr in monitor.local_down:
        return "down"
    if addr in monitor.remote_down:
        return "down (another node)"
    host = monitor.hosts.get(addr)
    if host is None:
        return "not probed"
    if host.successes == 0 and host.failures == 0 and host.changed_at is None:
        return "pending"  # no probe came back yet: used as up meanwhile
    return "up"


def peer_rows(node: Node, now: float) -> list[dict[str, Any]]:
    from ..sip.transaction import Addr

    counters = node.calls.limits.snapshot()
    drains = node.drains
    registrations = node.registrations
    rows: list[dict[str, Any]] = []
    for name, peer in node.config.peers.items():
        hosts: list[dict[str, Any]] = []
        if peer.registered:
            binding = node.bindings.lookup(name, now)
            if binding is not None:
                src = binding.source
                hosts.append({"address": f"{src.host}:{src.port}", "transport": src.transport,
                              "state": "registered",
                              "expires_in": int(binding.expires_at - now)})  # fmt: skip
        else:
            for host in peer.hosts:
                addr = Addr(host.transport, host.host, host.port)
                hosts.append({"address": str(host.address), "transport": host.transport,
                              "priority": host.priority, "weight": host.weight,
                              "state": _host_state(node, addr),
                              "drained": drains.host_drained(name, addr)})  # fmt: skip
        count = counters.get(name)
        limits = peer.call_limits
        row: dict[str, Any] = {
            "name": name,
            "role": peer.role,
            "strategy": peer.strategy,
            "drained": name in drains.peers,
            "hosts": hosts,
            "calls": count.calls if count is not None else 0,
            "admitted": count.admitted if count is not None else 0,
            "refused": count.refused if count is not None else 0,
            "limits": {"calls": limits.calls, "cps": limits.cps} if limits is not None else None,
        }
        if registrations is not None and name in registrations.bindings:
            row["registration"] = registrations.bindings[name].state
        rows.append(row)
    return rows


def _call_row(call: Call, now: float) -> dict[str, Any]:
    caller = call.a_invite.from_
    return {
        "id": call.a.call_id,
        "from": getattr(caller.uri, "user", None) if caller is not None else None,
        "to": call.number,
        "caller_peer": call.source_peer,
        "callee_peer": call.b_peer,
        "state": call.state.value,
        "started_at": round(_wall(now, call.created_at), 3),
        "duration": round(now - call.answered_at, 3) if call.answered_at is not None else 0.0,
    }


def call_rows(node: Node, now: float) -> list[dict[str, Any]]:
    calls = sorted(node.calls.calls, key=lambda c: c.created_at)
    return [_call_row(call, now) for call in calls if not call.ended]


def ban_rows(node: Node, now: float) -> list[dict[str, Any]]:
    return [
        {"address": ban.host, "reason": ban.reason, "remaining": int(ban.until - now),
         "until": round(_wall(now, ban.until), 3)}
        for ban in node.security.bans.active(now)
    ]  # fmt: skip


def trace_summary(trace: CallTrace) -> dict[str, Any]:
    """A traced call in a list: its Call-IDs, when, who called whom, how it went."""
    first = trace.messages[0] if trace.messages else None
    line = first.data.split(b"\r\n", 1)[0].decode("utf-8", "replace") if first else ""
    status = None  # the final answer the caller got to its INVITE
    for m in trace.messages:
        if (first is not None and m.direction == "out" and m.dst == first.src
                and m.data[:8] == b"SIP/2.0 " and m.data[8:9] in b"23456"
                and b" INVITE\r\n" in m.data.split(b"\r\n\r\n", 1)[0]):  # fmt: skip
            status = m.data[8:11].decode("ascii", "replace")
    return {
        "call_ids": list(trace.call_ids),
        "started_at": round(first.at, 3) if first else None,
        "first_line": line,
        "from": _user(first.data, (b"from:", b"f:")) if first else None,
        "to": _user(first.data, (b"to:", b"t:")) if first else None,
        "status": int(status) if status and status.isdigit() else None,
        "messages": len(trace.messages),
        "ended": trace.ended,
    }


def _user(data: bytes, names: tuple[bytes, ...]) -> str | None:
    """The user part of the URI in the first header of ``names`` (From or To)."""
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() + b":" in names:
            found = re.search(rb"sips?:([^@;>\s]+)@", value)
            return found.group(1).decode("utf-8", "replace") if found else None
    return None
