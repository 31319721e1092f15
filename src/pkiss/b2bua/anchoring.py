"""Media anchoring of calls: which calls are relayed, and every SDP that crosses from one leg
to the other rewritten by the media engine toward the node (multipart bodies such as SIP-I:
the SDP part only, the others byte for byte).

The engine is asked synchronously (see docs/architecture.md, "Media"): the built-in relay
answers at once, rtpengine in one bounded round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..config import Peer
from ..media import MediaEngine, MediaError
from ..sdp import SdpError
from ..sip.errors import ParseError
from ..sip.message import Message
from ..sip.multipart import Part, boundary_of, join_parts, split_parts
from ..sip.transaction import Addr
from ..transport.listeners import LocalAddress
from .call import Call
from .events import Refused
from .leg import Leg

__all__ = ["Anchoring", "is_sdp", "kind_of_reply"]

log = logging.getLogger("pkiss.b2bua")


class Anchoring:
    """The media engine of a node (None: SDP passes untouched) and its default mode."""

    def __init__(self, engine: MediaEngine | None, mode: str = "bypass") -> None:
        self.engine = engine
        self.mode = mode

    def relayed(self, peers: Iterable[Peer | None]) -> bool:
        """Media goes through the node unless every peer of the call says ``bypass``."""
        if self.engine is None:
            return False
        return any(((p.media if p is not None else None) or self.mode) == "relay" for p in peers)

    def anchor_offer(self, call: Call, local: Callable[[Addr], LocalAddress],
                     now: float) -> Refused | None:  # fmt: skip
        """Relay the caller's media when a peer of the call wants it (``call.media``): its SDP
        offer, rewritten once for every B-leg attempt (``call.b_offer``). The refusal when it
        cannot be: 488 when it is not SDP, 503 when no port is free."""
        peers = [call.peers.get(call.source_peer)]
        peers += [call.peers.get(t.peer) for t in call.targets]
        if not self.relayed(peers):
            return None
        call.media = True
        toward = local(call.targets[0].addr) if call.targets else call.a.local
        try:
            call.b_offer = self.offer(call.a.local_tag, call.a.invite, toward.host,
                                      call.a.dest.host, now)  # fmt: skip
        except (SdpError, MediaError) as exc:
            status = 488 if isinstance(exc, SdpError) else 503
            log.info("refusing call %s: %d, media: %s", call.a.call_id, status, exc)
            return Refused(status, "media")
        return None

    def offer(self, key: str, message: Message, toward: str, peer_host: str,
              now: float) -> bytes | None:  # fmt: skip
        """The caller's SDP offer rewritten once for every attempt (None: no offer, late
        offer). Raises ``SdpError`` (not SDP: 488) or ``MediaError`` (no port: 503)."""
        assert self.engine is not None
        body = message.body
        multipart = boundary_of(message.header("content-type") or "") is not None
        if not body or not (is_sdp(message) or multipart):
            return None
        if not multipart:
            return self.engine.rewrite(key, "a", body, toward, peer_host, now, "offer")
        try:
            rewritten = self._parts(key, "a", message, toward, peer_host, now, "offer")
        except ParseError as exc:
            raise SdpError(f"multipart body: {exc.reason}") from exc
        if not rewritten:
            raise SdpError("multipart body without readable SDP")
        return rewritten

    def body(self, key: str, leg: Leg, other: Leg | None, message: Message, now: float,
             kind: str) -> bytes:  # fmt: skip
        """The body of ``message`` from ``leg``, for the other leg: its SDP rewritten toward
        the relay. ``kind``: ``offer`` or ``answer`` (RFC 3264), which an engine such as
        rtpengine must be told. A body the engine refuses is dropped (logged)."""
        body = message.body
        if not body or self.engine is None:
            return body
        toward = (other.local if other is not None else leg.local).host
        try:
            if boundary_of(message.header("content-type") or "") is None:
                if not is_sdp(message):
                    return body
                return self.engine.rewrite(key, leg.side.lower(), body, toward, leg.dest.host,
                                           now, kind)  # fmt: skip
            return self._parts(key, leg.side.lower(), message, toward, leg.dest.host, now, kind)
        except (SdpError, MediaError, ParseError) as exc:
            log.warning("call %s: SDP from the %s-leg not relayed (%s): body dropped",
                        leg.call_id, leg.side, exc)  # fmt: skip
            return b""

    def _parts(self, key: str, side: str, message: Message, toward: str, peer_host: str,
               now: float, kind: str) -> bytes:  # fmt: skip
        """SIP-I and the like: the SDP part is rewritten, the others pass as they are."""
        assert self.engine is not None
        boundary = boundary_of(message.header("content-type") or "")
        assert boundary is not None
        parts = split_parts(message.body, boundary)
        for i, part in enumerate(parts):
            if part.content_type() == "application/sdp":
                sdp = self.engine.rewrite(key, side, part.body, toward, peer_host, now, kind)
                parts[i] = Part(part.headers, sdp)
        return join_parts(parts, boundary)

    def rollback(self, key: str, leg: Leg) -> None:
        """The offer ``leg`` sent was refused: its media goes where it went before."""
        if self.engine is not None:
            self.engine.rollback(key, leg.side.lower())

    def release(self, key: str) -> None:
        if self.engine is not None:
            self.engine.release(key)

    def counts(self, key: str) -> tuple[int, int, int, int] | None:
        """What the engine relayed of a call: packets and bytes from the caller, packets and
        bytes from the callee side; None when it does not tell (read before ``release``)."""
        return self.engine.counts(key) if self.engine is not None else None

    def idle(self, now: float, timeout: float) -> list[str]:
        return self.engine.idle(now, timeout) if self.engine is not None else []


def kind_of_reply(request: Message) -> str:
    """A response's SDP answers the request's offer; to a request without one (late offer,
    RFC 3261 §13.2.1), it is the offer."""
    return "answer" if request.body else "offer"


def is_sdp(message: Message) -> bool:
    kind = message.header("content-type")
    return kind is not None and kind.split(";", 1)[0].strip().lower() == "application/sdp"
