"""One node's parts, built together from a config (``build``), and what the admin API reads
of them (``Node`` is handed to ``admin/`` as a read-only view: it changes nothing there but
through the server's commands).

Every part gets what it needs through its constructor: nothing is patched in afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .b2bua import Calls
from .b2bua.calls import CallEnded, CallRefused
from .config import Config
from .core import TransactionUser, assemble
from .engine import Engine
from .health import HealthMonitor
from .media import BuiltinRelay, MediaEngine, RtpEngine
from .registration import Bindings, Registrar, Registrations
from .routing import Drains, Limits, MemoryLimitStore, Router
from .security import Security
from .security.admission import Admission
from .security.connections import ConnectionGate
from .transport.listeners import Listeners

__all__ = ["Node", "build"]

log = logging.getLogger("pkiss")


@dataclass(eq=False)
class Node:
    config: Config
    listeners: Listeners
    security: Security
    admission: Admission
    limits: MemoryLimitStore
    bindings: Bindings
    monitor: HealthMonitor
    calls: Calls
    registrar: Registrar
    registrations: Registrations
    core: TransactionUser
    engine: Engine
    connections: ConnectionGate
    relay: BuiltinRelay | None = None
    rtpengine: RtpEngine | None = None

    @property
    def accepting(self) -> bool:
        return not self.admission.draining

    @property
    def drains(self) -> Drains:
        """The hosts and peers taken out of service for new calls (they outlive reloads)."""
        return self.calls.drains

    @property
    def dropped(self) -> int:
        return self.admission.dropped

    def reconfigure(self, config: Config) -> None:
        """Swap the config: new calls use it, calls in progress keep theirs; hosts still
        probed keep their health, registrations whose settings did not change their state."""
        self.config = config
        now = self.engine.now()
        self.listeners.reconfigure(config.sbc)
        self.security.reconfigure(config.security)
        self.admission.reconfigure(config.peers, config.security)
        self.connections.reconfigure(config)
        self.calls.reconfigure(Router(config.peers, config.routes), config.peers,
                               config.limits.calls)  # fmt: skip
        self.core.max_transactions = config.limits.transactions
        self.calls.anchoring.mode = config.media.mode
        self.registrar.reconfigure(config.peers)
        self.monitor.rebuild(config.peers, now)
        self.registrations.rebuild(config.peers, now)
        self.engine.identity = (config.sbc.server_header or "").encode("utf-8") or None
        self.engine.drive(self.core.reschedule(now))

    def close(self) -> None:
        self.engine.close()
        if self.relay is not None:
            self.relay.close()


def build(
    config: Config,
    loop: asyncio.AbstractEventLoop,
    on_end: CallEnded | None = None,
    on_refused: CallRefused | None = None,
) -> Node:
    """Every part of a node, wired; ``Node.engine.start()`` then opens its sockets."""
    now = loop.time()
    security = Security(config.security)
    bindings = Bindings()
    admission = Admission(config.peers, config.security, security, bindings.peer_at)
    relay, rtpengine = _media(config, loop)

    def binding_host(peer: str, now: float) -> str | None:
        binding = bindings.lookup(peer, now)
        return binding.source.host if binding is not None else None

    def census() -> dict[str, int]:
        return {} if relay is None else {"relay sockets": relay_sockets(relay)}

    gate = ConnectionGate(config, security, descriptor_limit, binding_host, census)
    security.bans.watch(gate.banned)
    listeners = Listeners(config.sbc, config.security.max_message_bytes, gate)
    media: MediaEngine | None = relay if relay is not None else rtpengine
    store = MemoryLimitStore()
    core = assemble(config, listeners.local, now, media=media, limits=Limits(store),
                    bindings=bindings, on_auth_failure=admission.auth_failed, on_end=on_end,
                    on_refused=on_refused)  # fmt: skip
    engine = Engine(listeners, admission, core, config.security.max_message_bytes,
                    config.sbc.server_header)  # fmt: skip
    return Node(config, listeners, security, admission, store, bindings, core.prober.monitor,
                core.calls, core.registrar, core.registrations, core, engine, gate, relay,
                rtpengine)  # fmt: skip


def descriptor_limit() -> int:
    """The process's descriptor limit now (the soft one: what ``open`` and ``accept`` hit)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError):  # pragma: no cover - not on this platform
        return 1 << 20
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def relay_sockets(relay: BuiltinRelay) -> int:
    """Sockets the built-in relay holds: two per port pair it bound, in calls or pooled."""
    return relay.sockets


def _media(
    config: Config, loop: asyncio.AbstractEventLoop
) -> tuple[BuiltinRelay | None, RtpEngine | None]:
    """When any call may be relayed: rtpengine (``media.engine: rtpengine``), or the
    built-in relay bound to the address of the first listener of each family."""
    media = config.media
    relayed = media.mode == "relay" or any(p.media == "relay" for p in config.peers.values())
    if not relayed:
        return None, None
    if media.engine == "rtpengine":
        ng = media.rtpengine
        rtpengine = RtpEngine(ng.host, ng.port)
        if rtpengine.ping():
            log.info("media through rtpengine at %s:%d", ng.host, ng.port)
        else:
            log.error("rtpengine at %s:%d does not answer yet: relayed calls get 503 "
                      "until it does", ng.host, ng.port)  # fmt: skip
        return None, rtpengine
    listen = config.sbc.listen
    host = next((str(ep.host) for ep in listen if ":" not in str(ep.host)), "0.0.0.0")
    host6 = next((str(ep.host) for ep in listen if ":" in str(ep.host)), None)
    relay = BuiltinRelay(host, (media.ports.low, media.ports.high), loop, host6=host6,
                         learn=media.learn)  # fmt: skip
    log.info("media relay on %s, ports %d-%d", " and ".join(filter(None, (host, host6))),
             media.ports.low, media.ports.high)  # fmt: skip
    return relay, None
