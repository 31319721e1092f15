"""The asyncio driver: feeds bytes from the transports to the sans-I/O core, sends what the
core returns, and keeps exactly one timer armed at the core's next deadline.

Per datagram, cheapest first: a banned source is dropped; the source must be a known peer
(anything else is counted for flood detection and dropped before parsing, unless
``security.unknown_sources`` is ``reject`` or a registered PBX may be speaking); then the size
guard and the parser; a request that does not parse gets its 400 (when it can be addressed); a
stranger's request is checked for a scanner's fingerprints; then the core.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from .b2bua import B2BUA, LocalAddress
from .health import HealthMonitor
from .media import BuiltinRelay, RtpEngine
from .registration import Registrations
from .routing import Router
from .routing.attribution import PeerIndex
from .security import Security
from .sip.errors import ParseError
from .sip.ids import new_tag
from .sip.message import Message, Request, make_response, stamp_received
from .sip.parser import parse_datagram
from .sip.sanity import salvage_response
from .sip.transaction import Addr, Send
from .transport import TcpTransport, UdpTransport, tls_contexts

__all__ = ["Engine", "PeerIndex"]  # PeerIndex: routing.attribution, kept here for callers

log = logging.getLogger("pkiss.engine")


class Engine:
    """One node's SIP machinery, bound to the running event loop."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.peers = PeerIndex(config.peers)
        self.b2bua = B2BUA(Router(config.peers, config.routes), dict(config.peers), self.local)
        self.security = Security(config.security)
        self.b2bua.on_auth_failure = self._auth_failure
        self.transports: dict[tuple[str, int], UdpTransport | TcpTransport] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._local_cache: dict[tuple[str, str], LocalAddress] = {}
        self.dropped = 0
        self.accepting = True
        self.relay: BuiltinRelay | None = None
        self.rtpengine: RtpEngine | None = None
        self._identity = _identity(config)
        self._media_watch: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        max_size = self.config.security.max_message_bytes
        for ep in self.config.sbc.listen:
            family = 6 if ":" in ep.host else 4
            transport: UdpTransport | TcpTransport
            if ep.transport == "udp":
                transport = UdpTransport(ep.host, ep.port, self.on_datagram)
            elif ep.transport == "tcp":
                transport = TcpTransport(ep.host, ep.port, self.on_stream_message, max_size)
            else:
                server_ssl, client_ssl = tls_contexts(self.config.sbc.tls)
                transport = TcpTransport(ep.host, ep.port, self.on_stream_message, max_size,
                                         name="tls", server_ssl=server_ssl,
                                         client_ssl=client_ssl)  # fmt: skip
            await transport.start()
            self.transports[(ep.transport, family)] = transport
            log.info("listening on %s:%s:%d", ep.transport, ep.host, transport.port)
        self._start_media(loop)
        # OPTIONS probes of the peers' hosts; the timer is armed now: no packet may ever come
        self.b2bua.monitor = HealthMonitor(self.config.peers, loop.time())
        # REGISTERs to the carriers with ``register``: the first ones are due now
        self.b2bua.use_registrations(Registrations(self.config.peers, loop.time()))
        self._arm()

    def _start_media(self, loop: asyncio.AbstractEventLoop) -> None:
        """When any call may be relayed: rtpengine (``media.engine: rtpengine``), or the
        built-in relay bound to the address of the first listener of each family."""
        media = self.config.media
        self.b2bua.media_mode = media.mode
        relayed = media.mode == "relay" or any(
            getattr(p, "media", None) == "relay" for p in self.config.peers.values()
        )
        if not relayed:
            return
        if media.engine == "rtpengine":
            ng = media.rtpengine
            self.rtpengine = RtpEngine(ng.host, ng.port)
            self.b2bua.media = self.rtpengine
            if self.rtpengine.ping():
                log.info("media through rtpengine at %s:%d", ng.host, ng.port)
            else:
                log.error("rtpengine at %s:%d does not answer yet: relayed calls get 503 "
                          "until it does", ng.host, ng.port)  # fmt: skip
            return
        listen = self.config.sbc.listen
        host = next((str(ep.host) for ep in listen if ":" not in str(ep.host)), "0.0.0.0")
        host6 = next((str(ep.host) for ep in listen if ":" in str(ep.host)), None)
        self.relay = BuiltinRelay(host, (media.ports.low, media.ports.high), loop.add_reader,
                                  loop.remove_reader, loop.time, host6=host6)  # fmt: skip
        self.b2bua.media = self.relay
        self._media_watch = loop.create_task(self._watch_media())
        log.info("media relay on %s, ports %d-%d", " and ".join(filter(None, (host, host6))),
                 media.ports.low, media.ports.high)  # fmt: skip

    async def _watch_media(self) -> None:
        """End answered calls whose media stopped (``media.timeout``)."""
        while True:
            timeout = self.config.media.timeout
            await asyncio.sleep(min(max(timeout / 4, 0.5), 5.0))
            self.transmit(self.b2bua.hangup_idle(self._now(), timeout))
            self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._media_watch is not None:
            self._media_watch.cancel()
        if self.relay is not None:
            self.relay.close()
        for transport in self.transports.values():
            transport.close()

    def unregister_all(self) -> None:
        """Shutdown: remove the node's registrations at the carriers (answers come in as
        usual; the registrations tell when none is pending)."""
        self.transmit(self.b2bua.unregister_all(self._now()))
        self._arm()

    def reconfigure(self, config: Any) -> None:
        """Swap the config: new calls use it, calls in progress keep theirs."""
        self.config = config
        self.peers = PeerIndex(config.peers)
        self.b2bua.reconfigure(Router(config.peers, config.routes), dict(config.peers))
        self.security.reconfigure(config.security)
        self._identity = _identity(config)
        self.b2bua.media_mode = config.media.mode
        self._local_cache.clear()
        monitor = self.b2bua.monitor
        if monitor is not None and self._loop is not None:
            monitor.rebuild(config.peers, self._loop.time())
        registrations = self.b2bua.registrations
        if registrations is not None and self._loop is not None:
            registrations.rebuild(config.peers, self._loop.time())
            self.b2bua.use_registrations(registrations)
        if self._loop is not None:
            self._arm()

    # ------------------------------------------------------------------------------ inbound
    def _known(self, source: Addr) -> bool:
        """The cheap check before parsing: a peer's source, or the source of the current
        registration of a PBX with ``hosts: registered``."""
        if self.peers.match(source) is not None:
            return True
        return bool(self.b2bua.registrar.peer_at(source, self._now()))

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _screen(self, source: Addr, now: float) -> bool | None:
        """Before parsing: None to drop the packet, else whether its source is known. A
        banned source is dropped; a stranger is counted (flood) and, unless it may be a
        registered PBX's REGISTER or ``unknown_sources`` is ``reject``, dropped unparsed."""
        security = self.security
        if security.banned(source.host, now):
            self.dropped += 1
            return None
        if self._known(source):
            return True
        if security.stranger_packet(source.host, now) or (
            self.config.security.unknown_sources == "drop" and not self.peers.registered
        ):
            self.dropped += 1
            return None
        return False

    def _admit(self, source: Addr, message: Message, known: bool, now: float) -> None:
        """After parsing: a stranger's request that looks like a scanner's bans it; with
        registered PBXs configured, a stranger gets only as far as the registrar's digest
        check with a REGISTER (or an INVITE with the credentials of a registered PBX)."""
        peer = self.peers.identify(source, message)
        if (
            peer is None
            and not known
            and isinstance(message, Request)
            and self.security.stranger_request(message, source.host, now)
        ):
            self.dropped += 1
            return
        if peer is None and self.peers.registered:
            name = self.b2bua.registrar.peer_at(source, now)
            if name is not None:
                peer = self.config.peers.get(name)
            elif not (isinstance(message, Request) and message.method == "REGISTER") and (
                self.config.security.unknown_sources == "drop" and not known
            ):
                self.dropped += 1
                return
        self.dispatch(message, source, peer)

    def on_datagram(self, data: bytes, source: Addr) -> None:
        now = self._now()
        known = self._screen(source, now)
        if known is None:
            return
        if len(data) <= 4 and not data.strip():
            return  # keep-alive (RFC 5626 §4.4.1 CRLF ping)
        try:
            message = parse_datagram(data, self.config.security.max_message_bytes)
        except ParseError as exc:
            if self.peers.registered and not known:
                self.dropped += 1  # no answer to garbage from an unknown source
                return
            self._bad_message(data, exc, source)
            return
        self._admit(source, message, known, now)

    def on_stream_message(self, item: Message | ParseError, source: Addr) -> None:
        now = self._now()
        known = self._screen(source, now)
        if known is None:
            return
        if isinstance(item, ParseError):
            log.info("malformed message from %s: %s", source, item.reason)
            return
        self._admit(source, item, known, now)

    def _auth_failure(self, source: Addr, now: float) -> None:
        """A refused credential: counted against a stranger (a peer's own addresses are
        trusted by config; their failures are only logged by the B2BUA)."""
        if self.peers.match(source) is None:
            self.security.auth_failed(source.host, now)

    def _bad_message(self, data: bytes, exc: ParseError, source: Addr) -> None:
        log.info("malformed message from %s: %s", source, exc.reason)
        response = salvage_response(data, exc)
        if response is not None:
            self.transmit([Send(response, source)])

    def dispatch(self, message: Message, source: Addr, peer: Any) -> None:
        assert self._loop is not None
        if isinstance(message, Request):
            message = stamp_received(message, source.host, source.port)
        registering = isinstance(message, Request) and message.method == "REGISTER"
        if peer is None and not (registering and self.peers.registered):  # unknown: reject
            if isinstance(message, Request) and message.method != "ACK":
                self.transmit([Send(make_response(message, 403, to_tag=new_tag()), source)])
            return
        if isinstance(message, Request) and message.method not in self.security.methods:
            if message.method != "ACK":  # §17.2.1: an ACK is never answered
                allow = ", ".join(m for m in self.config.security.methods if m != "ACK")
                resp = make_response(message, 405, to_tag=new_tag(), headers=[("Allow", allow)])
                self.transmit([Send(resp, source)])
            return
        if not self.accepting and isinstance(message, Request) and message.method == "INVITE":
            to = message.to
            if to is None or not to.tag:
                resp = make_response(message, 503, to_tag=new_tag(), headers=[("Retry-After", "5")])
                self.transmit([Send(resp, source)])
                return
        try:
            sends = self.b2bua.receive(message, source, peer, self._loop.time())
        except ParseError as exc:  # a header the core needed turned out malformed
            log.info("malformed message from %s: %s", source, exc.reason)
            return
        self.transmit(sends)
        self._arm()

    # ----------------------------------------------------------------------------- outbound
    def transmit(self, sends: list[Send]) -> None:
        transports = self.transports
        for send in sends:
            dest = send.dest
            transport = transports.get((dest.transport, 6 if ":" in dest.host else 4))
            if transport is None:
                log.warning("no %s transport to reach %s", dest.transport, dest)
                continue
            data = bytes(send.message)
            if self._identity is not None:
                data = self._identify(send.message, data)
            transport.send(data, dest)

    def _identify(self, message: Message, data: bytes) -> bytes:
        """``sbc.server_header``: the SBC names itself (Server in responses, User-Agent in
        requests), after the start line. Unset, it sends neither (topology hiding)."""
        assert self._identity is not None
        name = b"User-Agent" if isinstance(message, Request) else b"Server"
        return data.replace(b"\r\n", b"\r\n" + name + b": " + self._identity + b"\r\n", 1)

    def local(self, dest: Addr) -> LocalAddress:
        """Our address as a peer at ``dest`` sees it: the advertised address, else the
        listening address of that transport, else (wildcard listen) the source address the
        kernel picks for that destination."""
        key = (dest.transport, dest.host)
        found = self._local_cache.get(key)
        if found is not None:
            return found
        family = 6 if ":" in dest.host else 4
        transport = self.transports.get((dest.transport, family)) or self.transports.get(
            ("udp", family)
        )
        port = transport.port if transport is not None else 5060
        host = self.config.sbc.advertise
        if host is None:
            host = transport.host if transport is not None else "127.0.0.1"
            if host in ("0.0.0.0", "::"):
                host = _source_address_for(dest.host, family)
        found = LocalAddress(dest.transport, str(host), port)
        if len(self._local_cache) < 4096:
            self._local_cache[key] = found
        return found

    # -------------------------------------------------------------------------------- timer
    def _arm(self) -> None:
        deadline = self.b2bua.next_deadline()
        if deadline is None:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        self.transmit(self.b2bua.handle_timer(self._loop.time()))
        self._arm()


def _identity(config: Any) -> bytes | None:
    value = config.sbc.server_header
    return value.encode("utf-8") if value else None


def _source_address_for(host: str, family: int) -> str:
    """The local address the kernel would use toward ``host`` (no packet is sent)."""
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "::1" if family == 6 else "127.0.0.1"
