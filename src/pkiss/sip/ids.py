"""Identifiers we mint: branches (RFC 3261 §8.1.1.7), tags (§19.3), Call-IDs (§8.1.1.4).

Random and unguessable, so a stranger cannot forge a response or a request into a dialog."""

from __future__ import annotations

import secrets

__all__ = ["MAGIC_COOKIE", "new_branch", "new_call_id", "new_tag"]

MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id() -> str:
    return secrets.token_hex(12)
