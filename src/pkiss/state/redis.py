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
loads the bans in force when it starts.
A binding a PBX with ``hosts: registered`` made here (``registration/bindings.py``) is written
as ``pkiss:binding:<peer>`` (expiring with it) and published on ``pkiss:bindings``; its removal
(``Expires: 0``) deletes it and is published. A write loses to a newer binding already there,
and a removal spares it (a Lua script compares the REGISTERs' times). Each node listens on
that channel; each time it (re)subscribes it writes its own bindings again (Redis may have
lost them, or the node may have taken REGISTERs while Redis was away) and then loads the
others' (one key per registered peer of its config: bounded). What is read is checked
(``registration/shared.py``): an entry a node would not have written is logged and ignored.
Redis down: the node goes on alone, logs it once, and tries again each interval.
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
from ..registration.bindings import Bindings, RegisteredContact
from ..registration.shared import (
    Expired,
    NotHere,
    Removal,
    decode,
    encode_register,
    encode_unregister,
)
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
BINDINGS = "pkiss:bindings"
"""The channel of bindings made and removed; each binding is the key ``pkiss:binding:<peer>``."""

# Both scripts: KEYS[1] the binding's key, ARGV[1] the message, ARGV[2] its time (of the
# REGISTER, or of the removal); nothing is done when the key holds a REGISTER made after that
# (another node's, newer: the last REGISTER wins).
_NEWER_HELD = """
local held = redis.call('GET', KEYS[1])
local newer = false
if held then
  local ok, old = pcall(cjson.decode, held)
  if ok and type(old) == 'table' then
    local at = tonumber(old['at'])
    newer = at ~= nil and at > tonumber(ARGV[2])
  end
end
if newer then return 0 end
"""
# ARGV[3] milliseconds to live, ARGV[4] the channel
_WRITE = f"""{_NEWER_HELD}redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""
# ARGV[3] the channel
_REMOVE = f"""{_NEWER_HELD}redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"""


class SharedState:
    def __init__(self, url: str, limits: MemoryLimitStore, bans: BanList,
                 clock: Any, node_id: str | None = None, health: Any = None,
                 drains: Drains | None = None,
                 bindings: Bindings | None = None) -> None:  # fmt: skip
        self.url = url
        self.limits = limits
        self.bans = bans
        self.health = health  # the node's HealthMonitor, or None
        self.drains = drains
        self.bindings = bindings  # the registrar's, when registered PBXs may come
        self.clock = clock  # the loop's time(): bans are kept on it
        self.node = node_id or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
        self.client = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.nodes = 1
        self.connected = False
        self._warned = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last: dict[str, tuple[float, dict[str, int]]] = {}  # node -> (time, admitted)
        self._outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        # bindings changed here and not written yet: peer -> (change number, wall time)
        self._dirty: dict[str, tuple[int, float]] = {}
        self._changes = 0
        self._reload = False  # (re)subscribed: write this node's bindings, load the others'
        self._loaded: frozenset[str] | None = None  # the registered peers last loaded
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.bans.on_ban = self._banned_here
        self.bans.on_unban = self._unbanned_here
        self._tasks = [asyncio.create_task(self._sync_forever()),
                       asyncio.create_task(self._listen_forever()),
                       asyncio.create_task(self._send_forever())]  # fmt: skip
        if self.bindings is not None:
            self.bindings.on_change = self._bound_here
            self._tasks.append(asyncio.create_task(self._bindings_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        if self.bindings is not None:
            self.bindings.on_change = None
        with contextlib.suppress(RedisError, OSError):
            await self._flush_outbox()
            await self._flush_bindings()
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
        loaded, bindings = self._loaded, self.bindings
        if bindings is not None and loaded is not None and bindings.names != loaded:
            self._reload = True  # a reload named other registered peers: load theirs
            self._wake.set()

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
                await pubsub.subscribe(CHANNEL, BINDINGS)
                if self.bindings is not None:
                    self._reload = True  # what was missed while not listening
                    self._wake.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    channel = message.get("channel")
                    if channel in (BINDINGS, BINDINGS.encode()):
                        self._apply_binding(message["data"])
                    else:
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

    # ---------------------------------------------------------------------------- bindings
    def _bound_here(self, peer: str) -> None:
        """A REGISTER taken here made or removed ``peer``'s binding: to write (at once)."""
        self._changes += 1
        self._dirty[peer] = (self._changes, time.time())
        self._wake.set()

    async def _bindings_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                reload, self._reload = self._reload, False
                if reload:
                    self._rewrite_mine()
                await self._flush_bindings()
                if reload:
                    await self._load_bindings()
            except (RedisError, OSError) as exc:
                self._up(False, exc)
                self._reload = self._reload or reload
                await asyncio.sleep(SYNC_INTERVAL)
                self._wake.set()  # again, until Redis takes them

    def _rewrite_mine(self) -> None:
        """Every binding this node holds, to write again (a newer one there wins)."""
        assert self.bindings is not None
        for peer in self.bindings.mine(self.clock()):
            if peer not in self._dirty:
                self._changes += 1
                self._dirty[peer] = (self._changes, time.time())

    async def _flush_bindings(self) -> None:
        """Write the bindings changed here: this node's binding of each such peer, or its
        removal when it has none left (removed, or expired before Redis took it)."""
        bindings = self.bindings
        if bindings is None:
            return
        for peer, change in list(self._dirty.items()):
            binding = bindings.own(peer, self.clock())
            if binding is not None:
                await self._write_binding(peer, binding)
            else:
                await self._remove_binding(peer, change[1])
            if self._dirty.get(peer) == change:
                del self._dirty[peer]

    async def _write_binding(self, peer: str, binding: RegisteredContact) -> None:
        now, wall = self.clock(), time.time()
        left = binding.expires_at - now
        if left <= 0:
            return
        message, at = encode_register(peer, binding, self.node, wall, now)
        await self.client.eval(_WRITE, 1, f"pkiss:binding:{peer}", message, repr(at),
                               max(int(left * 1000), 1), BINDINGS)  # fmt: skip

    async def _remove_binding(self, peer: str, at: float) -> None:
        message = encode_unregister(peer, self.node, at)
        await self.client.eval(_REMOVE, 1, f"pkiss:binding:{peer}", message, repr(at),
                               BINDINGS)  # fmt: skip

    async def _load_bindings(self) -> None:
        """The bindings the other nodes took, one key per registered peer of the config."""
        assert self.bindings is not None
        self._loaded = self.bindings.names or frozenset()
        names = sorted(self._loaded)
        if not names:
            return
        values = await self.client.mget([f"pkiss:binding:{peer}" for peer in names])
        for peer, raw in zip(names, values, strict=True):
            if raw is not None:
                self._learn(raw, f"pkiss:binding:{peer}", peer)

    def _apply_binding(self, raw: bytes | str) -> None:
        """A message on the bindings channel: another node's binding or removal."""
        self._learn(raw, f"a message on {BINDINGS}")

    def _learn(self, raw: bytes | str, where: str, key_peer: str | None = None) -> None:
        bindings = self.bindings
        if bindings is None:
            return
        try:
            peer, entry = decode(raw, bindings.names or frozenset(), time.time(), self.clock())
            if key_peer is not None and peer != key_peer:
                raise ValueError(f"names peer {peer!r}, not the key's")
            if key_peer is not None and isinstance(entry, Removal):
                raise ValueError("a removal, where a binding is kept")
        except (Expired, NotHere):
            return  # nothing wrong with it: over, or for a node with another config
        except ValueError as exc:
            log.warning("shared state: %s holds no binding a node wrote (%s); ignored",
                        where, exc)  # fmt: skip
            return
        if entry.node == self.node:
            return  # this node's own: it holds it already
        if isinstance(entry, Removal):
            if bindings.forget(peer, entry.at):
                log.info("peer %s unregistered at node %s", peer, entry.node)
            return
        if bindings.learn(peer, entry):
            log.info("peer %s registered at node %s from %s for %ds", peer, entry.node,
                     entry.source, max(int(entry.expires_at - self.clock()), 0))  # fmt: skip


def _addr(text: str) -> Addr | None:
    """``udp:127.0.0.3:5060`` (or an IPv6 host) back to an Addr."""
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return None
    return Addr(transport, host, int(port))
