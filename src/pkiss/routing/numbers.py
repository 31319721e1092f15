"""Numbers: who owns a called number (PBX ``dids``), and which number a request calls.

A DID entry is exact (``+33555000111``), a prefix (``+3398765*``) or a range of numbers of the
same length (``+33123456700-+33123456799``). Exact beats range beats prefix; among prefixes the
longest wins; among ranges the narrowest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ..sip.errors import ParseError
from ..sip.headers import parse_name_addr
from ..sip.message import Request
from ..sip.uri import SipURI, TelURI, unescape

__all__ = ["DidTable", "RuleLike", "called_number", "parse_did", "rewrite"]


def parse_did(entry: str) -> tuple[str, str, str]:
    """``("exact", n, n)``, ``("prefix", p, p)`` or ``("range", low, high)``."""
    if entry.endswith("*"):
        return "prefix", entry[:-1], entry[:-1]
    low, sep, high = entry.partition("-")
    if sep and low and high and len(low) == len(high):
        return "range", low, high
    return "exact", entry, entry


def _digits_key(number: str) -> tuple[str, int] | None:
    head = "+" if number.startswith("+") else ""
    rest = number[len(head) :]
    # ASCII digits only, and no longer than a number can be (E.164: 15 digits; room for
    # national prefixes and extensions): int() of thousands of digits is refused or slow
    if len(rest) > 32 or not (rest.isascii() and rest.isdigit()):
        return None
    return head, int(rest)


class DidTable:
    """Maps a number to the name of the PBX peer that owns it."""

    def __init__(self, owners: Iterable[tuple[str, Iterable[str]]]) -> None:
        self._exact: dict[str, str] = {}
        self._ranges: list[tuple[int, str, int, int, int, str]] = []
        self._prefixes: list[tuple[str, str]] = []
        for peer, entries in owners:
            for entry in entries:
                kind, low, high = parse_did(entry)
                if kind == "exact":
                    self._exact.setdefault(low, peer)
                elif kind == "prefix":
                    self._prefixes.append((low, peer))
                else:
                    lk, hk = _digits_key(low), _digits_key(high)
                    if lk is None or hk is None or lk[0] != hk[0]:
                        continue
                    self._ranges.append((hk[1] - lk[1], lk[0], len(low), lk[1], hk[1], peer))
        self._prefixes.sort(key=lambda p: -len(p[0]))
        self._ranges.sort()

    def owner(self, number: str) -> str | None:
        peer = self._exact.get(number)
        if peer is not None:
            return peer
        key = _digits_key(number)
        if key is not None:
            for _width, head, length, low, high, rpeer in self._ranges:
                if head == key[0] and length == len(number) and low <= key[1] <= high:
                    return rpeer
        for prefix, ppeer in self._prefixes:
            if number.startswith(prefix):
                return ppeer
        return None


class RuleLike(Protocol):
    def apply(self, number: str) -> str | None: ...


def rewrite(rules: Iterable[RuleLike], number: str) -> str:
    """The number after the first rule that matches it (``rewrite.inbound``/``outbound``)."""
    for rule in rules:
        result = rule.apply(number)
        if result is not None:
            return result
    return number


def called_number(request: Request) -> str:
    """The number a request calls: the Request-URI user part (unescaped, parameters such as
    ``;phone-context`` dropped) or a tel: number, without visual separators."""
    uri = request.uri
    if isinstance(uri, TelURI):
        number = uri.number
    elif isinstance(uri, SipURI) and uri.user is not None:
        number = unescape(uri.user).split(";", 1)[0]
    else:
        return ""
    if "-" in number or "." in number or "(" in number:
        number = number.translate({ord(c): None for c in "-.() "})
    return number


def _number_of(uri: object) -> str | None:
    if isinstance(uri, TelURI):
        return uri.number
    if isinstance(uri, SipURI) and uri.user is not None:
        return unescape(uri.user).split(";", 1)[0]
    return None


def calling_numbers(request: Request) -> list[str]:
    """The numbers a request presents as its caller: From and every P-Asserted-Identity."""
    out: list[str] = []
    frm = request.from_
    if frm is not None:
        number = _number_of(frm.uri)
        if number:
            out.append(number)
    for value in request.values("p-asserted-identity"):
        try:
            number = _number_of(parse_name_addr(value).uri)
        except ParseError:
            continue
        if number:
            out.append(number)
    return out
