"""The composition root: builds a node from its config and owns its life (signals included).

SIGTERM: stop taking new calls (503), wait ``drain`` seconds for calls in progress to end,
then BYE what is left and stop. SIGHUP: reload the config file; an invalid file is refused
with its errors logged and the running config kept.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .b2bua import Call
from .config import Config, ConfigError, load_config
from .node import Node, build
from .sip.message import Request
from .stats import CallStats
from .trace import Tracer

if TYPE_CHECKING:
    from .admin.serve import AdminServer
    from .cdr import CdrWriter
    from .hep import HepSender
    from .state import SharedState

__all__ = ["Server", "run"]

log = logging.getLogger("pkiss")


class Server:
    """A node's life: builds it from the config (``node.build``), starts its parts in order,
    reloads it, drains and stops it."""

    def __init__(self, config: Config, config_path: Path | None = None, drain: float = 0.0) -> None:
        self.config = config
        self.config_path = config_path
        self.drain = drain
        self._node: Node | None = None
        self.started_at = 0.0
        self.loaded_at = 0.0
        self._stop = asyncio.Event()
        self._admin: AdminServer | None = None
        self._media_watch: asyncio.Task[None] | None = None
        self.cdr: CdrWriter | None = None
        self.state: SharedState | None = None
        trace = config.admin.trace
        self.tracer = Tracer(keep=trace.calls, messages=trace.messages)
        self._hep: HepSender | None = None
        self.stats = CallStats()

    @property
    def node(self) -> Node:
        """The running node (built once the loop runs)."""
        assert self._node is not None, "the node is built by serve()"
        return self._node

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.started_at = self.loaded_at = loop.time()
        from .cdr import record_of, refused_record

        writer = await self._start_cdr()
        tracer, stats = self.tracer, self.stats

        def ended(call: Call) -> None:
            record = record_of(call, loop.time(), time.time())
            writer.add(record)
            stats.observe(record)
            tracer.end(call.a.call_id)

        def refused(request: Request, peer: str, number: str, status: int, reason: str,
                    now: float) -> None:  # fmt: skip
            record = refused_record(request, peer, number, status, reason, time.time())
            writer.add(record)
            stats.observe(record, refused=True)
            if request.call_id:
                tracer.end(request.call_id)

        self._node = node = build(self.config, loop, on_end=ended, on_refused=refused)
        self._trace(node)
        await node.engine.start()
        if node.relay is not None:
            self._media_watch = loop.create_task(self._watch_media(node))
        await self._start_state(node)
        await self._start_admin(node)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        log.info("ready: %d peers", len(self.config.peers))
        collector = asyncio.create_task(collect_periodically())
        ticker = asyncio.create_task(self.stats.run(node))  # the dashboard's history
        await self._stop.wait()
        collector.cancel()
        ticker.cancel()
        await self.shutdown()

    async def _start_cdr(self) -> CdrWriter:
        """One record per ended call, to ``storage.cdr``."""
        from .cdr import CdrStore, CdrWriter

        storage = self.config.storage
        self.cdr = writer = CdrWriter(CdrStore(storage.cdr), storage.cdr_spool_path(),
                                      storage.cdr_spool.max_bytes)  # fmt: skip
        await writer.start()
        return writer

    async def _watch_media(self, node: Node) -> None:
        """End answered calls whose media stopped (``media.timeout``)."""
        while True:
            timeout = node.config.media.timeout
            await asyncio.sleep(min(max(timeout / 4, 0.5), 5.0))
            node.engine.drive(node.core.hangup_idle(node.engine.now(), timeout))

    async def _start_state(self, node: Node) -> None:
        """``state: redis://...``: bans, call counts, drains and the registered PBXs'
        bindings shared with the other nodes."""
        url = self.config.state
        if url == "memory":
            return
        from .state import SharedState

        loop = asyncio.get_running_loop()
        self.state = SharedState(url, node.limits, node.security.bans, loop.time,
                                 health=node.monitor, drains=node.drains,
                                 bindings=node.bindings)  # fmt: skip
        await self.state.start()

    async def _start_admin(self, node: Node) -> None:
        # imported here: the web stack is only loaded by a node that serves it
        from .admin.api import build_app
        from .admin.serve import AdminServer

        listen = self.config.admin.listen
        self._admin = AdminServer(build_app(self), listen.host, listen.port)
        try:
            await self._admin.start()
        except OSError:
            node.close()
            raise

    def reload(self) -> list[str]:
        """Load the config file again and apply it; the errors (the running config is then
        kept), empty when applied."""
        if self.config_path is None:
            return ["no config file to reload"]
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config:")
            for line in exc.errors:
                log.error("  %s", line)
            return list(exc.errors)
        if config.admin.listen != self.config.admin.listen:
            log.warning("admin.listen changes when the node restarts; still on %s",
                        self.config.admin.listen)  # fmt: skip
        self.config = config
        if self._node is not None:
            self._node.reconfigure(config)
            self._trace(self._node)
        self.loaded_at = self.now()
        log.info("config reloaded: %d peers", len(config.peers))
        return []

    def _trace(self, node: Node) -> None:
        """``admin.trace`` and ``trace.hep``: on, the engine and the calls tell the tracer
        what crossed, and the tracer the HEP collector; its bounds and the collector follow a
        reload, and what it holds stays."""
        settings, export = self.config.admin.trace, self.config.trace
        tracer = self.tracer
        tracer.keep, tracer.messages = settings.calls, settings.messages
        if not settings.enabled:
            tracer.keep, tracer.messages = 0, 0  # HEP alone: nothing kept
        hep = export.hep
        sender = self._hep
        if sender is not None and (hep is None or sender.dest != (hep.host, hep.port)
                                   or sender.agent != export.hep_agent):  # fmt: skip
            sender.close()
            sender = self._hep = None
        if hep is not None and sender is None:
            from .hep import HepSender

            sender = self._hep = HepSender(hep.host, hep.port, export.hep_agent)
            log.info("SIP messages to the HEP collector at %s", hep)
        tracer.export = sender
        on = settings.enabled or sender is not None
        node.engine.tracer = tracer if on else None
        node.calls.on_leg = tracer.link if on else None

    async def shutdown(self) -> None:
        node = self.node
        node.admission.draining = True
        calls = node.calls.calls
        log.info("stopping: %d calls in progress", len(calls))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain
        while calls and loop.time() < deadline:
            await asyncio.sleep(0.1)
        if calls:
            node.engine.drive(node.core.hangup_all(loop.time()))
            await asyncio.sleep(0.2)  # let the BYEs leave
        await self._unregister(node, loop)
        if self._media_watch is not None:
            self._media_watch.cancel()
        if self._admin is not None:
            await self._admin.stop()
        if self.cdr is not None:
            await self.cdr.stop()
        if self.state is not None:
            await self.state.stop()
        node.close()
        log.info("stopped")

    async def _unregister(self, node: Node, loop: asyncio.AbstractEventLoop) -> None:
        """REGISTER with Expires: 0 to each carrier the node is registered with; waits for
        the answers (a challenge is answered) at most ``UNREGISTER_WAIT`` seconds."""
        node.engine.drive(node.core.unregister_all(loop.time()))
        deadline = loop.time() + UNREGISTER_WAIT
        while node.registrations.withdrawing():
            if loop.time() >= deadline:
                log.info("stopping without every registrar's answer")
                break
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


UNREGISTER_WAIT = 2.0
"""Seconds a stopping node waits for the registrars to confirm the removal of its bindings."""

FULL_GC_INTERVAL = 600.0
"""Seconds between the garbage collections the server runs itself (the only ones)."""


def raise_file_limit() -> None:
    """Each relayed call holds four sockets (two RTP/RTCP pairs): take every descriptor the
    system allows this process, not the shell's default soft limit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on this platform
        pass


