"""Wire bytes for the transaction tests: SIP messages written as readable text in the tests."""

from __future__ import annotations


def wire(text: str) -> bytes:
    """``text`` as it goes on the wire: each line ended by CRLF, in latin-1."""
    return text.replace("\n", "\r\n").encode("latin-1")
