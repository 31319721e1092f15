"""The asyncio driver: feeds what the listeners receive to admission and the sans-I/O core,
sends what the core returns, and keeps exactly one timer armed at the core's next deadline.

Per message: ``Admission.screen`` before parsing (bans, strangers), overload control (while
the loop lags, a new INVITE gets 503 from its raw bytes: ``security/overload.py``), the size
guard and the parser (bytes that do not parse get their 400 when they can be addressed), then
``Admission.admit``: the one verdict, which attributes the peer once and refuses from one
place; what passes goes to the transaction-user layer with its peer.

What crosses is counted for ``/metrics`` where it is already told apart: a parsed message
by its method (a request) or its status (a response), one dict increment each way.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .core import TransactionUser
from .security.admission import Admission, Pass, Reject
from .security.overload import Overload, is_refusal_ack
from .sip.errors import ParseError
from .sip.ids import new_tag
from .sip.message import Message, Request, Response, make_response, stamp_received
from .sip.parser import parse_datagram
from .sip.sanity import salvage_response
from .sip.transaction import Addr, Send
from .trace import Tracer
from .transport.listeners import Listeners

__all__ = ["Engine"]

log = logging.getLogger("pkiss.engine")


class Engine:
    """One node's SIP machinery, bound to the running event loop."""

    def __init__(
        self,
        listeners: Listeners,
        admission: Admission,
        core: TransactionUser,
        max_message_bytes: int,
        server_header: str | None = None,
        overload: Overload | None = None,
    ) -> None:
        self.listeners = listeners
        self.overload = overload if overload is not None else Overload()
        self.admission = admission
        self.core = core
        self.max_message_bytes = max_message_bytes
        self.identity = server_header.encode("utf-8") if server_header else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self.tracer: Tracer | None = None
        """``admin.trace``: what peers sent and what the node sent, for the call trace."""
        # parsed messages received and sent: requests by method, responses by status
        self.requests_in: dict[str, int] = {}
        self.responses_in: dict[int, int] = {}
        self.requests_out: dict[str, int] = {}
        self.responses_out: dict[int, int] = {}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.listeners.start(self.on_datagram, self.on_stream_message)
        self._tick(self._loop.time())
        # the owners' first deadlines (probes, REGISTERs): no packet may ever come
        self.drive(self.core.start(self.now()))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
        self.listeners.close()

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def drive(self, sends: list[Send]) -> None:
        """Send what the core returned and re-arm the timer (for any entry into the core)."""
        self.transmit(sends)
        self._arm()

    # ------------------------------------------------------------------------------ inbound
    def on_datagram(self, data: bytes, source: Addr) -> None:
        now = self.now()
        known = self.admission.screen(source, now)
        if known is None:
            return
        if len(data) <= 4 and not data.strip():
            return  # keep-alive (RFC 5626 §4.4.1 CRLF ping)
        if self.overload.active:
            if is_refusal_ack(data):
                return
            refusal = self.overload.refuse(data, self.core.layer.has_server)
            if refusal is not None:
                self.listeners.send(refusal, source)
                return
        try:
            message = parse_datagram(data, self.max_message_bytes)
        except ParseError as exc:
            if self.admission.answer_garbage(known):
                log.info("malformed message from %s: %s", source, exc.reason)
                response = salvage_response(data, exc)
                if response is not None:
                    self.transmit([Send(response, source)], traced=False)
            return
        self._admit(message, source, known, now)

    def on_stream_message(self, item: Message | ParseError, source: Addr) -> None:
        now = self.now()
        known = self.admission.screen(source, now)
        if known is None:
            return
        if isinstance(item, ParseError):
            log.info("malformed message from %s: %s", source, item.reason)
            return
        overload = self.overload
        if (
            overload.active
            and isinstance(item, Request)
            and _new_invite(item)
            and (not overload.admit())
        ):
            retry = [("Retry-After", str(overload.retry_after))]
            self.transmit([Send(make_response(item, 503, to_tag=new_tag(), headers=retry), source)])
            return
        self._admit(item, source, known, now)

    def _admit(self, message: Message, source: Addr, known: bool, now: float) -> None:
        if isinstance(message, Request):
            _count_request(self.requests_in, message.method)
        elif isinstance(message, Response):
            responses = self.responses_in
            status = message.status
            responses[status] = responses.get(status, 0) + 1
        verdict = self.admission.admit(message, source, known, now)
        tracer = self.tracer
        if tracer is not None and (known or type(verdict) is Pass):  # never a stranger's
            local = self.listeners.local(source)
            tracer.message(message.call_id, time.time(), "in", source.transport,
                           (source.host, source.port), (local.host, local.port),
                           bytes(message))  # fmt: skip
        if type(verdict) is Pass:
            if isinstance(message, Request):
                message = stamp_received(message, source.host, source.port)
            try:
                sends = self.core.receive(message, source, verdict.peer, now)
            except ParseError as exc:  # a header the core needed turned out malformed
                log.info("malformed message from %s: %s", source, exc.reason)
                return
            except Exception:  # a defect must cost one message, never the node
                log.exception("internal error on a message from %s (dropped)", source)
                return
            self.drive(sends)
        elif isinstance(verdict, Reject) and isinstance(message, Request):
            log.info("refusing %s from %s: %d %s", message.method, source, verdict.status,
                     verdict.reason or "")  # fmt: skip
            response = make_response(message, verdict.status, verdict.reason, to_tag=new_tag(),
                                     headers=list(verdict.headers))  # fmt: skip
            self.transmit([Send(response, source)], traced=known)

    # ----------------------------------------------------------------------------- outbound
    def transmit(self, sends: list[Send], traced: bool = True) -> None:
        listeners = self.listeners
        identity = self.identity
        tracer = self.tracer if traced else None
        requests, responses = self.requests_out, self.responses_out
        for send in sends:
            message = send.message
            if isinstance(message, Response):
                status = message.status
                responses[status] = responses.get(status, 0) + 1
            elif isinstance(message, Request):
                _count_request(requests, message.method)
            data = bytes(message)
            if identity is not None:
                data = self._identify(send.message, data, identity)
            listeners.send(data, send.dest)
            if tracer is not None:
                dest = send.dest
                local = listeners.local(dest)
                tracer.message(send.message.call_id, time.time(), "out", dest.transport,
                               (local.host, local.port), (dest.host, dest.port), data)  # fmt: skip

    @staticmethod
    def _identify(message: Message, data: bytes, identity: bytes) -> bytes:
        """``sbc.server_header``: the node names itself (Server in responses, User-Agent in
        requests), after the start line. Unset, it sends neither (topology hiding)."""
        name = b"User-Agent" if isinstance(message, Request) else b"Server"
        return data.replace(b"\r\n", b"\r\n" + name + b": " + identity + b"\r\n", 1)

    # ----------------------------------------------------------------------------- overload
    def _tick(self, due: float) -> None:
        """The loop's lag, measured by how late this runs (``security/overload.py``)."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        overload = self.overload
        was = overload.active
        if overload.tick(now - due, self.listeners.backlog()) != was:
            if was:
                log.warning("overload over (loop lag %.0f ms): new calls accepted again, "
                            "%d turned away so far", overload.lag * 1000,
                            overload.turned_away)  # fmt: skip
            else:
                log.warning("overloaded (loop lag %.0f ms, receive queue %.0f %% full): new "
                            "calls get 503 until it eases", overload.lag * 1000,
                            overload.backlog * 100)  # fmt: skip
        self._ticker = loop.call_at(now + overload.interval, self._tick, now + overload.interval)

    # -------------------------------------------------------------------------------- timer
    def _arm(self) -> None:
        deadline = self.core.next_deadline()
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
        self._timer = None
        self._timer_at = None
        try:
            sends = self.core.handle_timer(self.now())
        except Exception:  # the timer must stay armed whatever one deadline does
            log.exception("internal error on a timer")
            sends = []
        self.drive(sends)


METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
    "MESSAGE", "REFER", "NOTIFY", "SUBSCRIBE", "PUBLISH",
})  # fmt: skip
"""Methods counted by name; any other is counted as ``other`` (a peer may send any token)."""


def _count_request(counts: dict[str, int], method: str) -> None:
    found = counts.get(method)
    if found is not None:
        counts[method] = found + 1
    elif method in METHODS:
        counts[method] = 1
    else:
        counts["other"] = counts.get("other", 0) + 1


def _new_invite(message: Request) -> bool:
    if message.method != "INVITE":
        return False
    to = message.to
    return to is None or not to.tag
