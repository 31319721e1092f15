"""Several nodes, one view of bans, call counts and host health, through Redis (redis-py's
asyncio client).

Nothing on the SIP path waits for Redis. Every ``SYNC_INTERVAL`` seconds a task
- writes this node's calls in progress and calls admitted per peer, and the hosts its probes
  find down, to the hash ``pkiss:node:<id>``, which expires after ``NODE_TTL`` seconds (a node
  that stops or dies drops out by itself);
- reads the other nodes' hashes and hands their totals to the limit store (``remote_calls``,
  and their admission rate as ``remote_rate``) and their down hosts to the health monitor (a
  host any node finds down is skipped by every node until no node finds it down).
Drains (``routing.steering``) live in the set ``pkiss:drains`` (members ``peer:<name>`` and
``host:<host:port>``, no expiry: they outlive every node): a drain made here is written there
before it applies, and each interval every node takes the set as its drains.
A ban made here is written as ``pkiss:ban:<address>`` (expiring with the ban) and published on
``pkiss:bans``; a lifted one is deleted and published. Each node listens on that channel and
loads the bans in force when it starts. Redis down: the node goes on alone, logs it once, and
tries again each interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..config.urls import redacted
from ..routing.limits import MemoryLimitStore
from ..routing.steering import Drains
from ..security.bans import Ban, BanList
from ..sip.transaction import Addr

__all__ = ["SharedState"]

log = logging.getLogger("pkiss.state")

SYNC_INTERVAL = 0.5
"""Seconds between two exchanges of call counts."""
NODE_TTL = 3.0
"""Seconds a node's counts stay in Redis without a refresh."""
CHANNEL = "pkiss:bans"
DRAINS = "pkiss:drains"


