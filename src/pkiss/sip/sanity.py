"""Request sanity checks after parsing, and answers to messages that do not parse.

``check_request`` returns the error response's status, reason and extra headers for a request
that parses but cannot be processed (RFC 4475 §3.3: missing or repeated mandatory headers,
unsupported URI scheme, a list header the node reads that does not split, unsupported required
extensions); None when the request is sane.
``salvage_response`` builds the 400 for bytes that did not parse at all, from whatever
Via/From/To/Call-ID/CSeq lines it can find (RFC 3261 §8.2: a response needs them).
"""

from __future__ import annotations

from .errors import ParseError
from .headers import COMPACT_FORMS, canonical_name
from .ids import new_tag
from .message import Header, Request, Response, reason_phrase
from .uri import AbsoluteURI

__all__ = ["SUPPORTED_OPTIONS", "Verdict", "check_request", "salvage_response"]

Verdict = tuple[int, str, list[Header]]

SUPPORTED_OPTIONS = frozenset({"100rel", "timer"})
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type")
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
# The list headers the node reads after admission: a value that does not split (unbalanced
# quotes, an empty element) is refused here, before a transaction exists, rather than failing
# halfway through the transaction user and leaving an INVITE transaction no one answers.
_LISTS = ("require", "proxy-require", "supported", "allow", "privacy", "p-asserted-identity")


def check_request(request: Request) -> Verdict | None:
    """Why this request must be refused (status, reason, extra headers), or None."""
    for name in _MANDATORY:
        if not request.has(name):
            return 400, f"Missing {name}", []
    for name in _SINGLE:
        if request.count(name) > 1:
            return 400, f"Duplicate {name}", []
    if isinstance(request.uri, AbsoluteURI):
        return 416, reason_phrase(416), []
    for name in _LISTS:
        try:
            request.values(name)
        except ParseError:
            return 400, f"Bad {canonical_name(name)}", []
    if request.method not in ("ACK", "CANCEL"):
        required = [v.lower() for v in request.values("require")]
        unknown = [r for r in required if r not in SUPPORTED_OPTIONS]
        if unknown:
            return 420, reason_phrase(420), [("Unsupported", ", ".join(unknown))]
    return None


_SALVAGE = {"via", "from", "to", "call-id", "cseq"}


def salvage_response(data: bytes, error: ParseError) -> Response | None:
    """The error response to a request that failed to parse, or None when no response can be
    addressed (not a request, or no Via/Call-ID/CSeq/From/To line to copy)."""
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else min(len(data), 8192)].decode("latin-1")
    lines = head.split("\r\n")
    if not lines or lines[0].startswith("SIP/") or " " not in lines[0]:
        return None
    found: list[Header] = []
    seen: set[str] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        lname = name.strip().lower()
        lname = COMPACT_FORMS.get(lname, lname).lower()
        if not colon or lname not in _SALVAGE or "\n" in value or "\r" in value:
            continue
        if lname != "via" and lname in seen:
            continue
        seen.add(lname)
        value = value.strip()
        if lname == "to" and ";tag=" not in value.replace(" ", ""):
            value = f"{value};tag={new_tag()}"
        found.append((canonical_name(lname), value))
    if not {"via", "call-id", "cseq", "from", "to"} <= seen:
        return None
    status = error.status_hint
    reason = f"{reason_phrase(status)} ({error.reason})"
    return Response(status, reason, found)
