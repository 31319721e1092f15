"""Blind transfer carried out by the node (``peers.*.refer: local``, RFC 3515 and RFC 5589).

The callee side of an answered call (the B-leg's peer, the transferor) sends a REFER naming a
new target. The node answers 202, places a new call to the target through its routing as if
the transferor had called that number, and reports progress to the transferor with NOTIFYs
carrying a ``message/sipfrag`` status line (100, then the final status). When the target
answers, it takes the transferor's place: the caller's leg stays as it is, its media now
relayed to the target (the relay's ports toward the caller do not change, so the caller needs
no re-INVITE; with media bypassed the caller gets a re-INVITE with the target's SDP), and the
transferor's leg is ended with a BYE. When the target fails, the call goes on with the
transferor. An attended transfer (``Refer-To`` with ``Replaces``) and a REFER from the caller's
side are refused (403): the node has no dialog of the caller side's peer to replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..routing import Target
from ..sip.errors import ParseError
from ..sip.headers import parse_name_addr
from ..sip.message import Header, Request
from .leg import Leg
from .uac import UacLeg

__all__ = ["Transfer", "notify", "refer_target", "reoffer"]


@dataclass(slots=True)
class Transfer:
    """A transfer under way: the transferor's leg, the targets left, the attempt out."""

    transferor: Leg
    number: str
    targets: list[Target]
    attempt: UacLeg | None = None
    statuses: list[int] = field(default_factory=list)
    gone: bool = False
    """The transferor hung up before the outcome (allowed: RFC 5589 §6.1's blind transfer)."""


def refer_target(request: Request) -> str | None:
    """The URI a REFER's ``Refer-To`` names, without header parameters; None when there is
    none, it does not parse, or it asks for an attended transfer (``Replaces``)."""
    value = request.header("refer-to")
    if not value:
        return None
    try:
        target = parse_name_addr(value)
    except ParseError:
        return None
    text = str(target.uri)
    uri, _, headers = text.partition("?")
    if "replaces" in headers.lower():
        return None
    return uri


def notify(leg: Leg, status: int, reason: str, *, final: bool) -> Request:
    """The NOTIFY of the REFER's implicit subscription (RFC 3515 §2.4.5) on ``leg``."""
    state = "terminated;reason=noresource" if final else "active;expires=60"
    headers: list[Header] = [
        ("Event", "refer"),
        ("Subscription-State", state),
        ("Content-Type", "message/sipfrag;version=2.0"),
    ]
    return leg.request("NOTIFY", headers=headers, body=f"SIP/2.0 {status} {reason}\r\n".encode())


def reoffer(previous: bytes, new: bytes) -> bytes:
    """``new`` as the next version of the session the caller knows (``previous``: the last
    description the node sent it): the same origin user and session id, its version + 1
    (RFC 3264 §8), so that the caller takes it as a change of its one session."""
    old = _origin(previous)
    lines = new.split(b"\r\n") if b"\r\n" in new else new.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"o=") and old is not None:
            fields = line[2:].split()
            if len(fields) >= 6:
                version = str(int(old[2]) + 1).encode() if old[2].isdigit() else old[2]
                lines[i] = b"o=" + b" ".join([old[0], old[1], version, *fields[3:]])
            break
    return (b"\r\n" if b"\r\n" in new else b"\n").join(lines)


def _origin(body: bytes) -> list[bytes] | None:
    for line in body.splitlines():
        if line.startswith(b"o="):
            fields = line[2:].split()
            return fields if len(fields) >= 6 else None
    return None
