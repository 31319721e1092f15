"""Errors of the SIP core.

    SipError
     +-- ParseError        the bytes are not a SIP message we accept (whose fault: the sender's)

A ``ParseError`` carries the status a UAS answers a malformed *request* with
(``status_hint``, 400 unless the version is wrong: 505) and a short reason that is
safe to put in the reason phrase. Responses that fail to parse are dropped, never answered.
"""

from __future__ import annotations

__all__ = ["ParseError", "SipError"]


class SipError(Exception):
    """Base of every error the SIP core raises."""


class ParseError(SipError):
    """The message is malformed; ``status_hint`` is what to answer a request with."""

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
