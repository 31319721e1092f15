"""Inbound TCP and TLS connections: which ones the node keeps, and how many
(``security.connections``).

A datagram costs nothing once it is dropped; a connection holds a descriptor from accept to
close, whether or not a message ever comes. So the verdict is given at accept, on the source
address alone, before any byte is read or any TLS handshake starts:

- a banned source: closed;
- a peer's source (an address of a peer's ``match.source`` or ``hosts``, whatever the port,
  or the host a registered PBX's current binding came from): kept, never capped per source
  nor closed to make room;
- a stranger: counted with its datagrams for flood detection (opening connections fast is a
  flood, and bans); closed when strangers' messages are dropped unparsed anyway
  (``unknown_sources: drop`` and no peer with ``hosts: registered``, whose REGISTER may come
  from anywhere); else kept within ``per_source`` connections per address and the global cap.

The global cap is ``max``, bounded by the descriptor limit minus what the node keeps for
itself (``reserve``: its own files and sockets, connections to peers, the relay's ports).
When it is reached a stranger's new connection is closed; a peer's is kept, and the newest
stranger's connection is closed to make room for it. A ban closes its source's connections at
once. The transports add the deadlines (TLS handshake, first message, idle) and report why
they closed a connection, so that every closing is counted by reason here.

Pure: time comes in as ``now``; the connections are opaque ``Held`` objects the gate asks to
``shut``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..config import Config
from .bans import Ban
from .pipeline import Security

__all__ = ["BASE_RESERVE", "REASONS", "ConnectionGate", "Held", "PeerHosts", "descriptor_reserve"]

log = logging.getLogger("pkiss.security")

BASE_RESERVE = 64
"""Descriptors the node keeps for itself whatever its config: standard streams, the event
loop's own, logs, the admin API's listener and clients, the CDR database and its journal,
Redis, name lookups, certificate files being read."""

TELL_EVERY = 60.0
"""Seconds between two reports that ``accept`` ran out of descriptors."""

LIMIT_CHECK_EVERY = 1.0
"""Seconds between two readings of the descriptor limit (it can be changed while the node
runs, with ``prlimit``)."""

REASONS = ("banned", "stranger", "per_source", "max", "evicted", "tls_handshake", "tls_error",
           "first_message", "idle", "malformed")  # fmt: skip
"""Why the node closed an inbound connection (``pkiss_connections_closed``)."""


class Held(Protocol):
    """An inbound connection as the gate sees it."""

    def shut(self) -> None:
        """Close it now, whatever it was doing."""


class PeerHosts:
    """The addresses peers' connections come from: every ``match.source`` network (the port
    does not matter: a connection's source port is any) and every host given as an IP."""

    def __init__(self, peers: Mapping[str, Any]) -> None:
        self._exact: set[str] = set()
        self._networks: list[Any] = []
        for peer in peers.values():
            for source in peer.match_sources:
                net = source.network
                if net.num_addresses == 1:
                    self._exact.add(str(net.network_address))
                else:
                    self._networks.append(net)
            for host in peer.hosts:
                try:
                    self._exact.add(str(ipaddress.ip_address(host.address.host)))
                except ValueError:
                    continue  # a DNS name: its address is not known here

    def __contains__(self, host: str) -> bool:
        if host in self._exact:
            return True
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)


