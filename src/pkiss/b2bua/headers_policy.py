"""What crosses from one leg to the other: an allowlist, never a blocklist.

Every header not named here stays on its own side. Via, Contact, Record-Route, Route, Call-ID,
tags, CSeq, Max-Forwards and Content-Length are always the SBC's own on each leg; Server and
User-Agent are never sent (nothing reveals the software). Values that carry an address (From,
To, P-Asserted-Identity) are rebuilt from their user part by the B2BUA, not copied.
"""

from __future__ import annotations

import functools

from ..sip.headers import canonical_name
from ..sip.message import Header, Message

__all__ = [
    "ALLOW",
    "KNOWN_METHODS",
    "REQUEST_HEADERS",
    "RESPONSE_HEADERS",
    "capabilities",
    "copy_allowed",
    "with_extra",
]

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, MESSAGE"
"""The methods the node serves, as its Allow header says."""
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE", "INFO", "MESSAGE", "REGISTER",
     "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH"}
)  # fmt: skip
"""Methods answered 405 (known, not served) rather than 501 (not implemented)."""


def capabilities() -> list[Header]:
    """What an OPTIONS learns of the node: no more than a peer needs to call it."""
    return [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "100rel, timer")]


# Headers of a request that describe the session or the body, never the path it took.
REQUEST_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "content-type",
        "content-disposition",
        "content-encoding",
        "content-language",
        "subject",
        "priority",
        "privacy",
        "info-package",
        "event",
        "expires",
    }
)
# Headers of a response worth relaying to the other leg's request.
RESPONSE_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "content-type",
        "content-disposition",
        "content-encoding",
        "content-language",
        "unsupported",
        "retry-after",
        "privacy",
    }
)


@functools.lru_cache(maxsize=256)
def with_extra(base: frozenset[str], extra: tuple[str, ...]) -> frozenset[str]:
    """``base`` and a peer's ``headers.pass`` names (lower-case), computed once per list."""
    return base | {name.lower() for name in extra} if extra else base


def copy_allowed(message: Message, allowed: frozenset[str]) -> list[Header]:
    """The header fields of ``message`` whose names are in ``allowed``, in order."""
    if len(message.headers) > 2 * len(allowed):  # look the few allowed names up instead
        return [
            (_canonical(name), value) for name in allowed for value in message.header_lines(name)
        ]
    return [h for h in message.headers if h[0].lower() in allowed]


def _canonical(lower: str) -> str:
    return canonical_name(lower)
