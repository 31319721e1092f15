"""Bindings as the nodes write them to each other through Redis (sans-I/O: times are given).

One JSON object per message and per key ``pkiss:binding:<peer>``::

    {"op": "register", "peer": "remote-pbx", "node": "sbc1-4242-9f1c",
     "contact": "sip:remote1@198.51.100.7:5060", "source": ["udp", "198.51.100.7", 5060],
     "at": 1764150000.25, "expires": 1764150600.25}
    {"op": "unregister", "peer": "remote-pbx", "node": "sbc1-4242-9f1c", "at": 1764150300.5}

``at`` (when the REGISTER was taken) and ``expires`` are wall-clock times (seconds since the
epoch: the nodes' clocks agree, their loop clocks do not); the binding is converted to this
node's clock when read. What is read from Redis is untrusted: ``decode`` refuses (``ValueError``
naming why) anything a node would not have written, never raises anything else.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..sip.errors import ParseError
from ..sip.transaction import Addr
from ..sip.uri import parse_uri
from .bindings import RegisteredContact

__all__ = [
    "MAX_LIFE",
    "Expired",
    "NotHere",
    "Removal",
    "decode",
    "encode_register",
    "encode_unregister",
]

MAX_LIFE = 3600.0 + 60.0
"""The longest a binding read may still last (seconds): the registrar grants 3600 at most."""
MAX_CONTACT = 1024
MAX_NAME = 200
TRANSPORTS = frozenset({"udp", "tcp", "tls"})
_UNSAFE = re.compile(r"[\x00-\x20\x7f<>\"]")  # nothing that could end a header field or a URI


class Expired(ValueError):
    """A binding a node wrote, over by now (nothing wrong with it)."""


class NotHere(ValueError):
    """A binding of a peer that is no registered one in this node's config (the nodes' configs
    differ while a change reaches them one by one)."""


@dataclass(frozen=True, slots=True)
class Removal:
    """A PBX removed its binding at ``node`` at ``at`` (this node's clock)."""

    node: str
    at: float


def encode_register(peer: str, binding: RegisteredContact, node: str, wall: float,
                    now: float) -> tuple[str, float]:  # fmt: skip
    """The message for this node's ``binding`` of ``peer`` and its wall-clock time; ``wall``
    and ``now`` are the same instant on the wall and on the node's clock."""
    at = wall - (now - binding.registered_at)
    source = binding.source
    text = json.dumps({
        "op": "register", "peer": peer, "node": node, "contact": binding.contact,
        "source": [source.transport, source.host, source.port], "at": at,
        "expires": wall + (binding.expires_at - now),
    })  # fmt: skip
    return text, at


def encode_unregister(peer: str, node: str, at: float) -> str:
    return json.dumps({"op": "unregister", "peer": peer, "node": node, "at": at})


def decode(raw: bytes | str, names: frozenset[str], wall: float,
           now: float) -> tuple[str, RegisteredContact | Removal]:  # fmt: skip
    """A message or key's value back to (peer, binding) or (peer, removal), times on this
    node's clock; ``ValueError`` for anything else, an unknown peer, or a binding that has
    expired already."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    peer = _text(data, "peer", MAX_NAME)
    if peer not in names:
        raise NotHere(f"peer {peer[:40]!r} is no registered peer here")
    node = _text(data, "node", MAX_NAME)
    at = _time(data, "at")
    if abs(at - wall) > 10 * MAX_LIFE:
        raise ValueError("'at' is not a time of this registration's life")
    op = data.get("op")
    if op == "unregister":
        return peer, Removal(node, now - (wall - at))
    if op != "register":
        raise ValueError("'op' is neither register nor unregister")
    contact = _text(data, "contact", MAX_CONTACT)
    if _UNSAFE.search(contact):
        raise ValueError("'contact' holds characters no URI has")
    try:
        parse_uri(contact)
    except (ParseError, ValueError, IndexError) as exc:
        raise ValueError("'contact' is no URI") from exc
    source = _source(data.get("source"))
    left = _time(data, "expires") - wall
    if left <= 0:
        raise Expired("expired")
    if left > MAX_LIFE:
        raise ValueError(f"lasts {left:.0f} s, more than a registration does")
    return peer, RegisteredContact(contact, source, now + left, node, now - (wall - at))


def _text(data: dict[str, Any], field: str, limit: int) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{field!r} is not a string of 1 to {limit} characters")
    return value


def _time(data: dict[str, Any], field: str) -> float:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field!r} is not a number")
    return float(value)


def _source(value: object) -> Addr:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError("'source' is not [transport, host, port]")
    transport, host, port = value
    if transport not in TRANSPORTS:
        raise ValueError("'source' has no transport udp, tcp or tls")
    if not isinstance(host, str) or len(host) > 64:
        raise ValueError("'source' has no IP address")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError("'source' has no IP address") from exc
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("'source' has no port")
    return Addr(transport, str(ip), port)