def descriptor_reserve(config: Config, limit: int) -> int:
    """Descriptors kept out of the inbound connections' reach under a limit of ``limit``:
    ``BASE_RESERVE``, one per listener, one per peer host reached over TCP or TLS (the
    connections the node opens), and the built-in relay's ports (one socket each; at most
    half the limit, so that a wide port range does not leave nothing to connections)."""
    reserve = BASE_RESERVE + len(config.sbc.listen)
    for peer in config.peers.values():
        reserve += sum(1 for host in peer.hosts if host.transport != "udp")
    media = config.media
    relayed = media.mode == "relay" or any(p.media == "relay" for p in config.peers.values())
    if relayed and media.engine == "builtin":
        reserve += min(media.ports.high - media.ports.low + 1, limit // 2)
    return reserve


class ConnectionGate:
    """The inbound connections of every TCP and TLS listener of a node, and the verdict on
    each new one."""

    def __init__(
        self,
        config: Config,
        filters: Security,
        descriptors: Callable[[], int],
        binding_host: Callable[[str, float], str | None],
        census: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        """``descriptors``: the process's descriptor limit now; ``binding_host``: the host a
        registered peer's current binding came from, by peer name; ``census``: other
        holders of descriptors worth naming when they run out (the relay's sockets)."""
        self.filters = filters
        self._descriptors = descriptors
        self._binding_host = binding_host
        self._census = census
        self.closed: Counter[str] = Counter()
        """Connections the node closed, by reason (``REASONS``)."""
        self.outbound = 0
        """Connections the node opened to peers (not counted against the caps)."""
        self._held: dict[Held, str] = {}  # every inbound connection, its source host
        self._by_host: dict[str, dict[Held, None]] = {}
        self._strangers: dict[Held, None] = {}  # oldest first: the newest goes first
        self._checked = float("-inf")
        self._refused = 0  # accepts the system refused since that was last told
        self._told_at = float("-inf")
        self._recovering = False  # told, and no accept has worked since
        self.limit = 0
        self.cap = 0
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """New peers and caps: connections already held stay (they were let in)."""
        self.config = config.security.connections
        self._whole = config
        self.peer_hosts = PeerHosts(config.peers)
        self._registered = tuple(name for name, p in config.peers.items() if p.registered)
        # the node drops strangers' messages unparsed: their connections can carry nothing
        self.closed_to_strangers = (
            config.security.unknown_sources == "drop" and not self._registered
        )
        self._checked = float("-inf")
        self._budget(0.0)

    @property
    def inbound(self) -> int:
        return len(self._held)

    @property
    def strangers(self) -> int:
        return len(self._strangers)

    def _budget(self, now: float) -> None:
        """The cap: ``max``, within the descriptor limit less the reserve (read again at most
        every ``LIMIT_CHECK_EVERY`` seconds)."""
        if now - self._checked < LIMIT_CHECK_EVERY:
            return
        self._checked = now
        limit = self._descriptors()
        if limit == self.limit:
            return
        self.limit = limit
        room = max(limit - descriptor_reserve(self._whole, limit), 0)
        cap = min(self.config.max, room)
        if cap != self.cap:
            self.cap = cap
            if cap < self.config.max:
                log.warning("inbound connections: at most %d (descriptor limit %d, %d kept for "
                            "the node's own use), below connections.max %d", cap, limit,
                            limit - room, self.config.max)  # fmt: skip

    def peer(self, host: str, now: float) -> bool:
        """True when connections from ``host`` are a peer's."""
        if host in self.peer_hosts:
            return True
        return any(self._binding_host(name, now) == host for name in self._registered)

    # ----------------------------------------------------------------------------- accept
    def open(self, conn: Held, host: str, now: float) -> str | None:
        """A connection just accepted from ``host``: None when it is kept (held from now on),
        else why it must be closed at once (counted; it was never held)."""
        if self._recovering:
            log.info("accepting connections again (%d tries refused by the system since it "
                     "was told)", self._refused)  # fmt: skip
            self._recovering = False
            self._refused = 0
        self._budget(now)
        if self.filters.banned(host, now):
            self.closed["banned"] += 1
            return "banned"
        if self.peer(host, now):
            if len(self._held) >= self.cap:
                self._make_room(now)
            self._hold(conn, host)
            return None
        refusal = self._stranger(host, now)
        if refusal is not None:
            self.closed[refusal] += 1
            return refusal
        self._hold(conn, host)
        self._strangers[conn] = None
        return None

    def _stranger(self, host: str, now: float) -> str | None:
        if self.filters.stranger_packet(host, now):
            return "banned"
        if self.closed_to_strangers:
            return "stranger"
        if len(self._by_host.get(host, ())) >= self.config.per_source:
            return "per_source"
        if len(self._held) >= self.cap:
            return "max"
        return None

    def _hold(self, conn: Held, host: str) -> None:
        self._held[conn] = host
        self._by_host.setdefault(host, {})[conn] = None

    def _make_room(self, now: float) -> None:
        """The newest stranger's connection goes for a peer's (one whose host has since
        become a registered PBX's is skipped)."""
        for conn in reversed(self._strangers):
            if not self.peer(self._held[conn], now):
                self.close(conn, "evicted")
                return

    # ------------------------------------------------------------------------------ close
    def close(self, conn: Held, reason: str) -> None:
        """Close a held connection for ``reason`` (counted once)."""
        if conn in self._held:
            self.closed[reason] += 1
            self.release(conn)
        conn.shut()

    def release(self, conn: Held) -> None:
        """A connection ended (by either side): it holds nothing any more."""
        host = self._held.pop(conn, None)
        if host is None:
            return
        self._strangers.pop(conn, None)
        same = self._by_host.get(host)
        if same is not None:
            same.pop(conn, None)
            if not same:
                del self._by_host[host]

    def banned(self, ban: Ban) -> None:
        """A ban was made (here, by another node, or from the admin API): its source's
        connections are closed now."""
        for conn in list(self._by_host.get(ban.host, ())):
            self.close(conn, "banned")

    def close_all(self) -> None:
        for conn in list(self._held):
            self.release(conn)
            conn.shut()

    # ----------------------------------------------------------------------- descriptors
    def exhausted(self, listener: str, error: OSError, now: float) -> None:
        """``accept`` failed for want of descriptors (EMFILE, ENFILE) or kernel memory: told
        with what holds the descriptors, once per ``TELL_EVERY`` seconds at most (a listener
        that gets one connection in now and then would otherwise tell it every second)."""
        self._refused += 1
        if now - self._told_at < TELL_EVERY:
            return
        self._told_at = now
        self._recovering = True
        holders = {"inbound connections": self.inbound, "outbound": self.outbound,
                   **self._census()}  # fmt: skip
        told = ", ".join(f"{count} {name}" for name, count in holders.items())
        log.error("%s listener cannot accept: %s (descriptor limit %d: %s); trying again "
                  "every second", listener, error.strerror or error, self._descriptors(),
                  told)  # fmt: skip
