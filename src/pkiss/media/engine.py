"""What the B2BUA asks of a media engine: turn the session description one side sent into the
one the other side must get, so that media flows through the SBC; forget a call's media when
it ends; tell which calls have gone silent."""

from __future__ import annotations

from typing import Protocol

__all__ = ["MediaEngine", "MediaError"]


class MediaError(Exception):
    """The engine cannot anchor this media (no free port, engine unreachable...)."""


class MediaEngine(Protocol):
    def rewrite(self, call: str, side: str, body: bytes, address: str, peer_host: str,
                now: float, kind: str = "offer") -> bytes:  # fmt: skip
        """The SDP ``body`` that ``side`` ("a" or "b") of ``call`` sent, rewritten for the
        other side: media addressed to the engine at ``address``. ``peer_host`` is where
        ``side`` signals from (media from it may come from there, behind NAT); ``kind`` is
        ``offer`` or ``answer``. Raises ``SdpError`` for a body that is not SDP and
        ``MediaError`` when it cannot anchor."""
        ...

    def rollback(self, call: str, side: str) -> None:
        """The last offer ``side`` made was refused (a re-INVITE answered 488...): media to
        that side goes where it went before the offer (RFC 3264 §5: the session is as it was)."""
        ...

    def release(self, call: str) -> None:
        """The call ended: free what it held."""
        ...

    def counts(self, call: str) -> tuple[int, int, int, int] | None:
        """What was relayed for ``call`` so far (RTP and RTCP): packets and bytes side "a"
        sent, packets and bytes side "b" sent; None when the engine does not count them."""
        ...

    def idle(self, now: float, timeout: float) -> list[str]:
        """Calls with media anchored and no packet in either direction for ``timeout``
        seconds."""
        ...
