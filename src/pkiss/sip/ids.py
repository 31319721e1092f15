"""Identifiers we mint: branches (RFC 3261 §8.1.1.7), tags (§19.3), Call-IDs (§8.1.1.4).

Random and unguessable (from the OS's CSPRNG), so a stranger cannot forge a response or a
request into a dialog. Random bytes are drawn 4 KiB at a time: one system call per few hundred
identifiers instead of one each."""

from __future__ import annotations

import os

__all__ = ["MAGIC_COOKIE", "new_branch", "new_call_id", "new_tag"]

MAGIC_COOKIE = "z9hG4bK"
_POOL_BYTES = 4096


class _Pool:
    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def hex(self, nbytes: int) -> str:
        pos = self.pos
        end = pos + nbytes
        if end > len(self.buf):
            self.buf = os.urandom(_POOL_BYTES)
            pos, end = 0, nbytes
        self.pos = end
        return self.buf[pos:end].hex()


_pool = _Pool()


def new_branch() -> str:
    return MAGIC_COOKIE + _pool.hex(10)


def new_tag() -> str:
    return _pool.hex(6)


def new_call_id() -> str:
    return _pool.hex(12)
