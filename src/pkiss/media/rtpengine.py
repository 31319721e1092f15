"""rtpengine as the media engine, through its ng control protocol (a cookie, a space, and a
bencoded dictionary, over UDP).

The B2BUA asks synchronously, as it asks the built-in relay, so each request is a blocking
round trip to rtpengine (tens to hundreds of microseconds on the same host, as Kamailio's and
OpenSIPS's rtpengine modules do it). Bounded: one retry after ``timeout`` seconds; a daemon that
did not answer is left alone for ``HOLD_OFF`` seconds, during which calls that need it are
refused at once (503) instead of each waiting for the timeout.

Tags: the call is rtpengine's ``call-id`` (the SBC's key for the call), the sides are the
tags ``a`` and ``b``: an offer from side X has ``from-tag`` X, the answer to it ``from-tag``
X and ``to-tag`` the answering side, which is how rtpengine tells its monologues apart.

Media sources: rtpengine learns each side's source from its packets during the first seconds
after signalling (its ``--endpoint-learning``: ``delayed``, 3 s, by default; ``heuristic``
prefers the address the SDP names; ``off`` never learns). Every offer and answer carries the
``strict-source`` flag: once learned, packets from any other source are dropped (without it,
rtpengine forwards whatever reaches the port: RTP bleed for the whole call). ``media.learn``
has no per-call counterpart in rtpengine: it is the built-in relay's.

Media flavours, with rtpengine's defaults (no flag is sent for them; checked with 10.5):
``a=rtcp-mux`` follows the phones (offered on when the offerer offers it, accepted back when
the answerer accepts; the offer keeps ``a=rtcp`` naming rtpengine's RTCP port as the fallback,
the muxed answer names its RTP port); ``m=image ... udptl t38`` is relayed as it is (a new
port, the ``a=T38Fax...`` attributes kept). SRTP is where rtpengine differs from the built-in
relay: it terminates it. To DTLS-SRTP it answers with its own certificate's fingerprint and
does a handshake with each phone; to SDES it adds its own keys and suites (and a DTLS
fingerprint) to the offer, re-encrypting when the two sides' keys differ. Calls work, media is
encrypted on both legs, but not end to end: the built-in relay is the engine that keeps it so.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from ..sdp import SdpError, parse_sdp
from .engine import MediaError

__all__ = ["RtpEngine", "bdecode", "bencode"]

log = logging.getLogger("pkiss.media")

HOLD_OFF = 5.0
"""Seconds a daemon that did not answer is not asked again."""


def bencode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, str):
        return bencode(value.encode())
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """The value ``data`` encodes; ValueError when it is not bencode (whatever the bytes)."""
    try:
        value, end = _decode(data, 0)
    except (TypeError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"not bencode: {type(exc).__name__}") from None
    if end != len(data):
        raise ValueError("trailing bytes after the bencoded value")
    return value


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise ValueError("truncated")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1 : end]), end + 1
    if lead in (b"l", b"d"):
        pos += 1
        items: list[Any] = []
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos)
            items.append(item)
        if lead == b"l":
            return items, pos + 1
        if len(items) % 2:
            raise ValueError("a dictionary key without its value")
        if not all(isinstance(k, bytes) for k in items[::2]):
            raise ValueError("a dictionary key that is not a string")
        keys = [k.decode() for k in items[::2]]
        return dict(zip(keys, items[1::2], strict=True)), pos + 1
    if lead.isdigit():
        colon = data.index(b":", pos)
        length = int(data[pos:colon])
        start = colon + 1
        if start + length > len(data):
            raise ValueError("truncated string")
        return data[start : start + length], start + length
    raise ValueError(f"not bencode at byte {pos}")


class RtpEngine:
    def __init__(self, host: str, port: int, timeout: float = 0.5) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.calls: set[str] = set()
        self.stats = {"requests": 0, "errors": 0}
        self._down_until = 0.0
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                   socket.SOCK_DGRAM)  # fmt: skip
        self._sock.connect(self.address)

    # ------------------------------------------------------------------ MediaEngine
    def rewrite(self, call: str, side: str, body: bytes, address: str, peer_host: str,
                now: float, kind: str = "offer") -> bytes:  # fmt: skip
        parse_sdp(body)  # what is not SDP is refused here, as by the built-in relay
        other = "b" if side == "a" else "a"
        family = "IP6" if ":" in peer_host else "IP4"
        request: dict[str, Any] = {
            "command": kind, "call-id": call, "sdp": body,
            "replace": ["origin", "session-connection"], "ICE": "remove",
            "received-from": [family, peer_host], "flags": ["strict-source"],
        }  # fmt: skip
        if kind == "offer":
            request["from-tag"] = side
            if call in self.calls:
                request["to-tag"] = other  # a re-offer within the dialog
        else:
            request["from-tag"], request["to-tag"] = other, side
        reply = self._ask(request)
        sdp = reply.get("sdp")
        if not isinstance(sdp, bytes):
            raise MediaError("rtpengine answered without SDP")
        self.calls.add(call)
        try:
            return bytes(parse_sdp(sdp).scrubbed())
        except SdpError:
            return sdp

    def rollback(self, call: str, side: str) -> None:
        """Nothing to undo here: rtpengine takes a refused offer's description, and latches
        back to the side's own source with its next packet (symmetric RTP)."""

    def release(self, call: str) -> None:
        if call not in self.calls:
            return
        self.calls.discard(call)
        try:
            self._ask({"command": "delete", "call-id": call, "delete-delay": 0})
        except MediaError as exc:
            log.info("rtpengine: delete of %s: %s", call, exc)

    def counts(self, call: str) -> tuple[int, int, int, int] | None:
        """Not asked of rtpengine (its ``query`` would be one more round trip per call)."""
        return None

    def idle(self, now: float, timeout: float) -> list[str]:
        return []  # rtpengine ends silent media itself (its own --timeout)

    def ping(self) -> bool:
        try:
            return self._ask({"command": "ping"}).get("result") == b"pong"
        except MediaError:
            return False

    # ---------------------------------------------------------------------- protocol
    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if time.monotonic() < self._down_until:
            raise MediaError(f"rtpengine at {self.address[0]}:{self.address[1]} is not answering")
        cookie = os.urandom(6).hex().encode()
        message = cookie + b" " + bencode(request)
        self.stats["requests"] += 1
        for _ in range(2):
            try:
                self._sock.send(message)
                reply = self._receive(cookie)
            except OSError:  # refused (nothing listens) or timed out
                continue
            result = reply.get("result")
            if result in (b"ok", b"pong"):
                return reply
            self.stats["errors"] += 1
            reason = reply.get("error-reason", b"?")
            raise MediaError(f"rtpengine: {result!r}: {reason!r}")
        self.stats["errors"] += 1
        self._down_until = time.monotonic() + HOLD_OFF
        log.error("rtpengine at %s:%d does not answer; calls needing it are refused for %g s",
                  *self.address, HOLD_OFF)  # fmt: skip
        raise MediaError("rtpengine does not answer")

    def _receive(self, cookie: bytes) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            data = self._sock.recv(65535)
            head, _, payload = data.partition(b" ")
            if head != cookie:
                continue  # a late answer to an earlier request
            try:
                reply = bdecode(payload)
            except ValueError:
                raise MediaError("rtpengine sent something that is not bencode") from None
            if not isinstance(reply, dict):
                raise MediaError("rtpengine sent no dictionary")
            return reply
