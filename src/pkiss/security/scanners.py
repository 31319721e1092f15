"""Fingerprints of SIP scanners (SIPVicious, sipcli and their kind), checked on the parsed
request of a source that is not a peer.

Besides the configured User-Agent fragments (case-insensitive substrings), the marks SIPVicious
leaves even when its User-Agent is gone (compact mode sends none): the ``1.1.1.1`` host in its
From/To, the ``"sipvicious"`` display name, and a Via branch ``z9hG4bK-<decimal>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..sip.errors import ParseError
from ..sip.message import Request

__all__ = ["ScannerSignatures"]

_BRANCH = re.compile(r"z9hG4bK-\d+$")


class ScannerSignatures:
    def __init__(self, user_agents: Iterable[str]) -> None:
        self.user_agents = tuple(ua.lower() for ua in user_agents if ua)

    def match(self, request: Request) -> str | None:
        """What gave the scanner away, or None."""
        agent = request.header("user-agent")
        if agent is not None:
            lowered = agent.lower()
            for fragment in self.user_agents:
                if fragment in lowered:
                    return f"scanner User-Agent {agent!r}"
        try:
            from_ = request.from_
            to = request.to
            via = request.top_via
        except ParseError:
            return None  # sanity checks answer what does not parse
        for addr in (from_, to):
            if addr is None:
                continue
            if addr.display and addr.display.strip('"').lower() == "sipvicious":
                return "scanner display name 'sipvicious'"
            if getattr(addr.uri, "host", None) == "1.1.1.1":
                return "scanner address 1.1.1.1 in From/To"
        if via is not None and _BRANCH.match(via.branch or ""):
            return f"scanner Via branch {via.branch}"
        return None
