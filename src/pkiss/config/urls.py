"""URLs from the config (``storage.cdr``, ``state``) as they may appear in logs."""

from __future__ import annotations

__all__ = ["redacted"]


def redacted(url: str) -> str:
    """``url`` without its password: ``postgresql://user:***@host/db``, ``redis://***@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    if not colon:
        return url  # a user name alone is no secret
    hidden = f"{user}:***" if user else "***"
    return f"{scheme}://{hidden}@{location}"
