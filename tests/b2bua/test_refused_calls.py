"""Calls refused before they exist (no route, over a limit) are told to the CDR writer."""

from __future__ import annotations

from typing import Any

from peers import CONFIG, OPERATOR, Bench, invite, responses

from pkiss.cdr import refused_record


def recording(config: str) -> tuple[Bench, list[tuple[Any, ...]]]:
    """A bench whose refused calls are recorded, as the CDR writer gets them."""
    seen: list[tuple[Any, ...]] = []
    return Bench(config, on_refused=lambda *args: seen.append(args)), seen


def test_a_number_nobody_owns_gets_404_and_one_refusal() -> None:
    bench, seen = recording(CONFIG)
    sends = bench.feed(invite(1, called="+34911223344"), OPERATOR)
    assert [r.status for r in responses(sends, OPERATOR) if r.status >= 200] == [404]
    ((request, peer, number, status, reason, _),) = seen
    assert (peer, number, status, reason) == ("operator", "+34911223344", 404, "Not Found")
    record = refused_record(request, peer, number, status, reason, 1_800_000_000.0)
    assert record.reason == "refused: Not Found" and record.caller == "+33999"
    assert (
        record.dest_peer is None and record.duration == 0.0 and record.call_id == "call1@127.0.0.2"
    )


def test_a_call_over_its_peers_limit_gets_503_and_one_refusal() -> None:
    limited = CONFIG.replace(
        "operator: {role: carrier,", "operator: {role: carrier, limits: {calls: 1},"
    )
    bench, seen = recording(limited)
    bench.feed(invite(1), OPERATOR)
    sends = bench.feed(invite(2), OPERATOR)
    assert [r.status for r in responses(sends, OPERATOR) if r.status >= 200] == [503]
    assert [(s[3], s[4]) for s in seen] == [(503, "over the calls limit of operator")]