class SharedState:
    def __init__(self, url: str, limits: MemoryLimitStore, bans: BanList,
                 clock: Any, node_id: str | None = None, health: Any = None,
                 drains: Drains | None = None) -> None:  # fmt: skip
        self.url = url
        self.limits = limits
        self.bans = bans
        self.health = health  # the node's HealthMonitor, or None
        self.drains = drains
        self.clock = clock  # the loop's time(): bans are kept on it
        self.node = node_id or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
        self.client = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.nodes = 1
        self.connected = False
        self._warned = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last: dict[str, tuple[float, dict[str, int]]] = {}  # node -> (time, admitted)
        self._outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.bans.on_ban = self._banned_here
        self.bans.on_unban = self._unbanned_here
        self._tasks = [asyncio.create_task(self._sync_forever()),
                       asyncio.create_task(self._listen_forever()),
                       asyncio.create_task(self._send_forever())]  # fmt: skip

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self._flush_outbox()
            await self.client.delete(f"pkiss:node:{self.node}")
        await self.client.aclose()

    def _up(self, up: bool, error: Exception | None = None) -> None:
        """Log the changes only: connected, or lost (once until it comes back)."""
        if up:
            if not self.connected:
                log.info("shared state: connected to %s as node %s", redacted(self.url),
                         self.node)  # fmt: skip
            self.connected, self._warned = True, False
            return
        if not self._warned:
            log.error("shared state: %s not available (%s); going on alone, retrying",
                      redacted(self.url), error)  # fmt: skip
            self._warned = True
        self.connected = False

    # ------------------------------------------------------------------------------ counts
    async def _sync_forever(self) -> None:
        loaded = False
        while True:
            try:
                if not loaded:
                    await self._load_bans()
                    loaded = True
                await self._sync()
                self._up(True)
            except (RedisError, OSError) as exc:
                self._up(False, exc)
                self.limits.remote_calls = {}
                self.limits.remote_rate = {}
                if self.health is not None:
                    self.health.set_remote_down(frozenset())
            await asyncio.sleep(SYNC_INTERVAL)

    async def _sync(self) -> None:
        mine = self.limits.snapshot()
        key = f"pkiss:node:{self.node}"
        fields: dict[str, int] = {f"calls:{p}": c.calls for p, c in mine.items()}
        fields.update({f"admitted:{p}": c.admitted for p, c in mine.items()})
        if self.health is not None:
            fields.update({f"down:{a.transport}:{a.host}:{a.port}": 1
                           for a in self.health.local_down})  # fmt: skip
        pipe = self.client.pipeline()
        pipe.delete(key)
        if fields:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        else:
            pipe.hset(key, "alive", 1)
        pipe.expire(key, int(NODE_TTL))
        await pipe.execute()
        others: list[str] = []
        async for name in self.client.scan_iter(match="pkiss:node:*", count=100):
            node = name.decode() if isinstance(name, bytes) else str(name)
            if node != key:
                others.append(node)
        calls: dict[str, int] = {}
        rate: dict[str, float] = {}
        down: set[Addr] = set()
        now = time.monotonic()
        seen: dict[str, tuple[float, dict[str, int]]] = {}
        for node in others:
            raw = await self.client.hgetall(node)
            admitted: dict[str, int] = {}
            for field, value in raw.items():
                text = field.decode(errors="replace") if isinstance(field, bytes) else str(field)
                kind, _, peer = text.partition(":")
                try:
                    count = int(value)
                except ValueError:
                    continue  # not written by a node: ignored
                if kind == "down":
                    addr = _addr(peer)
                    if addr is not None:
                        down.add(addr)
                elif kind == "calls":
                    calls[peer] = calls.get(peer, 0) + count
                elif kind == "admitted":
                    admitted[peer] = count
            before = self._last.get(node)
            if before is not None and now > before[0]:
                for peer, count in admitted.items():
                    delta = max(count - before[1].get(peer, 0), 0)
                    rate[peer] = rate.get(peer, 0.0) + delta / (now - before[0])
            seen[node] = (now, admitted)
        self._last = seen
        self.nodes = 1 + len(others)
        self.limits.remote_calls = calls
        self.limits.remote_rate = rate
        if self.health is not None:
            self.health.set_remote_down(frozenset(down))
        if self.drains is not None:
            await self._read_drains(self.drains)

    # ------------------------------------------------------------------------------ drains
    async def _read_drains(self, drains: Drains) -> None:
        version = drains.version
        members = await self.client.smembers(DRAINS)
        if drains.version != version:
            return  # drained or undrained here meanwhile: the next read has it
        peers: set[str] = set()
        hosts: set[str] = set()
        for member in members:
            text = member.decode(errors="replace") if isinstance(member, bytes) else str(member)
            kind, _, name = text.partition(":")
            if kind == "peer":
                peers.add(name)
            elif kind == "host":
                hosts.add(name)
        if drains.replace(frozenset(peers), frozenset(hosts)):
            log.info("drains now: peers %s, hosts %s", sorted(peers) or "none",
                     sorted(hosts) or "none")  # fmt: skip

    async def write_drains(self, kind: str, names: list[str], drained: bool) -> bool:
        """Drain (or undrain) for every node; False when the store cannot be written."""
        members = [f"{kind}:{name}" for name in names]
        try:
            if drained:
                await self.client.sadd(DRAINS, *members)
            else:
                await self.client.srem(DRAINS, *members)
        except (RedisError, OSError) as exc:
            self._up(False, exc)
            return False
        return True

    # -------------------------------------------------------------------------------- bans
    def _banned_here(self, ban: Ban, now: float) -> None:
        self._outbox.put_nowait(("ban", (ban, ban.until - now)))

    def _unbanned_here(self, host: str) -> None:
        self._outbox.put_nowait(("unban", host))

    async def _send_forever(self) -> None:
        while True:
            op, arg = await self._outbox.get()
            try:
                await self._send(op, arg)
            except (RedisError, OSError) as exc:
                self._up(False, exc)

    async def _flush_outbox(self) -> None:
        while not self._outbox.empty():
            op, arg = self._outbox.get_nowait()
            await self._send(op, arg)

    async def _send(self, op: str, arg: Any) -> None:
        if op == "ban":
            ban, left = arg
            payload = json.dumps({"op": "ban", "host": ban.host, "left": left,
                                  "reason": ban.reason, "node": self.node})  # fmt: skip
            await self.client.set(f"pkiss:ban:{ban.host}", payload, px=max(int(left * 1000), 1))
            await self.client.publish(CHANNEL, payload)
        else:
            payload = json.dumps({"op": "unban", "host": arg, "node": self.node})
            await self.client.delete(f"pkiss:ban:{arg}")
            await self.client.publish(CHANNEL, payload)

    async def _load_bans(self) -> None:
        async for key in self.client.scan_iter(match="pkiss:ban:*", count=500):
            raw = await self.client.get(key)
            ttl = await self.client.pttl(key)
            if raw is None or ttl is None or ttl <= 0:
                continue
            try:
                data = json.loads(raw)
                host, reason = str(data["host"]), str(data.get("reason", ""))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("shared state: %s holds no ban a node wrote; ignored", key)
                continue
            self.bans.ban(host, ttl / 1000, reason, self.clock(), shared=False)

    async def _listen_forever(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub()
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._apply(message["data"])
            except (RedisError, OSError) as exc:
                self._up(False, exc)
                await asyncio.sleep(SYNC_INTERVAL * 4)

    def _apply(self, raw: bytes | str) -> None:
        """A message on the bans channel; anything but a node's ban or unban is ignored."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("node") == self.node:
                return
            host = str(data.get("host", ""))
            left = float(data["left"]) if data.get("op") == "ban" else 0.0
        except (ValueError, KeyError, TypeError):
            return
        if not host:
            return
        if data.get("op") == "ban":
            if self.bans.ban(host, left, str(data.get("reason", "")), self.clock(),
                             shared=False) is not None:  # fmt: skip
                log.warning("banned %s for %g s by node %s: %s", host, left,
                            data.get("node"), data.get("reason"))  # fmt: skip
        elif data.get("op") == "unban" and self.bans.unban(host, shared=False):
            log.info("ban of %s lifted by node %s", host, data.get("node"))


def _addr(text: str) -> Addr | None:
    """``udp:127.0.0.3:5060`` (or an IPv6 host) back to an Addr."""
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return None
    return Addr(transport, host, int(port))