def tune_gc() -> None:
    """The collector runs when the server says (``collect_periodically``), never on CPython's
    counter. That counter is allocations less deallocations, and a node under load frees old
    objects (calls ended 32 s ago, when their INVITE transactions let go) about as fast as it
    allocates new ones: the young generation grew to 20-30 thousand objects between two
    collections, each pausing the loop 10-30 ms. What is alive at start-up is frozen out of
    every collection."""
    gc.freeze()
    gc.disable()


async def collect_periodically(full: float = FULL_GC_INTERVAL) -> None:
    """A full collection every ``full`` seconds, for what reference cycles there are (an
    exception kept with its traceback, a closed connection...): reference counting frees
    everything else as soon as it is unused, and calls, transactions and messages make no
    cycles. Young collections found nothing under load (130 objects in 15 s at 600 calls/s, 0
    in the next 15 s) for 7-12 % of the node's CPU: each walked every object that had lived
    through it, and a call's objects all do, for its 32 s of lingering transactions."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(full)
        start = loop.time()
        found = gc.collect()
        log.debug("full collection: %d objects in %.0f ms", found, (loop.time() - start) * 1e3)


def run(config_path: Path, drain: float = 0.0) -> int:
    config = load_config(config_path)
    level = getattr(logging, config.logging.level.upper(), logging.INFO)
    fmt = (
        '{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}'
        if config.logging.format == "json"
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=level, format=fmt)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    tune_gc()
    raise_file_limit()
    server = Server(config, config_path, drain)
    try:
        asyncio.run(server.serve())
    except OSError as exc:  # a socket the config names cannot be opened
        log.error("cannot start: %s", exc)
        return 1
    return 0
